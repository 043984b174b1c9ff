package mailmap

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/mail"
	"net/url"
	"os"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// A chan's keys derive from its passphrase, so the passphrase is a private
// key: it is stored only sealed (identities.chan_passphrase), and the chan is
// named (label, folder Chans/<label>) by a name its user chooses.
//
// Before migration 0004 the passphrase was stored in clear, three times: in
// the label "[chan] <passphrase>", in the folder name "Chans/<passphrase>",
// and in the To: display name of every post filed there. Sealing needs the
// secret key, which SQL has not: 0004 leaves the settings row
// chanSecretsPending and Open finishes the job (migrateChanSecrets).

// chanSecretsPending is the settings row migration 0004 writes when chans
// from before it are to be migrated.
const chanSecretsPending = "chan_secrets_pending"

// oldChanLabelPrefix began the label of every chan joined before 0004.
const oldChanLabelPrefix = "[chan] "

// DefaultChanName is the name a chan gets when its user chooses none:
// "chan-" and the start of its address, which tells nothing of the
// passphrase.
func DefaultChanName(address string) string {
	a := strings.TrimPrefix(address, "BM-")
	if len(a) > 10 {
		a = a[:10]
	}
	return "chan-" + a
}

// chanFolder is the folder the gateway files a chan's posts in
// (gateway.ChanFolder; a test keeps the two equal). It stays here, frozen,
// because the migration must find the folders that older releases named.
func chanFolder(label, address string) string {
	name := strings.TrimSpace(strings.TrimPrefix(label, "[chan]"))
	if name == "" {
		name = address
	}
	name = strings.Map(func(r rune) rune {
		switch {
		case r == '/' || r == '*' || r == '%' || r < 0x20 || r == 0x7f:
			return '_'
		}
		return r
	}, name)
	if len(name) > 200 {
		name = name[:200]
	}
	return "Chans/" + name
}

// oldChan is an identity row from before migration 0004.
type oldChan struct {
	id, userID     int64
	address, label string
}

