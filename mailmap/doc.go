// Package mailmap is bmgate's persistent model: users, Bitmessage identities,
// contacts, subscriptions, the pubkey cache, IMAP mailboxes and messages, the
// outbox, the object inventory and the known-node list. One Store interface
// has two real backends over database/sql: PostgreSQL through pgx's stdlib
// driver (hosted) and embedded SQLite through modernc.org/sqlite (default).
// Open picks one from the DSN and applies the embedded migrations
// (package migrations).
//
// How it keeps its promises:
//   - Every write that changes several rows is one transaction, committed
//     before the call returns; Changes are announced only after the commit
//     (PostgreSQL: pg_notify in the transaction plus one LISTEN connection
//     per Store, so other processes hear of them; SQLite: in-process).
//   - Locks are taken in one order (user row, then mailbox rows by id), so
//     PostgreSQL writers never deadlock; SQLite has one writer connection
//     with immediate transactions and a read-only pool beside it (WAL).
//   - Every query on mail names the user: another user's mailbox id is
//     ErrNotFound, never a leak.
//   - UIDs come from the mailbox row (UIDNEXT) and are never reused;
//     UIDVALIDITY comes from a per-user counter, so a re-created mailbox
//     gets a new one. Message bytes are shared between copies.
//   - Identity private keys, and chan passphrases (from which chan keys
//     derive), are sealed with AES-256-GCM under a key derived from
//     Options.SecretKey; passwords are argon2id hashes.
//
// Of bmcore it imports only the leaf packages bmcore/inventory (whose
// Inventory and KnownNodes it implements) and bmcore/wire, never the node
// runtime; it knows nothing of SMTP, IMAP or MIME and must not import
// smtpd, imapd or the gateway. Its conformance suite is storetest.
package mailmap
