package mailmap

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
)

const mailboxCols = `id, user_id, name, special_use, subscribed, uidvalidity, uidnext, highest_modseq`

func scanMailbox(row interface{ Scan(...any) error }) (Mailbox, error) {
	var m Mailbox
	var uidvalidity, uidnext, modseq int64
	if err := row.Scan(&m.ID, &m.UserID, &m.Name, &m.SpecialUse, &m.Subscribed, &uidvalidity, &uidnext, &modseq); err != nil {
		return Mailbox{}, err
	}
	m.UIDValidity = uint32(uidvalidity)
	// UIDNext past the 32-bit space only happens when it is exhausted;
	// report the last value so callers never see a wrapped UID.
	m.UIDNext = uint32(min(uidnext, math.MaxUint32))
	m.HighestModSeq = fromU64(modseq)
	return m, nil
}

// Hierarchy delimiter (RFC 9051 §5.1.1).
const delimiter = "/"

// maxMailboxName bounds names (bytes of UTF-8).
const maxMailboxName = 512

// canonicalMailboxName validates a mailbox name and spells INBOX (and the
// INBOX part of its children) in upper case: INBOX is case-insensitive, every
// other name is case-sensitive (RFC 9051 §5.1).
func canonicalMailboxName(name string) (string, error) {
	if name == "" || !validText(name, maxMailboxName) {
		return "", invalid("mailbox name must be 1-512 bytes of UTF-8")
	}
	parts := strings.Split(name, delimiter)
	for _, p := range parts {
		if p == "" {
			return "", invalid("mailbox name has an empty level")
		}
		for _, r := range p {
			// * and % are LIST wildcards (RFC 9051 §6.3.9); controls never
			// belong in a name.
			if r < 0x20 || r == 0x7f || r == '*' || r == '%' {
				return "", invalid("mailbox name contains a control or wildcard character")
			}
		}
	}
	if strings.EqualFold(parts[0], "INBOX") {
		parts[0] = "INBOX"
	}
	return strings.Join(parts, delimiter), nil
}

func validSpecialUse(use string) bool {
	switch use {
	case "", SpecialSent, SpecialDrafts, SpecialTrash, SpecialJunk, SpecialArchive:
		return true
	}
	return false
}

// sortMailboxes puts INBOX first, then the rest by name.
func sortMailboxes(ms []Mailbox) {
	sort.Slice(ms, func(i, j int) bool {
		a, b := ms[i].Name, ms[j].Name
		if (a == "INBOX") != (b == "INBOX") {
			return a == "INBOX"
		}
		return a < b
	})
}