// migrateChanSecrets seals the passphrases of chans joined before migration
// 0004, renames them "[chan] <passphrase>" → DefaultChanName, renames their
// folders (with children and messages) to match, and rewrites the To: of
// the posts that named the chan by its passphrase. All of it is one
// transaction that also deletes the chanSecretsPending row: it runs once,
// and a crash leaves it to the next Open.
func (s *sqlStore) migrateChanSecrets(ctx context.Context) error {
	var n int
	err := s.write(ctx, func(w *wtx) error {
		n = 0
		// Deleting the row is also the lock: a second process starting at
		// once waits here, then finds nothing to do.
		res, err := w.ExecContext(ctx, `DELETE FROM settings WHERE name = $1`, chanSecretsPending)
		if err != nil {
			return fmt.Errorf("migrate chan passphrases: %w", err)
		}
		if k, err := res.RowsAffected(); err != nil || k == 0 {
			return err
		}
		rows, err := w.QueryContext(ctx, `SELECT id, user_id, address, label FROM identities
			WHERE kind = 'chan' AND chan_passphrase IS NULL ORDER BY user_id, id`)
		if err != nil {
			return fmt.Errorf("migrate chan passphrases: %w", err)
		}
		var chans []oldChan
		for rows.Next() {
			var c oldChan
			if err := rows.Scan(&c.id, &c.userID, &c.address, &c.label); err != nil {
				rows.Close()
				return fmt.Errorf("migrate chan passphrases: %w", err)
			}
			// Only the old label holds the passphrase; another label
			// (set through the API) tells nothing to seal.
			if len(c.label) > len(oldChanLabelPrefix) && strings.HasPrefix(c.label, oldChanLabelPrefix) {
				chans = append(chans, c)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("migrate chan passphrases: %w", err)
		}
		for _, c := range chans {
			if err := s.migrateChan(ctx, w, c); err != nil {
				return fmt.Errorf("migrate chan %s of user %d: %w", c.address, c.userID, err)
			}
			n++
		}
		return nil
	})
	if err != nil || n == 0 {
		return err
	}
	s.log.Info("chan passphrases sealed; chans renamed to chan-<address>", "chans", n)
	s.scrubOldRows(ctx)
	return nil
}

func (s *sqlStore) migrateChan(ctx context.Context, w *wtx, c oldChan) error {
	if _, _, err := s.lockUser(ctx, w, c.userID); err != nil {
		return err
	}
	passphrase := c.label[len(oldChanLabelPrefix):]
	name, err := s.freeChanName(ctx, w, c.userID, c.address)
	if err != nil {
		return err
	}
	sealed, err := s.keys.seal([]byte(passphrase), passphraseContext(c.address))
	if err != nil {
		return err
	}
	res, err := w.ExecContext(ctx, `UPDATE identities SET label = $1, chan_passphrase = $2 WHERE id = $3`, name, sealed, c.id)
	if err := rowsAffected("rename chan", res, err); err != nil {
		return err
	}
	oldFolder, newFolder := chanFolder(c.label, c.address), chanFolder(name, c.address)
	var one int
	err = w.QueryRowContext(ctx, `SELECT 1 FROM mailboxes WHERE user_id = $1 AND name = $2`, c.userID, oldFolder).Scan(&one)
	switch {
	case err == nil:
		if err := s.renameTx(ctx, w, c.userID, oldFolder, newFolder); err != nil {
			return fmt.Errorf("rename folder: %w", err)
		}
	case !errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("find folder: %w", err)
	}
	return s.rewriteChanPosts(ctx, w, c.userID, c.address, name)
}

// freeChanName picks the chan's new name: DefaultChanName unless the user
// already has an identity with that label or a folder by that name, then
// longer or numbered variants.
func (s *sqlStore) freeChanName(ctx context.Context, w *wtx, userID int64, address string) (string, error) {
	taken := func(name string) (bool, error) {
		var one int
		err := w.QueryRowContext(ctx, `SELECT 1 FROM identities WHERE user_id = $1 AND label = $2
			UNION ALL SELECT 1 FROM mailboxes WHERE user_id = $1 AND name = $3`,
			userID, name, chanFolder(name, address)).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return false, nil
		}
		return err == nil, err
	}
	base := DefaultChanName(address)
	candidates := []string{base, "chan-" + strings.TrimPrefix(address, "BM-")}
	for i := 2; i < 100; i++ {
		candidates = append(candidates, fmt.Sprintf("%s-%d", base, i))
	}
	for _, name := range candidates {
		t, err := taken(name)
		if err != nil {
			return "", fmt.Errorf("choose chan name: %w", err)
		}
		if !t {
			return name, nil
		}
	}
	return "", errors.New("choose chan name: every candidate is taken")
}

