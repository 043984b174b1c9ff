package mailmap

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"unicode"
)

const userCols = `id, name, quota_bytes, used_bytes, send_rate, disabled, delivery_reports, created_at`

func scanUser(row interface{ Scan(...any) error }) (User, error) {
	var u User
	var created int64
	if err := row.Scan(&u.ID, &u.Name, &u.QuotaBytes, &u.UsedBytes, &u.SendRate, &u.Disabled, &u.DeliveryReports, &created); err != nil {
		return User{}, err
	}
	u.CreatedAt = fromMicros(created)
	return u, nil
}

// nameKey is the case-insensitive form of a login name (unique in users).
func nameKey(name string) string { return strings.ToLower(name) }

// validUserName accepts printable names without spaces (e.g. "alice" or
// "alice@example.org"): they travel in SMTP AUTH and IMAP LOGIN.
func validUserName(name string) error {
	if name == "" || !validText(name, 254) {
		return invalid("user name must be 1-254 bytes of UTF-8")
	}
	for _, r := range name {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return invalid("user name must not contain spaces or control characters")
		}
	}
	return nil
}

// defaultMailboxes are created for every new user, subscribed.
var defaultMailboxes = []struct{ name, use string }{
	{"INBOX", ""},
	{"Sent", SpecialSent},
	{"Drafts", SpecialDrafts},
	{"Trash", SpecialTrash},
	{"Junk", SpecialJunk},
	{"Archive", SpecialArchive},
}