func (s *sqlStore) mailboxes(ctx context.Context, q queryer, userID int64) ([]Mailbox, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+mailboxCols+` FROM mailboxes WHERE user_id = $1`, userID)
	if err != nil {
		return nil, fmt.Errorf("list mailboxes: %w", err)
	}
	defer rows.Close()
	var out []Mailbox
	for rows.Next() {
		m, err := scanMailbox(rows)
		if err != nil {
			return nil, fmt.Errorf("list mailboxes: %w", err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list mailboxes: %w", err)
	}
	sortMailboxes(out)
	return out, nil
}

func (s *sqlStore) Mailboxes(ctx context.Context, userID int64) ([]Mailbox, error) {
	return s.mailboxes(ctx, s.rdb, userID)
}

func (s *sqlStore) Mailbox(ctx context.Context, userID int64, name string) (Mailbox, error) {
	cn, err := canonicalMailboxName(name)
	if err != nil {
		return Mailbox{}, ErrNotFound
	}
	m, err := scanMailbox(s.rdb.QueryRowContext(ctx,
		`SELECT `+mailboxCols+` FROM mailboxes WHERE user_id = $1 AND name = $2`, userID, cn))
	if err != nil {
		return Mailbox{}, notFound("read mailbox", err)
	}
	return m, nil
}

func (s *sqlStore) MailboxByID(ctx context.Context, userID, mailboxID int64) (Mailbox, error) {
	m, err := scanMailbox(s.rdb.QueryRowContext(ctx,
		`SELECT `+mailboxCols+` FROM mailboxes WHERE id = $1 AND user_id = $2`, mailboxID, userID))
	if err != nil {
		return Mailbox{}, notFound("read mailbox", err)
	}
	return m, nil
}

func (s *sqlStore) MailboxBySpecialUse(ctx context.Context, userID int64, use string) (Mailbox, error) {
	if use == "" {
		return Mailbox{}, ErrNotFound
	}
	m, err := scanMailbox(s.rdb.QueryRowContext(ctx,
		`SELECT `+mailboxCols+` FROM mailboxes WHERE user_id = $1 AND special_use = $2`, userID, use))
	if err != nil {
		return Mailbox{}, notFound("read mailbox", err)
	}
	return m, nil
}

func (s *sqlStore) MailboxStatus(ctx context.Context, userID, mailboxID int64) (MailboxStatus, error) {
	// One statement, so the counts and the mailbox row are one snapshot.
	var st MailboxStatus
	var uidvalidity, uidnext, modseq, messages, unseen int64
	err := s.rdb.QueryRowContext(ctx, `SELECT b.id, b.user_id, b.name, b.special_use, b.subscribed, b.uidvalidity,
			b.uidnext, b.highest_modseq,
			(SELECT COUNT(*) FROM messages m WHERE m.mailbox_id = b.id AND m.user_id = b.user_id),
			(SELECT COUNT(*) FROM messages m WHERE m.mailbox_id = b.id AND m.user_id = b.user_id AND NOT m.seen),
			(SELECT CAST(COALESCE(SUM(m.size), 0) AS BIGINT) FROM messages m WHERE m.mailbox_id = b.id AND m.user_id = b.user_id)
		FROM mailboxes b WHERE b.id = $1 AND b.user_id = $2`, mailboxID, userID).
		Scan(&st.ID, &st.UserID, &st.Name, &st.SpecialUse, &st.Subscribed, &uidvalidity, &uidnext, &modseq,
			&messages, &unseen, &st.Size)
	if err != nil {
		return MailboxStatus{}, notFound("mailbox status", err)
	}
	st.UIDValidity, st.UIDNext, st.HighestModSeq = uint32(uidvalidity), uint32(min(uidnext, math.MaxUint32)), fromU64(modseq)
	st.Messages, st.Unseen = uint32(messages), uint32(unseen)
	return st, nil
}

// lockUser takes the user's row lock (see dialect.lockUser) and returns the
// quota and the bytes in use.
func (s *sqlStore) lockUser(ctx context.Context, w *wtx, userID int64) (quota, used int64, err error) {
	if err := w.QueryRowContext(ctx, s.d.lockUser, userID).Scan(&quota, &used); err != nil {
		return 0, 0, notFound("lock user", err)
	}
	return quota, used, nil
}

// lockMailbox takes a mailbox's row lock; ErrNotFound unless the user owns it.
func (s *sqlStore) lockMailbox(ctx context.Context, w *wtx, userID, mailboxID int64) (Mailbox, error) {
	m, err := scanMailbox(w.QueryRowContext(ctx, s.d.lockMailbox, mailboxID, userID))
	if err != nil {
		return Mailbox{}, notFound("lock mailbox", err)
	}
	return m, nil
}

// insertMailbox creates one mailbox with a fresh UIDVALIDITY. The caller
// holds the user's lock and has checked the name is free.
func (s *sqlStore) insertMailbox(ctx context.Context, w *wtx, userID int64, name, use string, subscribed bool) (Mailbox, error) {
	uidvalidity, err := allocUIDValidity(ctx, w, userID)
	if err != nil {
		return Mailbox{}, err
	}
	m := Mailbox{UserID: userID, Name: name, SpecialUse: use, Subscribed: subscribed,
		UIDValidity: uint32(uidvalidity), UIDNext: 1, HighestModSeq: 1}
	err = w.QueryRowContext(ctx, `INSERT INTO mailboxes (user_id, name, special_use, subscribed, uidvalidity, uidnext, highest_modseq)
		VALUES ($1, $2, $3, $4, $5, 1, 1) ON CONFLICT DO NOTHING RETURNING id`,
		userID, name, use, subscribed, uidvalidity).Scan(&m.ID)
	if errors.Is(err, sql.ErrNoRows) {
		return Mailbox{}, ErrExists // the name, or the special use, is taken
	}
	if err != nil {
		return Mailbox{}, fmt.Errorf("create mailbox: %w", err)
	}
	w.emit(Change{UserID: userID, MailboxID: m.ID, Kind: ChangeMailboxes})
	return m, nil
}

// allocUIDValidity hands out the user's next UIDVALIDITY. The caller holds
// the user's lock.
func allocUIDValidity(ctx context.Context, w *wtx, userID int64) (int64, error) {
	var next int64
	err := w.QueryRowContext(ctx, `UPDATE users SET next_uidvalidity =
			CASE WHEN next_uidvalidity >= 4294967295 THEN 1 ELSE next_uidvalidity + 1 END
		WHERE id = $1 RETURNING next_uidvalidity`, userID).Scan(&next)
	if err != nil {
		return 0, notFound("allocate uidvalidity", err)
	}
	if next == 1 {
		return math.MaxUint32, nil
	}
	return next - 1, nil
}

// CreateMailbox creates the mailbox, unsubscribed, and any missing parent
// levels (RFC 9051 §6.3.4). A trailing delimiter is ignored.
func (s *sqlStore) CreateMailbox(ctx context.Context, userID int64, name, specialUse string) (Mailbox, error) {
	cn, err := canonicalMailboxName(strings.TrimSuffix(name, delimiter))
	if err != nil {
		return Mailbox{}, err
	}
	if !validSpecialUse(specialUse) {
		return Mailbox{}, invalid("unknown special use")
	}
	var m Mailbox
	err = s.write(ctx, func(w *wtx) error {
		if _, _, err := s.lockUser(ctx, w, userID); err != nil {
			return err
		}
		all, err := s.mailboxes(ctx, w, userID)
		if err != nil {
			return err
		}
		names := make(map[string]bool, len(all))
		for _, mb := range all {
			names[mb.Name] = true
		}
		if names[cn] {
			return ErrExists
		}
		if err := s.createParents(ctx, w, userID, cn, names); err != nil {
			return err
		}
		m, err = s.insertMailbox(ctx, w, userID, cn, specialUse, false)
		return err
	})
	if err != nil {
		return Mailbox{}, err
	}
	return m, nil
}

// createParents creates the missing superior levels of name.
func (s *sqlStore) createParents(ctx context.Context, w *wtx, userID int64, name string, names map[string]bool) error {
	for i := 0; i < len(name); i++ {
		if name[i] != '/' {
			continue
		}
		parent := name[:i]
		if names[parent] {
			continue
		}
		if _, err := s.insertMailbox(ctx, w, userID, parent, "", false); err != nil {
			return err
		}
		names[parent] = true
	}
	return nil
}

// RenameMailbox renames a mailbox and its children; UIDVALIDITY, messages,
// special use and subscription move with them (RFC 9051 §6.3.6). Renaming
// INBOX is refused with ErrProtected.
func (s *sqlStore) RenameMailbox(ctx context.Context, userID int64, oldName, newName string) error {
	from, err := canonicalMailboxName(oldName)
	if err != nil {
		return ErrNotFound
	}
	to, err := canonicalMailboxName(strings.TrimSuffix(newName, delimiter))
	if err != nil {
		return err
	}
	if from == "INBOX" {
		return ErrProtected
	}
	if to == from {
		return ErrExists
	}
	if strings.HasPrefix(to, from+delimiter) {
		return invalid("cannot move a mailbox under itself")
	}
	return s.write(ctx, func(w *wtx) error { return s.renameTx(ctx, w, userID, from, to) })
}

// renameTx renames the canonical mailbox name from, and its children, to
// the canonical name to, inside w.
func (s *sqlStore) renameTx(ctx context.Context, w *wtx, userID int64, from, to string) error {
	if _, _, err := s.lockUser(ctx, w, userID); err != nil {
		return err
	}
	all, err := s.mailboxes(ctx, w, userID)
	if err != nil {
		return err
	}
	names := make(map[string]bool, len(all))
	for _, mb := range all {
		names[mb.Name] = true
	}
	if !names[from] {
		return ErrNotFound
	}
	type rename struct {
		id int64
		to string
	}
	var renames []rename
	for _, mb := range all {
		var target string
		switch {
		case mb.Name == from:
			target = to
		case strings.HasPrefix(mb.Name, from+delimiter):
			target = to + mb.Name[len(from):]
		default:
			continue
		}
		if names[target] || len(target) > maxMailboxName {
			return ErrExists
		}
		renames = append(renames, rename{mb.ID, target})
	}
	if err := s.createParents(ctx, w, userID, to, names); err != nil {
		return err
	}
	// Rows change in ascending id order, the lock order of every writer.
	sort.Slice(renames, func(i, j int) bool { return renames[i].id < renames[j].id })
	for _, r := range renames {
		res, err := w.ExecContext(ctx, `UPDATE mailboxes SET name = $1 WHERE id = $2 AND user_id = $3`, r.to, r.id, userID)
		if err := rowsAffected("rename mailbox", res, err); err != nil {
			return err
		}
		w.emit(Change{UserID: userID, MailboxID: r.id, Kind: ChangeMailboxes})
	}
	return nil
}

// DeleteMailbox deletes a mailbox and its messages. INBOX and the special-use
// folders are protected; a mailbox with children is refused (ErrHasChildren)
// rather than left as a \Noselect level.
func (s *sqlStore) DeleteMailbox(ctx context.Context, userID int64, name string) error {
	cn, err := canonicalMailboxName(name)
	if err != nil {
		return ErrNotFound
	}
	if cn == "INBOX" {
		return ErrProtected
	}
	return s.write(ctx, func(w *wtx) error {
		if _, _, err := s.lockUser(ctx, w, userID); err != nil {
			return err
		}
		all, err := s.mailboxes(ctx, w, userID)
		if err != nil {
			return err
		}
		var target *Mailbox
		for i, mb := range all {
			if mb.Name == cn {
				target = &all[i]
			}
		}
		if target == nil {
			return ErrNotFound
		}
		if target.SpecialUse != "" {
			return ErrProtected
		}
		for _, mb := range all {
			if strings.HasPrefix(mb.Name, cn+delimiter) {
				return ErrHasChildren
			}
		}
		if _, err := s.lockMailbox(ctx, w, userID, target.ID); err != nil {
			return err
		}
		freed, bodies, err := deleteMessages(ctx, w, `DELETE FROM messages WHERE mailbox_id = $1 AND user_id = $2 RETURNING body_id, size`,
			target.ID, userID)
		if err != nil {
			return err
		}
		res, err := w.ExecContext(ctx, `DELETE FROM mailboxes WHERE id = $1 AND user_id = $2`, target.ID, userID)
		if err := rowsAffected("delete mailbox", res, err); err != nil {
			return err
		}
		if err := s.releaseBodies(ctx, w, userID, bodies, freed); err != nil {
			return err
		}
		w.emit(Change{UserID: userID, MailboxID: target.ID, Kind: ChangeMailboxes})
		return nil
	})
}

func (s *sqlStore) SetSubscribed(ctx context.Context, userID int64, name string, on bool) error {
	cn, err := canonicalMailboxName(name)
	if err != nil {
		return ErrNotFound
	}
	return s.write(ctx, func(w *wtx) error {
		var id int64
		err := w.QueryRowContext(ctx, `UPDATE mailboxes SET subscribed = $1 WHERE user_id = $2 AND name = $3 RETURNING id`,
			on, userID, cn).Scan(&id)
		if err != nil {
			return notFound("set subscribed", err)
		}
		w.emit(Change{UserID: userID, MailboxID: id, Kind: ChangeMailboxes})
		return nil
	})
}
