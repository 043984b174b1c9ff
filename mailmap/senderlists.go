package mailmap

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// ListKind names a sender list, and a user's mode: which list applies.
// It is PyBitmessage's blackwhitelist setting, per user.
type ListKind string

const (
	// Blacklist mode (the default): mail from an enabled blacklist entry
	// is dropped, all other mail accepted.
	Blacklist ListKind = "black"
	// Whitelist mode: only mail from an enabled whitelist entry is
	// accepted.
	Whitelist ListKind = "white"
)

// Valid reports whether k is Blacklist or Whitelist.
func (k ListKind) Valid() bool { return k == Blacklist || k == Whitelist }

// ListEntry is one address on one of a user's sender lists.
type ListEntry struct {
	ID        int64
	UserID    int64
	Kind      ListKind
	Address   string // BM-…
	Label     string
	Enabled   bool
	CreatedAt time.Time
}

// SetListMode sets which of the user's lists applies (ErrNotFound: no
// such user).
func (s *sqlStore) SetListMode(ctx context.Context, userID int64, mode ListKind) error {
	if !mode.Valid() {
		return invalid("list mode")
	}
	res, err := s.db.ExecContext(ctx, `UPDATE users SET sender_list_mode = $1 WHERE id = $2`, string(mode), userID)
	return rowsAffected("set list mode", res, err)
}

// ListMode returns which of the user's lists applies.
func (s *sqlStore) ListMode(ctx context.Context, userID int64) (ListKind, error) {
	var mode string
	if err := s.rdb.QueryRowContext(ctx, `SELECT sender_list_mode FROM users WHERE id = $1`, userID).Scan(&mode); err != nil {
		return "", notFound("read list mode", err)
	}
	return ListKind(mode), nil
}

// AddListEntry puts an address on one of the user's lists (ErrExists: it
// is on it already).
func (s *sqlStore) AddListEntry(ctx context.Context, e ListEntry) (ListEntry, error) {
	switch {
	case !e.Kind.Valid():
		return ListEntry{}, invalid("list kind")
	case e.Address == "" || !validText(e.Address, 128):
		return ListEntry{}, invalid("list address")
	case !validText(e.Label, 1024):
		return ListEntry{}, invalid("list label")
	}
	if e.CreatedAt.IsZero() {
		e.CreatedAt = s.now()
	}
	e.CreatedAt = stored(e.CreatedAt)
	err := s.write(ctx, func(w *wtx) error {
		if err := userExists(ctx, w, e.UserID); err != nil {
			return err
		}
		err := w.QueryRowContext(ctx, `INSERT INTO sender_lists (user_id, kind, address, label, enabled, created_at)
			VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING id`,
			e.UserID, string(e.Kind), e.Address, e.Label, e.Enabled, toMicros(e.CreatedAt)).Scan(&e.ID)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrExists
		}
		if err != nil {
			return fmt.Errorf("add list entry: %w", err)
		}
		return nil
	})
	if err != nil {
		return ListEntry{}, err
	}
	return e, nil
}

// SetListEntryEnabled enables or disables an entry (ErrNotFound: none).
func (s *sqlStore) SetListEntryEnabled(ctx context.Context, userID int64, kind ListKind, address string, on bool) error {
	res, err := s.db.ExecContext(ctx, `UPDATE sender_lists SET enabled = $1 WHERE user_id = $2 AND kind = $3 AND address = $4`,
		on, userID, string(kind), address)
	return rowsAffected("set list entry", res, err)
}

// DeleteListEntry takes an address off one of the user's lists
// (ErrNotFound: it is not on it).
func (s *sqlStore) DeleteListEntry(ctx context.Context, userID int64, kind ListKind, address string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM sender_lists WHERE user_id = $1 AND kind = $2 AND address = $3`,
		userID, string(kind), address)
	return rowsAffected("delete list entry", res, err)
}

// ListEntries returns both of the user's lists, blacklist first, each by
// address.
func (s *sqlStore) ListEntries(ctx context.Context, userID int64) ([]ListEntry, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT id, user_id, kind, address, label, enabled, created_at
		FROM sender_lists WHERE user_id = $1 ORDER BY kind, address`, userID)
	if err != nil {
		return nil, fmt.Errorf("list sender lists: %w", err)
	}
	defer rows.Close()
	var out []ListEntry
	for rows.Next() {
		var e ListEntry
		var kind string
		var created int64
		if err := rows.Scan(&e.ID, &e.UserID, &kind, &e.Address, &e.Label, &e.Enabled, &created); err != nil {
			return nil, fmt.Errorf("list sender lists: %w", err)
		}
		e.Kind, e.CreatedAt = ListKind(kind), fromMicros(created)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list sender lists: %w", err)
	}
	return out, nil
}

// SenderAllowed applies the user's mode and lists to a sender, as
// PyBitmessage does: in blacklist mode the sender is refused when an
// enabled blacklist entry names it, in whitelist mode unless an enabled
// whitelist entry does. whitelisted says whether an enabled whitelist
// entry names it, whatever the mode (PyBitmessage then waives the
// address's demanded proof of work, as for a contact).
func (s *sqlStore) SenderAllowed(ctx context.Context, userID int64, address string) (allowed, whitelisted bool, err error) {
	var mode string
	var black, white bool
	err = s.rdb.QueryRowContext(ctx, `SELECT u.sender_list_mode,
			EXISTS (SELECT 1 FROM sender_lists l WHERE l.user_id = u.id AND l.kind = 'black' AND l.address = $2 AND l.enabled),
			EXISTS (SELECT 1 FROM sender_lists l WHERE l.user_id = u.id AND l.kind = 'white' AND l.address = $2 AND l.enabled)
		FROM users u WHERE u.id = $1`, userID, address).Scan(&mode, &black, &white)
	if err != nil {
		return false, false, notFound("check sender lists", err)
	}
	if ListKind(mode) == Whitelist {
		return white, white, nil
	}
	return !black, white, nil
}

// SetIdentityDifficulty sets the proof of work an identity demands (the
// values its pubkey carries) and clears LastPubkeySent, so the pubkey
// with the new demand is published again at once.
func (s *sqlStore) SetIdentityDifficulty(ctx context.Context, userID, identityID int64, nonceTrialsPerByte, extraBytes uint64) error {
	res, err := s.db.ExecContext(ctx, `UPDATE identities SET nonce_trials_per_byte = $1, extra_bytes = $2, last_pubkey_sent = NULL
		WHERE id = $3 AND user_id = $4`, u64(nonceTrialsPerByte), u64(extraBytes), identityID, userID)
	return rowsAffected("set identity difficulty", res, err)
}

// SetMailingList makes an identity a mailing list (every msg it receives
// is broadcast again from it, its subject prefixed with [name]) or an
// ordinary address again.
func (s *sqlStore) SetMailingList(ctx context.Context, userID, identityID int64, on bool, name string) error {
	if !validText(name, 1024) {
		return invalid("mailing list name")
	}
	res, err := s.db.ExecContext(ctx, `UPDATE identities SET mailing_list = $1, mailing_list_name = $2
		WHERE id = $3 AND user_id = $4 AND kind <> 'chan'`, on, name, identityID, userID)
	return rowsAffected("set mailing list", res, err)
}
