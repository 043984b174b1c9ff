package mailmap

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ImportBatch is what an import from another client (bmgate import
// pybitmessage) writes for one user: all of it in one transaction, or on
// any error nothing. What the user already has is left as it is, so an
// import run again writes nothing.
type ImportBatch struct {
	UserID        int64
	Identities    []Identity     // skipped when the user has the address
	Subscriptions []Subscription // skipped when the user follows the address
	Contacts      []Contact      // skipped when the user has the alias
	Folders       []ImportFolder // created when missing; subscribed, with their parents
	Messages      []ImportMessage
	Outbox        []OutboxItem // skipped when a row with the same AckData exists
	ListEntries   []ListEntry  // skipped when the address is on that list already
	ListMode      ListKind     // "": the user's mode stays
}

// ImportFolder is a folder an import files into: with SpecialUse, the
// user's folder of that use (Name when there is none yet), else Name.
type ImportFolder struct {
	Name       string
	SpecialUse string
}

// ImportMessage is one message to file once: not when its Key is recorded
// for the user (as DeliverOnce records keys), nor when a message with its
// Message-ID is already in the folder.
type ImportMessage struct {
	Folder ImportFolder
	Key    []byte
	Raw    []byte
	Flags  []string
	Date   time.Time
}

// ImportResult counts what an import wrote and what was already there.
// Folders are keyed by their actual name.
type ImportResult struct {
	Identities, IdentitiesPresent       int
	Subscriptions, SubscriptionsPresent int
	Contacts, ContactsPresent           int
	Outbox, OutboxPresent               int
	ListEntries, ListEntriesPresent     int
	Filed, Present                      map[string]int
}

// ErrOwned means an import's address belongs to another user (a chan may
// be shared, a personal address not). Nothing was written.
var ErrOwned = errors.New("mailmap: address belongs to another user")

func (s *sqlStore) Import(ctx context.Context, b ImportBatch) (ImportResult, error) {
	// Everything that can be checked and sealed without the database is,
	// before the transaction.
	ids := make([]Identity, len(b.Identities))
	sealed := make([]sealedIdentity, len(b.Identities))
	for i, id := range b.Identities {
		id.UserID = b.UserID
		var err error
		if sealed[i], err = s.sealIdentity(&id); err != nil {
			return ImportResult{}, fmt.Errorf("identity %s: %w", id.Address, err)
		}
		ids[i] = id
	}
	for _, sub := range b.Subscriptions {
		if sub.Address == "" || !validText(sub.Address, 128) || !validText(sub.Label, 1024) {
			return ImportResult{}, invalid("subscription")
		}
	}
	for _, e := range b.ListEntries {
		if !e.Kind.Valid() || e.Address == "" || !validText(e.Address, 128) || !validText(e.Label, 1024) {
			return ImportResult{}, invalid("list entry")
		}
	}
	if b.ListMode != "" && !b.ListMode.Valid() {
		return ImportResult{}, invalid("list mode")
	}
	for i := range b.Contacts {
		c := &b.Contacts[i]
		c.Alias = strings.ToLower(c.Alias)
		if c.Alias == "" || !validText(c.Alias, 320) || c.Address == "" || !validText(c.Address, 128) {
			return ImportResult{}, invalid("contact")
		}
	}
	folders := append([]ImportFolder(nil), b.Folders...)
	for _, m := range b.Messages {
		if len(m.Key) == 0 || len(m.Key) > maxDeliveryKey {
			return ImportResult{}, invalid("delivery key")
		}
		if len(m.Raw) == 0 {
			return ImportResult{}, invalid("empty message")
		}
		if _, err := normFlags(m.Flags); err != nil {
			return ImportResult{}, err
		}
		folders = append(folders, m.Folder)
	}
	for _, f := range folders {
		if _, err := canonicalMailboxName(f.Name); err != nil {
			return ImportResult{}, fmt.Errorf("folder %q: %w", f.Name, err)
		}
		if !validSpecialUse(f.SpecialUse) {
			return ImportResult{}, invalid("unknown special use")
		}
	}
	out := make([]OutboxItem, len(b.Outbox))
	now := s.now()
	for i, it := range b.Outbox {
		it.UserID = b.UserID
		if it.State == "" {
			it.State = OutboxQueued
		}
		if it.CreatedAt.IsZero() {
			it.CreatedAt = now
		}
		if err := validOutbox(&it); err != nil {
			return ImportResult{}, err
		}
		it.CreatedAt, it.NextAttempt = stored(it.CreatedAt), stored(it.NextAttempt)
		it.SentAt, it.AckedAt = stored(it.SentAt), stored(it.AckedAt)
		out[i] = it
	}

	var res ImportResult
	err := s.write(ctx, func(w *wtx) error {
		res = ImportResult{Filed: map[string]int{}, Present: map[string]int{}}
		if _, _, err := s.lockUser(ctx, w, b.UserID); err != nil {
			return err
		}
		for i := range ids {
			id := &ids[i]
			if err := checkOwner(ctx, w, id); err != nil {
				return err
			}
			ok, err := insertIdentity(ctx, w, id, sealed[i])
			if err != nil {
				return err
			}
			if ok {
				res.Identities++
			} else {
				res.IdentitiesPresent++
			}
		}
		for _, sub := range b.Subscriptions {
			var id int64
			err := w.QueryRowContext(ctx, `INSERT INTO subscriptions (user_id, address, label) VALUES ($1, $2, $3)
				ON CONFLICT DO NOTHING RETURNING id`, b.UserID, sub.Address, sub.Label).Scan(&id)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				res.SubscriptionsPresent++
			case err != nil:
				return fmt.Errorf("add subscription: %w", err)
			default:
				res.Subscriptions++
			}
		}
		for _, e := range b.ListEntries {
			var id int64
			err := w.QueryRowContext(ctx, `INSERT INTO sender_lists (user_id, kind, address, label, enabled, created_at)
				VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING id`,
				b.UserID, string(e.Kind), e.Address, e.Label, e.Enabled, toMicros(s.now())).Scan(&id)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				res.ListEntriesPresent++
			case err != nil:
				return fmt.Errorf("add list entry: %w", err)
			default:
				res.ListEntries++
			}
		}
		if b.ListMode != "" {
			if _, err := w.ExecContext(ctx, `UPDATE users SET sender_list_mode = $1 WHERE id = $2`, string(b.ListMode), b.UserID); err != nil {
				return fmt.Errorf("set list mode: %w", err)
			}
		}
		for _, c := range b.Contacts {
			var id int64
			err := w.QueryRowContext(ctx, `INSERT INTO contacts (user_id, alias, address) VALUES ($1, $2, $3)
				ON CONFLICT DO NOTHING RETURNING id`, b.UserID, c.Alias, c.Address).Scan(&id)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				res.ContactsPresent++
			case err != nil:
				return fmt.Errorf("add contact: %w", err)
			default:
				res.Contacts++
			}
		}
		boxes, err := s.importFolders(ctx, w, b.UserID, folders)
		if err != nil {
			return err
		}
		for _, m := range b.Messages {
			mb := boxes[m.Folder]
			if id := parseMessageID(m.Raw); id != "" {
				var one int
				err := w.QueryRowContext(ctx, `SELECT 1 FROM messages WHERE user_id = $1 AND mailbox_id = $2 AND message_id = $3 LIMIT 1`,
					b.UserID, mb.ID, id).Scan(&one)
				if err == nil {
					res.Present[mb.Name]++
					continue
				}
				if !errors.Is(err, sql.ErrNoRows) {
					return fmt.Errorf("look up message: %w", err)
				}
			}
			r, err := w.ExecContext(ctx, `INSERT INTO deliveries (user_id, inv_hash, at) VALUES ($1, $2, $3)
				ON CONFLICT (user_id, inv_hash) DO NOTHING`, b.UserID, m.Key, toMicros(now))
			if err != nil {
				return fmt.Errorf("record delivery: %w", err)
			}
			if n, err := r.RowsAffected(); err != nil {
				return fmt.Errorf("record delivery: %w", err)
			} else if n == 0 {
				res.Present[mb.Name]++
				continue
			}
			if _, err := s.appendTx(ctx, w, b.UserID, mb.ID, m.Raw, m.Flags, m.Date); err != nil {
				return fmt.Errorf("file message in %s: %w", mb.Name, err)
			}
			res.Filed[mb.Name]++
		}
		for i := range out {
			it := &out[i]
			if len(it.AckData) > 0 {
				var one int
				err := w.QueryRowContext(ctx, `SELECT 1 FROM outbox WHERE ack_data = $1 LIMIT 1`, it.AckData).Scan(&one)
				if err == nil {
					res.OutboxPresent++
					continue
				}
				if !errors.Is(err, sql.ErrNoRows) {
					return fmt.Errorf("look up outbox: %w", err)
				}
			}
			args := append([]any{it.UserID, toMicros(it.CreatedAt)}, outboxArgs(it)...)
			if err := w.QueryRowContext(ctx, `INSERT INTO outbox (user_id, created_at, from_address, to_address, kind, subject,
					body, encoding, extra, message_id, state, attempts, next_attempt, ttl, ack_data, inv_hash, last_error,
					pow_duration, sent_at, acked_at, notify, ret, env_id, orig_rcpt, delay_reported, reported, original)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22,
					$23, $24, $25, $26, $27)
				RETURNING id`, args...).Scan(&it.ID); err != nil {
				return fmt.Errorf("enqueue outbox: %w", err)
			}
			res.Outbox++
		}
		return nil
	})
	if err != nil {
		return ImportResult{}, err
	}
	return res, nil
}