// rewriteChanPosts gives the posts filed for a chan (X-Bitmessage-Kind: chan,
// To: the chan's address) the chan's new name as To: display name, in place
// of the passphrase. Every mailbox holding one gets a new UIDVALIDITY, since
// its content changed under its UID (RFC 9051 §2.3.1.1); the sizes and the
// user's usage follow the new length.
func (s *sqlStore) rewriteChanPosts(ctx context.Context, w *wtx, userID int64, address, name string) error {
	// Candidates: the user's bodies that mention the address at all.
	q := `SELECT id FROM bodies WHERE user_id = $1 AND instr(raw, $2) > 0 ORDER BY id`
	if s.d == postgresDialect {
		q = `SELECT id FROM bodies WHERE user_id = $1 AND position($2::bytea in raw) > 0 ORDER BY id`
	}
	rows, err := w.QueryContext(ctx, q, userID, []byte(address+"@"))
	if err != nil {
		return fmt.Errorf("find chan posts: %w", err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return fmt.Errorf("find chan posts: %w", err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("find chan posts: %w", err)
	}
	var mailboxes []int64
	var delta int64
	for _, id := range ids {
		var raw []byte
		if err := w.QueryRowContext(ctx, `SELECT raw FROM bodies WHERE id = $1`, id).Scan(&raw); err != nil {
			return fmt.Errorf("read chan post: %w", err)
		}
		out, ok := rewriteChanTo(raw, address, name)
		if !ok {
			continue
		}
		if _, err := w.ExecContext(ctx, `UPDATE bodies SET raw = $1 WHERE id = $2`, out, id); err != nil {
			return fmt.Errorf("rewrite chan post: %w", err)
		}
		if s.headerIndex {
			if err := insertHeaderIndex(ctx, w, id, IndexHeader(out), true); err != nil {
				return err
			}
		}
		rows, err := w.QueryContext(ctx, `UPDATE messages SET size = $1 WHERE body_id = $2 AND user_id = $3
			RETURNING mailbox_id`, int64(len(out)), id, userID)
		if err != nil {
			return fmt.Errorf("rewrite chan post: %w", err)
		}
		for rows.Next() {
			var mb int64
			if err := rows.Scan(&mb); err != nil {
				rows.Close()
				return fmt.Errorf("rewrite chan post: %w", err)
			}
			mailboxes = append(mailboxes, mb)
			delta += int64(len(out)) - int64(len(raw))
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("rewrite chan post: %w", err)
		}
	}
	if delta != 0 {
		if _, err := w.ExecContext(ctx, `UPDATE users SET used_bytes = CASE WHEN used_bytes + $1 > 0 THEN used_bytes + $1 ELSE 0 END
			WHERE id = $2`, delta, userID); err != nil {
			return fmt.Errorf("update usage: %w", err)
		}
	}
	slices.Sort(mailboxes)
	for _, mb := range slices.Compact(mailboxes) {
		v, err := allocUIDValidity(ctx, w, userID)
		if err != nil {
			return err
		}
		res, err := w.ExecContext(ctx, `UPDATE mailboxes SET uidvalidity = $1, highest_modseq = highest_modseq + 1
			WHERE id = $2 AND user_id = $3`, v, mb, userID)
		if err := rowsAffected("renew uidvalidity", res, err); err != nil {
			return err
		}
		w.emit(Change{UserID: userID, MailboxID: mb, Kind: ChangeMailboxes})
	}
	return nil
}

// rewriteChanTo replaces the To: field of a post the gateway filed for the
// chan address with one whose display name is name. It reports false (and
// changes nothing) for any other message, or when the field is already so.
func rewriteChanTo(raw []byte, address, name string) ([]byte, bool) {
	end, nl := bytes.Index(raw, []byte("\r\n\r\n")), "\r\n"
	if lf := bytes.Index(raw, []byte("\n\n")); lf >= 0 && (end < 0 || lf < end) {
		end, nl = lf, "\n"
	}
	if end < 0 {
		return raw, false
	}
	head := raw[:end+len(nl)]
	// Fields as [start, end) offsets, continuation lines included.
	type field struct{ start, end int }
	var fields []field
	for off := 0; off < len(head); {
		i := bytes.IndexByte(head[off:], '\n')
		next := off + i + 1
		if i < 0 {
			next = len(head)
		}
		if len(fields) > 0 && (head[off] == ' ' || head[off] == '\t') {
			fields[len(fields)-1].end = next
		} else {
			fields = append(fields, field{off, next})
		}
		off = next
	}
	isChan, to := false, -1
	var toAddr string
	for i, f := range fields {
		k, v, ok := strings.Cut(string(head[f.start:f.end]), ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(strings.NewReplacer("\r\n", "", "\n", "").Replace(v))
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "x-bitmessage-kind":
			isChan = v == "chan"
		case "to":
			if to >= 0 {
				return raw, false // two To: fields: not one of ours
			}
			to = i
			if a, err := mail.ParseAddress(v); err == nil {
				toAddr = a.Address
			} else if j := strings.LastIndexByte(v, '<'); j >= 0 && strings.HasSuffix(v, ">") {
				toAddr = v[j+1 : len(v)-1]
			}
		}
	}
	local, _, _ := strings.Cut(toAddr, "@")
	if !isChan || to < 0 || local != address {
		return raw, false
	}
	f := fields[to]
	repl := "To: " + (&mail.Address{Name: name, Address: toAddr}).String() + nl
	if string(raw[f.start:f.end]) == repl {
		return raw, false
	}
	out := make([]byte, 0, len(raw)-(f.end-f.start)+len(repl))
	out = append(out, raw[:f.start]...)
	out = append(out, repl...)
	return append(out, raw[f.end:]...), true
}

// scrubOldRows erases what the migration replaced from the database files.
// SQLite keeps deleted and overwritten bytes in free space (and pages of
// earlier row versions in the write-ahead log): VACUUM rewrites the file
// from live rows only and the TRUNCATE checkpoint empties the log. Failures
// are logged, not fatal: the rows are migrated either way.
func (s *sqlStore) scrubOldRows(ctx context.Context) {
	if s.d != sqliteDialect {
		s.log.Warn("PostgreSQL keeps old row versions, with the chan passphrases, in its files until the space is reused; " +
			"run VACUUM FULL identities, mailboxes, bodies to rewrite them now. Dumps and backups taken before this upgrade still hold them.")
		return
	}
	s.log.Info("compacting the database file to erase the old chan passphrases (VACUUM)")
	if _, err := s.db.ExecContext(ctx, `VACUUM`); err != nil {
		s.log.Warn("VACUUM failed: the database file may still hold old chan passphrases in free space; run VACUUM with sqlite3", "err", err)
		return
	}
	var busy, frames, done int
	err := s.db.QueryRowContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &frames, &done)
	if err == nil && busy != 0 {
		err = errors.New("another connection is reading")
	}
	if err != nil {
		s.log.Warn("could not empty the write-ahead log; it may hold old chan passphrases until the next checkpoint", "err", err)
	}
}

// HoldsSealedKeys reports whether the database dsn names holds anything
// sealed with a secret key (the key check Open writes, or an identity),
// without creating or changing anything. When the key is missing and this
// is true, the key must be restored: a new one could open none of it. A
// database that does not exist holds nothing.
func HoldsSealedKeys(ctx context.Context, dsn string) (bool, error) {
	var db *sql.DB
	var tableQ string
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		var err error
		if db, err = sql.Open("pgx", dsn); err != nil {
			return false, fmt.Errorf("open postgres: %w", err)
		}
		tableQ = `SELECT to_regclass('settings') IS NOT NULL, to_regclass('identities') IS NOT NULL`
	} else {
		base, sep, err := sqliteBase(dsn)
		if err != nil {
			return false, err
		}
		if p := sqliteFilePath(base); p != "" {
			if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
				return false, nil
			}
		}
		if db, err = sql.Open("sqlite", base+sep+"_pragma=busy_timeout(10000)&_pragma=query_only(1)"); err != nil {
			return false, fmt.Errorf("open sqlite: %w", err)
		}
		tableQ = `SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'settings'),
			EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'identities')`
	}
	defer db.Close()
	var settings, identities bool
	if err := db.QueryRowContext(ctx, tableQ).Scan(&settings, &identities); err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "3D000" { // invalid_catalog_name: no such database yet
			return false, nil
		}
		return false, fmt.Errorf("look for sealed keys: %w", err)
	}
	var found bool
	if settings {
		if err := db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM settings WHERE name = $1)`, keyCheckName).Scan(&found); err != nil {
			return false, fmt.Errorf("look for sealed keys: %w", err)
		}
	}
	if !found && identities {
		if err := db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM identities)`).Scan(&found); err != nil {
			return false, fmt.Errorf("look for sealed keys: %w", err)
		}
	}
	return found, nil
}

// sqliteFilePath is the file an SQLite DSN base (a path or a file: URI)
// names, or "" when it cannot tell.
func sqliteFilePath(base string) string {
	if !strings.HasPrefix(base, "file:") {
		return base
	}
	u, err := url.Parse(base)
	if err != nil {
		return ""
	}
	if u.Opaque != "" {
		p, err := url.PathUnescape(u.Opaque)
		if err != nil {
			return ""
		}
		return p
	}
	return u.Path
}
