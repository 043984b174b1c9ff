// Package mailmap is bmgate's persistent model: users, Bitmessage identities,
// contacts, subscriptions, the pubkey cache, IMAP mailboxes and messages, the
// outbox, the object inventory and the known-node list. One Store interface
// has two real backends over database/sql: PostgreSQL through pgx's stdlib
// driver (hosted) and embedded SQLite through modernc.org/sqlite (default).
//
// It imports bmcore types only (node.Inventory, node.KnownNodes are
// implemented here); it knows nothing of SMTP, IMAP or MIME.
package mailmap