func (s *sqlStore) CreateUser(ctx context.Context, name, password string) (User, error) {
	if err := validUserName(name); err != nil {
		return User{}, err
	}
	if password == "" {
		return User{}, invalid("empty password")
	}
	hash, err := limitedHash(ctx, password)
	if err != nil {
		return User{}, err
	}
	now := s.now()
	// UIDVALIDITY values come from a per-user counter, so a mailbox deleted
	// and created again gets a new one (RFC 9051 §2.3.1.1). Seeding it with
	// the clock keeps a user deleted and re-created from reusing old values.
	seed := uint32(now.Unix())
	if seed == 0 {
		seed = 1
	}
	u := User{Name: name, CreatedAt: stored(now)}
	err = s.write(ctx, func(w *wtx) error {
		err := w.QueryRowContext(ctx,
			`INSERT INTO users (name, name_key, password_hash, next_uidvalidity, created_at)
			 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING id`,
			name, nameKey(name), hash, int64(seed), toMicros(now)).Scan(&u.ID)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrExists
		}
		if err != nil {
			return fmt.Errorf("create user: %w", err)
		}
		for _, m := range defaultMailboxes {
			if _, err := s.insertMailbox(ctx, w, u.ID, m.name, m.use, true); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return User{}, err
	}
	return u, nil
}

// Authenticate checks a user's password. name is the user name, or one of
// the user's own (not chan) addresses, bare (BM-…) or as a mail address
// (BM-…@domain), so a mail client set up from the address alone
// (Thunderbird's autoconfig) logs in.
func (s *sqlStore) Authenticate(ctx context.Context, name, password string) (User, error) {
	var hash string
	var u User
	var created int64
	err := s.rdb.QueryRowContext(ctx,
		`SELECT `+userCols+`, password_hash FROM users WHERE name_key = $1`, nameKey(name)).
		Scan(&u.ID, &u.Name, &u.QuotaBytes, &u.UsedBytes, &u.SendRate, &u.Disabled, &u.DeliveryReports, &created, &hash)
	if addr, ok := loginAddress(name); ok && errors.Is(err, sql.ErrNoRows) {
		err = s.rdb.QueryRowContext(ctx, `SELECT u.id, u.name, u.quota_bytes, u.used_bytes, u.send_rate, u.disabled, u.delivery_reports,
				u.created_at, u.password_hash
			FROM users u JOIN identities i ON i.user_id = u.id WHERE i.address = $1 AND i.kind = $2`,
			addr, string(KindNormal)).
			Scan(&u.ID, &u.Name, &u.QuotaBytes, &u.UsedBytes, &u.SendRate, &u.Disabled, &u.DeliveryReports, &created, &hash)
	}
	if errors.Is(err, sql.ErrNoRows) {
		// The same work as a wrong password, under the same limit.
		if _, _, err := limitedVerify(ctx, dummyHash(), password); err != nil {
			return User{}, err
		}
		return User{}, ErrAuthFailed
	}
	if err != nil {
		return User{}, fmt.Errorf("authenticate: %w", err)
	}
	u.CreatedAt = fromMicros(created)
	// ErrBusy (or ctx's error) when no hashing slot freed up in time.
	ok, rehash, err := limitedVerify(ctx, hash, password)
	if err != nil {
		return User{}, err
	}
	if !ok {
		return User{}, ErrAuthFailed
	}
	// Only someone who knows the password learns that the account is disabled.
	if u.Disabled {
		return User{}, ErrDisabled
	}
	if rehash {
		if newHash, err := limitedHash(ctx, password); err == nil {
			// Best effort: the login succeeds even if the upgrade fails.
			if _, err := s.db.ExecContext(ctx, `UPDATE users SET password_hash = $1 WHERE id = $2 AND password_hash = $3`,
				newHash, u.ID, hash); err != nil {
				s.log.Warn("upgrading password hash failed", "user", u.ID, "err", err)
			}
		}
	}
	return u, nil
}

func (s *sqlStore) User(ctx context.Context, id int64) (User, error) {
	u, err := scanUser(s.rdb.QueryRowContext(ctx, `SELECT `+userCols+` FROM users WHERE id = $1`, id))
	if err != nil {
		return User{}, notFound("read user", err)
	}
	return u, nil
}

func (s *sqlStore) UserByName(ctx context.Context, name string) (User, error) {
	u, err := scanUser(s.rdb.QueryRowContext(ctx, `SELECT `+userCols+` FROM users WHERE name_key = $1`, nameKey(name)))
	if err != nil {
		return User{}, notFound("read user", err)
	}
	return u, nil
}

func (s *sqlStore) ListUsers(ctx context.Context) ([]User, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+userCols+` FROM users ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	defer rows.Close()
	var out []User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("list users: %w", err)
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	return out, nil
}

func (s *sqlStore) SetPassword(ctx context.Context, userID int64, password string) error {
	if password == "" {
		return invalid("empty password")
	}
	hash, err := limitedHash(ctx, password)
	if err != nil {
		return err
	}
	res, err := s.db.ExecContext(ctx, `UPDATE users SET password_hash = $1 WHERE id = $2`, hash, userID)
	return rowsAffected("set password", res, err)
}

func (s *sqlStore) SetDeliveryReports(ctx context.Context, userID int64, on bool) error {
	res, err := s.db.ExecContext(ctx, `UPDATE users SET delivery_reports = $1 WHERE id = $2`, on, userID)
	return rowsAffected("set delivery reports", res, err)
}

func (s *sqlStore) SetDisabled(ctx context.Context, userID int64, disabled bool) error {
	res, err := s.db.ExecContext(ctx, `UPDATE users SET disabled = $1 WHERE id = $2`, disabled, userID)
	return rowsAffected("set disabled", res, err)
}

// SetQuota sets the user's storage quota in bytes (0 = unlimited). Mail
// already stored stays; appends and copies that would exceed it fail.
func (s *sqlStore) SetQuota(ctx context.Context, userID int64, bytes int64) error {
	if bytes < 0 {
		return invalid("negative quota")
	}
	res, err := s.db.ExecContext(ctx, `UPDATE users SET quota_bytes = $1 WHERE id = $2`, bytes, userID)
	return rowsAffected("set quota", res, err)
}

// SetSendRate sets how many messages the user may send an hour (0: no
// limit), checked by EnqueueOutbox.
func (s *sqlStore) SetSendRate(ctx context.Context, userID int64, perHour int64) error {
	if perHour < 0 {
		return invalid("negative sending rate")
	}
	res, err := s.db.ExecContext(ctx, `UPDATE users SET send_rate = $1 WHERE id = $2`, perHour, userID)
	return rowsAffected("set sending rate", res, err)
}

// DeleteUser removes the user and, by cascade, everything the user owns:
// identities, contacts, subscriptions, mailboxes, messages, outbox rows.
func (s *sqlStore) DeleteUser(ctx context.Context, userID int64) error {
	return s.write(ctx, func(w *wtx) error {
		res, err := w.ExecContext(ctx, `DELETE FROM users WHERE id = $1`, userID)
		if err := rowsAffected("delete user", res, err); err != nil {
			return err
		}
		w.emit(Change{UserID: userID, Kind: ChangeMailboxes})
		return nil
	})
}

// LoginAccount returns the account a login name stands for, for counting
// failed logins per account whichever form is typed: for one of a user's
// own addresses (BM-… or BM-…@any domain) the owner's user name; for
// another address the bare address (so BM-x@a and BM-x@b count as one);
// any other name as given.
func (s *sqlStore) LoginAccount(ctx context.Context, name string) (string, error) {
	addr, ok := loginAddress(name)
	if !ok {
		return name, nil
	}
	var owner string
	err := s.rdb.QueryRowContext(ctx, `SELECT u.name FROM users u JOIN identities i ON i.user_id = u.id
		WHERE i.address = $1 AND i.kind = $2`, addr, string(KindNormal)).Scan(&owner)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return addr, nil
	case err != nil:
		return "", fmt.Errorf("login account: %w", err)
	}
	return owner, nil
}

// loginAddress returns the Bitmessage address a login name names, when it
// is one: "BM-…" or "BM-…@domain". Only the form is checked; the lookup
// decides.
func loginAddress(name string) (string, bool) {
	local, _, _ := strings.Cut(name, "@")
	if len(local) < 4 || len(local) > 64 || !strings.HasPrefix(local, "BM-") {
		return "", false
	}
	return local, true
}