// checkOwner refuses an address another user holds, unless both are chans.
func checkOwner(ctx context.Context, w *wtx, id *Identity) error {
	rows, err := w.QueryContext(ctx, `SELECT kind FROM identities WHERE address = $1 AND user_id <> $2`, id.Address, id.UserID)
	if err != nil {
		return fmt.Errorf("look up identity: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var kind string
		if err := rows.Scan(&kind); err != nil {
			return fmt.Errorf("look up identity: %w", err)
		}
		if IdentityKind(kind) != KindChan || id.Kind != KindChan {
			return fmt.Errorf("%w: %s", ErrOwned, id.Address)
		}
	}
	return rows.Err()
}

// importFolders finds or creates the folders of an import and subscribes
// them and their parents. The caller holds the user's lock.
func (s *sqlStore) importFolders(ctx context.Context, w *wtx, userID int64, folders []ImportFolder) (map[ImportFolder]Mailbox, error) {
	all, err := s.mailboxes(ctx, w, userID)
	if err != nil {
		return nil, err
	}
	byName := make(map[string]Mailbox, len(all))
	byUse := map[string]Mailbox{}
	for _, mb := range all {
		byName[mb.Name] = mb
		if mb.SpecialUse != "" {
			byUse[mb.SpecialUse] = mb
		}
	}
	out := map[ImportFolder]Mailbox{}
	for _, f := range folders {
		if _, ok := out[f]; ok {
			continue
		}
		if mb, ok := byUse[f.SpecialUse]; ok && f.SpecialUse != "" {
			out[f] = mb
			continue
		}
		cn, err := canonicalMailboxName(f.Name)
		if err != nil {
			return nil, err
		}
		mb, ok := byName[cn]
		if !ok {
			names := make(map[string]bool, len(byName))
			for n := range byName {
				names[n] = true
			}
			if err := s.createParents(ctx, w, userID, cn, names); err != nil {
				return nil, err
			}
			if mb, err = s.insertMailbox(ctx, w, userID, cn, f.SpecialUse, true); err != nil {
				return nil, fmt.Errorf("create folder %s: %w", cn, err)
			}
			// createParents made the missing parents: read them back.
			if all, err = s.mailboxes(ctx, w, userID); err != nil {
				return nil, err
			}
			for _, m := range all {
				byName[m.Name] = m
			}
			if f.SpecialUse != "" {
				byUse[f.SpecialUse] = mb
			}
		}
		// Subscribe the folder and its parents, so that clients showing
		// only subscribed folders (Thunderbird's default) list them.
		for n := cn; ; {
			if m := byName[n]; !m.Subscribed && m.ID != 0 {
				if _, err := w.ExecContext(ctx, `UPDATE mailboxes SET subscribed = $1 WHERE id = $2`, true, m.ID); err != nil {
					return nil, fmt.Errorf("subscribe folder %s: %w", n, err)
				}
				m.Subscribed = true
				byName[n] = m
				w.emit(Change{UserID: userID, MailboxID: m.ID, Kind: ChangeMailboxes})
			}
			i := strings.LastIndexByte(n, '/')
			if i < 0 {
				break
			}
			n = n[:i]
		}
		out[f] = byName[cn]
	}
	return out, nil
}
