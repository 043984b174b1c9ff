package mailmap

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"
)

// msgRow is a message as read inside a write transaction.
type msgRow struct {
	Message
	bodyID int64
}

const messageCols = `id, mailbox_id, uid, flags, internal_date, size, message_id, modseq, body_id`

func scanMessage(row interface{ Scan(...any) error }) (msgRow, error) {
	var m msgRow
	var uid, date, modseq int64
	var flags string
	if err := row.Scan(&m.ID, &m.MailboxID, &uid, &flags, &date, &m.Size, &m.MessageID, &modseq, &m.bodyID); err != nil {
		return msgRow{}, err
	}
	m.UID, m.Flags, m.InternalDate, m.ModSeq = uint32(uid), splitFlags(flags), fromMicros(date), fromU64(modseq)
	return m, nil
}

func queryMessages(ctx context.Context, q queryer, query string, args ...any) ([]msgRow, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("read messages: %w", err)
	}
	defer rows.Close()
	var out []msgRow
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			return nil, fmt.Errorf("read messages: %w", err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read messages: %w", err)
	}
	return out, nil
}

// selectMessages reads the messages of a mailbox with the given UIDs (nil:
// all of them), in UID order; onlyDeleted keeps those flagged \Deleted.
func selectMessages(ctx context.Context, q queryer, userID, mailboxID int64, uids []uint32, onlyDeleted bool) ([]msgRow, error) {
	if uids != nil && len(uids) == 0 {
		return nil, nil
	}
	query := `SELECT ` + messageCols + ` FROM messages WHERE user_id = $1 AND mailbox_id = $2`
	if onlyDeleted {
		query += ` AND deleted`
	}
	if uids == nil || len(uids) > inChunk {
		// A long list (e.g. 1:*) is cheaper as one ordered scan, filtered here.
		all, err := queryMessages(ctx, q, query+` ORDER BY uid`, userID, mailboxID)
		if err != nil || uids == nil {
			return all, err
		}
		want := make(map[uint32]bool, len(uids))
		for _, u := range uids {
			want[u] = true
		}
		return slices.DeleteFunc(all, func(m msgRow) bool { return !want[m.UID] }), nil
	}
	args := []any{userID, mailboxID}
	for _, u := range uids {
		args = append(args, int64(u))
	}
	return queryMessages(ctx, q, query+` AND uid IN (`+placeholders(3, len(uids))+`) ORDER BY uid`, args...)
}

// allocUIDs reserves n UIDs in a mailbox the caller has locked, and a new
// modseq for the change. UIDs only grow: they are never reused, even after
// expunge (RFC 9051 §2.3.1.1).
func allocUIDs(ctx context.Context, w *wtx, userID, mailboxID int64, n int) (first uint32, modseq uint64, err error) {
	var next, ms int64
	err = w.QueryRowContext(ctx, `UPDATE mailboxes SET uidnext = uidnext + $1, highest_modseq = highest_modseq + 1
		WHERE id = $2 AND user_id = $3 RETURNING uidnext, highest_modseq`, int64(n), mailboxID, userID).Scan(&next, &ms)
	if err != nil {
		return 0, 0, notFound("allocate uid", err)
	}
	if err := checkUID(next); err != nil {
		return 0, 0, err
	}
	return uint32(next - int64(n)), fromU64(ms), nil
}

// bumpModSeq gives a change to a locked mailbox its new modseq (RFC 7162 §3.1.1).
func bumpModSeq(ctx context.Context, w *wtx, userID, mailboxID int64) (uint64, error) {
	var ms int64
	err := w.QueryRowContext(ctx, `UPDATE mailboxes SET highest_modseq = highest_modseq + 1
		WHERE id = $1 AND user_id = $2 RETURNING highest_modseq`, mailboxID, userID).Scan(&ms)
	if err != nil {
		return 0, notFound("bump modseq", err)
	}
	return fromU64(ms), nil
}

// reserveQuota adds n bytes to the user's usage, or fails with
// ErrOverQuota. The caller holds the user's lock.
func reserveQuota(ctx context.Context, w *wtx, userID, quota, used, n int64) error {
	if quota > 0 && used+n > quota {
		return ErrOverQuota
	}
	res, err := w.ExecContext(ctx, `UPDATE users SET used_bytes = used_bytes + $1 WHERE id = $2`, n, userID)
	return rowsAffected("reserve quota", res, err)
}

func (s *sqlStore) AppendMessage(ctx context.Context, userID, mailboxID int64, raw []byte, flags []string, date time.Time) (Message, error) {
	var m Message
	err := s.write(ctx, func(w *wtx) error {
		var err error
		m, err = s.appendTx(ctx, w, userID, mailboxID, raw, flags, date)
		return err
	})
	if err != nil {
		return Message{}, err
	}
	return m, nil
}

// appendTx appends a message inside the write transaction w, so that other
// changes (an outbox transition, a delivery key) commit with it.
func (s *sqlStore) appendTx(ctx context.Context, w *wtx, userID, mailboxID int64, raw []byte, flags []string, date time.Time) (Message, error) {
	if len(raw) == 0 {
		return Message{}, invalid("empty message")
	}
	nf, err := normFlags(flags)
	if err != nil {
		return Message{}, err
	}
	if date.IsZero() {
		date = s.now()
	}
	m := Message{MailboxID: mailboxID, Flags: nf, InternalDate: stored(date), Size: int64(len(raw)), MessageID: parseMessageID(raw)}
	quota, used, err := s.lockUser(ctx, w, userID)
	if err != nil {
		return Message{}, err
	}
	if _, err := s.lockMailbox(ctx, w, userID, mailboxID); err != nil {
		return Message{}, err
	}
	if err := reserveQuota(ctx, w, userID, quota, used, m.Size); err != nil {
		return Message{}, err
	}
	if m.UID, m.ModSeq, err = allocUIDs(ctx, w, userID, mailboxID, 1); err != nil {
		return Message{}, err
	}
	var bodyID int64
	if err := w.QueryRowContext(ctx, `INSERT INTO bodies (user_id, raw) VALUES ($1, $2) RETURNING id`, userID, raw).Scan(&bodyID); err != nil {
		return Message{}, fmt.Errorf("store message: %w", err)
	}
	if s.headerIndex {
		if err := insertHeaderIndex(ctx, w, bodyID, IndexHeader(raw), false); err != nil {
			return Message{}, err
		}
	}
	if err := w.QueryRowContext(ctx, `INSERT INTO messages (user_id, mailbox_id, uid, body_id, flags, seen, deleted,
			internal_date, size, message_id, modseq)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id`,
		userID, mailboxID, int64(m.UID), bodyID, joinFlags(nf), hasFlag(nf, `\Seen`), hasFlag(nf, `\Deleted`),
		toMicros(m.InternalDate), m.Size, m.MessageID, u64(m.ModSeq)).Scan(&m.ID); err != nil {
		return Message{}, fmt.Errorf("store message: %w", err)
	}
	w.emit(Change{UserID: userID, MailboxID: mailboxID, Kind: ChangeNew, UID: m.UID})
	return m, nil
}

// mailboxExists returns ErrNotFound unless the user owns the mailbox.
func mailboxExists(ctx context.Context, q queryer, userID, mailboxID int64) error {
	var one int
	err := q.QueryRowContext(ctx, `SELECT 1 FROM mailboxes WHERE id = $1 AND user_id = $2`, mailboxID, userID).Scan(&one)
	if err != nil {
		return notFound("read mailbox", err)
	}
	return nil
}

func (s *sqlStore) Messages(ctx context.Context, userID, mailboxID int64) ([]Message, error) {
	if err := mailboxExists(ctx, s.rdb, userID, mailboxID); err != nil {
		return nil, err
	}
	rows, err := selectMessages(ctx, s.rdb, userID, mailboxID, nil, false)
	if err != nil {
		return nil, err
	}
	out := make([]Message, len(rows))
	for i := range rows {
		out[i] = rows[i].Message
	}
	return out, nil
}

func (s *sqlStore) MessageRaw(ctx context.Context, userID, mailboxID int64, uid uint32) ([]byte, error) {
	var raw []byte
	err := s.rdb.QueryRowContext(ctx, `SELECT b.raw FROM messages m JOIN bodies b ON b.id = m.body_id AND b.user_id = m.user_id
		WHERE m.user_id = $1 AND m.mailbox_id = $2 AND m.uid = $3`, userID, mailboxID, int64(uid)).Scan(&raw)
	if err != nil {
		return nil, notFound("read message", err)
	}
	return raw, nil
}

// MessagesRaw reads the bytes of the messages with the given UIDs: one
// query for a list that is a whole UID range (what FETCH 1:* read ahead in
// batches gives; the statement is prepared once per store), else one query
// per chunk of UIDs. Missing UIDs are left out of the map.
func (s *sqlStore) MessagesRaw(ctx context.Context, userID, mailboxID int64, uids []uint32) (map[uint32][]byte, error) {
	out := make(map[uint32][]byte, len(uids))
	if len(uids) == 0 {
		return out, nil
	}
	const cols = `SELECT m.uid, b.raw FROM messages m JOIN bodies b ON b.id = m.body_id AND b.user_id = m.user_id
			WHERE m.user_id = $1 AND m.mailbox_id = $2`
	if consecutive(uids) {
		lo, hi := uids[0], uids[len(uids)-1]
		st, err := s.prepared(ctx, cols+` AND m.uid >= $3 AND m.uid <= $4`)
		if err != nil {
			return nil, fmt.Errorf("read messages: %w", err)
		}
		rows, err := st.QueryContext(ctx, userID, mailboxID, int64(lo), int64(hi))
		if err != nil {
			return nil, fmt.Errorf("read messages: %w", err)
		}
		if err := scanRaws(rows, out); err != nil {
			return nil, err
		}
		return out, nil
	}
	for _, c := range chunks(uids) {
		args := make([]any, 0, 2+len(c))
		args = append(args, userID, mailboxID)
		for _, u := range c {
			args = append(args, int64(u))
		}
		rows, err := s.rdb.QueryContext(ctx, cols+` AND m.uid IN (`+placeholders(3, len(c))+`)`, args...)
		if err != nil {
			return nil, fmt.Errorf("read messages: %w", err)
		}
		if err := scanRaws(rows, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// consecutive reports whether uids is n, n+1, n+2, ….
func consecutive(uids []uint32) bool {
	for i, u := range uids {
		if u != uids[0]+uint32(i) {
			return false
		}
	}
	return true
}

// scanRaws reads (uid, raw) rows into out and closes them.
func scanRaws(rows *sql.Rows, out map[uint32][]byte) error {
	defer rows.Close()
	for rows.Next() {
		var uid int64
		var raw []byte
		if err := rows.Scan(&uid, &raw); err != nil {
			return fmt.Errorf("read messages: %w", err)
		}
		out[uint32(uid)] = raw
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read messages: %w", err)
	}
	return nil
}

// prepared returns query prepared on the read pool, once per store (for
// the few constant queries that run per batch of a big FETCH or SEARCH,
// where parsing the statement would cost as much as running it).
func (s *sqlStore) prepared(ctx context.Context, query string) (*sql.Stmt, error) {
	s.stmtMu.Lock()
	defer s.stmtMu.Unlock()
	if st, ok := s.stmts[query]; ok {
		return st, nil
	}
	st, err := s.rdb.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if s.stmts == nil {
		s.stmts = make(map[string]*sql.Stmt)
	}
	s.stmts[query] = st
	return st, nil
}

// UpdateFlags changes the flags of the messages with the given UIDs and
// returns every one of them that exists, with its flags after the change.
// Only messages whose flags actually changed get a new modseq and a
// ChangeFlags notice.
func (s *sqlStore) UpdateFlags(ctx context.Context, userID, mailboxID int64, uids []uint32, op FlagOp, flags []string) ([]Message, error) {
	if op != FlagsReplace && op != FlagsAdd && op != FlagsRemove {
		return nil, invalid("unknown flag operation")
	}
	nf, err := normFlags(flags)
	if err != nil {
		return nil, err
	}
	var out []Message
	err = s.write(ctx, func(w *wtx) error {
		out = nil
		if _, err := s.lockMailbox(ctx, w, userID, mailboxID); err != nil {
			return err
		}
		if len(uids) == 0 {
			return nil
		}
		rows, err := selectMessages(ctx, w, userID, mailboxID, uids, false)
		if err != nil {
			return err
		}
		// Messages that end with the same flags are updated together.
		changed := map[string][]int64{}
		var order []string
		isChanged := make([]bool, len(rows))
		for i := range rows {
			m := &rows[i]
			next := applyFlags(m.Flags, op, nf)
			if !slices.Equal(next, m.Flags) {
				isChanged[i] = true
				key := joinFlags(next)
				if _, ok := changed[key]; !ok {
					order = append(order, key)
				}
				changed[key] = append(changed[key], m.ID)
				m.Flags = next
				w.emit(Change{UserID: userID, MailboxID: mailboxID, Kind: ChangeFlags, UID: m.UID})
			}
		}
		if len(changed) > 0 {
			modseq, err := bumpModSeq(ctx, w, userID, mailboxID)
			if err != nil {
				return err
			}
			for _, key := range order {
				flags := splitFlags(key)
				for _, c := range chunks(changed[key]) {
					args := []any{key, hasFlag(flags, `\Seen`), hasFlag(flags, `\Deleted`), u64(modseq), userID}
					for _, id := range c {
						args = append(args, id)
					}
					res, err := w.ExecContext(ctx, `UPDATE messages SET flags = $1, seen = $2, deleted = $3, modseq = $4
						WHERE user_id = $5 AND id IN (`+placeholders(6, len(c))+`)`, args...)
					if err != nil {
						return fmt.Errorf("update flags: %w", err)
					}
					if n, err := res.RowsAffected(); err != nil || n != int64(len(c)) {
						return fmt.Errorf("update flags: changed %d of %d messages (%v)", n, len(c), err)
					}
				}
			}
			for i := range rows {
				if isChanged[i] {
					rows[i].ModSeq = modseq
				}
			}
		}
		for i := range rows {
			out = append(out, rows[i].Message)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// lockMailboxes locks the given mailboxes in ascending id order (the lock
// order every transaction follows).
func (s *sqlStore) lockMailboxes(ctx context.Context, w *wtx, userID int64, ids ...int64) error {
	ids = slices.Clone(ids)
	slices.Sort(ids)
	for _, id := range slices.Compact(ids) {
		if _, err := s.lockMailbox(ctx, w, userID, id); err != nil {
			return err
		}
	}
	return nil
}

// CopyMessages copies messages (with their flags and internal dates) to
// another mailbox of the same user (RFC 9051 §6.4.7). The bytes are shared,
// but each copy counts against the quota.
func (s *sqlStore) CopyMessages(ctx context.Context, userID, srcMailboxID int64, uids []uint32, dstMailboxID int64) (srcUIDs, dstUIDs []uint32, err error) {
	err = s.write(ctx, func(w *wtx) error {
		srcUIDs, dstUIDs = nil, nil
		quota, used, err := s.lockUser(ctx, w, userID)
		if err != nil {
			return err
		}
		if err := s.lockMailboxes(ctx, w, userID, srcMailboxID, dstMailboxID); err != nil {
			return err
		}
		rows, err := selectMessages(ctx, w, userID, srcMailboxID, uids, false)
		if err != nil || len(rows) == 0 {
			return err
		}
		var total int64
		for _, m := range rows {
			total += m.Size
		}
		if err := reserveQuota(ctx, w, userID, quota, used, total); err != nil {
			return err
		}
		first, modseq, err := allocUIDs(ctx, w, userID, dstMailboxID, len(rows))
		if err != nil {
			return err
		}
		for i, m := range rows {
			srcUIDs, dstUIDs = append(srcUIDs, m.UID), append(dstUIDs, first+uint32(i))
		}
		if err := execMapped(ctx, w, rows, first, func(values string) string {
			return `WITH v (id, uid) AS (VALUES ` + values + `)
				INSERT INTO messages (user_id, mailbox_id, uid, body_id, flags, seen, deleted, internal_date, size, message_id, modseq)
				SELECT m.user_id, $1, v.uid, m.body_id, m.flags, m.seen, m.deleted, m.internal_date, m.size, m.message_id, $2
				FROM messages m JOIN v ON v.id = m.id WHERE m.user_id = $3`
		}, []any{dstMailboxID, u64(modseq), userID}); err != nil {
			return fmt.Errorf("copy messages: %w", err)
		}
		for _, u := range dstUIDs {
			w.emit(Change{UserID: userID, MailboxID: dstMailboxID, Kind: ChangeNew, UID: u})
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return srcUIDs, dstUIDs, nil
}

// MoveMessages moves messages atomically (RFC 6851): they get new UIDs in
// the destination and are expunged from the source in one transaction.
func (s *sqlStore) MoveMessages(ctx context.Context, userID, srcMailboxID int64, uids []uint32, dstMailboxID int64) (srcUIDs, dstUIDs []uint32, err error) {
	err = s.write(ctx, func(w *wtx) error {
		srcUIDs, dstUIDs = nil, nil
		if err := s.lockMailboxes(ctx, w, userID, srcMailboxID, dstMailboxID); err != nil {
			return err
		}
		rows, err := selectMessages(ctx, w, userID, srcMailboxID, uids, false)
		if err != nil || len(rows) == 0 {
			return err
		}
		first, modseq, err := allocUIDs(ctx, w, userID, dstMailboxID, len(rows))
		if err != nil {
			return err
		}
		if srcMailboxID != dstMailboxID {
			// The expunge in the source is a change too (RFC 7162 §3.2.10).
			if _, err := bumpModSeq(ctx, w, userID, srcMailboxID); err != nil {
				return err
			}
		}
		for i, m := range rows {
			srcUIDs, dstUIDs = append(srcUIDs, m.UID), append(dstUIDs, first+uint32(i))
		}
		if err := execMapped(ctx, w, rows, first, func(values string) string {
			return `WITH v (id, uid) AS (VALUES ` + values + `)
				UPDATE messages SET mailbox_id = $1, modseq = $2, uid = (SELECT v.uid FROM v WHERE v.id = messages.id)
				WHERE user_id = $3 AND id IN (SELECT id FROM v)`
		}, []any{dstMailboxID, u64(modseq), userID}); err != nil {
			return fmt.Errorf("move messages: %w", err)
		}
		for _, u := range srcUIDs {
			w.emit(Change{UserID: userID, MailboxID: srcMailboxID, Kind: ChangeExpunge, UID: u})
		}
		for _, u := range dstUIDs {
			w.emit(Change{UserID: userID, MailboxID: dstMailboxID, Kind: ChangeNew, UID: u})
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return srcUIDs, dstUIDs, nil
}

// Expunge removes messages flagged \Deleted: all of them when uids is nil,
// else those among uids (UID EXPUNGE, RFC 9051 §6.4.9). It returns the UIDs
// removed, ascending.
func (s *sqlStore) Expunge(ctx context.Context, userID, mailboxID int64, uids []uint32) ([]uint32, error) {
	var removed []uint32
	err := s.write(ctx, func(w *wtx) error {
		removed = nil
		if _, _, err := s.lockUser(ctx, w, userID); err != nil {
			return err
		}
		if _, err := s.lockMailbox(ctx, w, userID, mailboxID); err != nil {
			return err
		}
		rows, err := selectMessages(ctx, w, userID, mailboxID, uids, true)
		if err != nil || len(rows) == 0 {
			return err
		}
		if _, err := bumpModSeq(ctx, w, userID, mailboxID); err != nil {
			return err
		}
		var freed int64
		var bodies []int64
		for _, c := range chunks(rows) {
			args := []any{userID}
			for _, m := range c {
				args = append(args, m.ID)
				freed += m.Size
				bodies = append(bodies, m.bodyID)
			}
			res, err := w.ExecContext(ctx, `DELETE FROM messages WHERE user_id = $1 AND id IN (`+placeholders(2, len(c))+`)`, args...)
			if err != nil {
				return fmt.Errorf("expunge: %w", err)
			}
			if n, err := res.RowsAffected(); err != nil || n != int64(len(c)) {
				return fmt.Errorf("expunge: deleted %d of %d messages (%v)", n, len(c), err)
			}
		}
		if err := s.releaseBodies(ctx, w, userID, bodies, freed); err != nil {
			return err
		}
		for _, m := range rows {
			removed = append(removed, m.UID)
			w.emit(Change{UserID: userID, MailboxID: mailboxID, Kind: ChangeExpunge, UID: m.UID})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return removed, nil
}

// execMapped runs a statement per chunk of rows with a VALUES list mapping
// each row's id to its new UID (first, first+1, … in row order). query gets
// the VALUES text; its own parameters are $1…$len(args), the list's follow.
// Every row must be affected, else the transaction is refused.
func execMapped(ctx context.Context, w *wtx, rows []msgRow, first uint32, query func(values string) string, args []any) error {
	uid := int64(first)
	for _, c := range chunks(rows) {
		var values strings.Builder
		a := slices.Clone(args)
		for i, m := range c {
			if i > 0 {
				values.WriteString(", ")
			}
			// Typed, so PostgreSQL does not take the parameters for text.
			fmt.Fprintf(&values, "(CAST($%d AS BIGINT), CAST($%d AS BIGINT))", len(a)+1, len(a)+2)
			a = append(a, m.ID, uid)
			uid++
		}
		res, err := w.ExecContext(ctx, query(values.String()), a...)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n != int64(len(c)) {
			return fmt.Errorf("changed %d of %d messages (%v)", n, len(c), err)
		}
	}
	return nil
}

// deleteMessages runs a DELETE … RETURNING body_id, size and sums up.
func deleteMessages(ctx context.Context, w *wtx, query string, args ...any) (freed int64, bodies []int64, err error) {
	rows, err := w.QueryContext(ctx, query, args...)
	if err != nil {
		return 0, nil, fmt.Errorf("delete messages: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var body, size int64
		if err := rows.Scan(&body, &size); err != nil {
			return 0, nil, fmt.Errorf("delete messages: %w", err)
		}
		freed += size
		bodies = append(bodies, body)
	}
	if err := rows.Err(); err != nil {
		return 0, nil, fmt.Errorf("delete messages: %w", err)
	}
	return freed, bodies, nil
}

// releaseBodies deletes the bodies no message refers to any more and gives
// the freed bytes back to the user's quota. The caller holds the user's lock.
func (s *sqlStore) releaseBodies(ctx context.Context, w *wtx, userID int64, bodies []int64, freed int64) error {
	slices.Sort(bodies)
	bodies = slices.Compact(bodies)
	for _, c := range chunks(bodies) {
		args := []any{userID}
		for _, id := range c {
			args = append(args, id)
		}
		if _, err := w.ExecContext(ctx, `DELETE FROM bodies WHERE user_id = $1 AND id IN (`+placeholders(2, len(c))+`)
			AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.body_id = bodies.id)`, args...); err != nil {
			return fmt.Errorf("release message bodies: %w", err)
		}
	}
	if freed > 0 {
		if _, err := w.ExecContext(ctx, `UPDATE users SET used_bytes = CASE WHEN used_bytes > $1 THEN used_bytes - $1 ELSE 0 END
			WHERE id = $2`, freed, userID); err != nil {
			return fmt.Errorf("release quota: %w", err)
		}
	}
	return nil
}

func (s *sqlStore) FindByMessageID(ctx context.Context, userID int64, specialUse, messageID string) ([]Message, error) {
	id := cleanMessageID(messageID)
	if id == "" {
		return nil, nil
	}
	rows, err := queryMessages(ctx, s.rdb, `SELECT m.id, m.mailbox_id, m.uid, m.flags, m.internal_date, m.size, m.message_id,
			m.modseq, m.body_id
		FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id AND b.user_id = m.user_id
		WHERE m.user_id = $1 AND m.message_id = $2 AND ($3 = '' OR b.special_use = $3)
		ORDER BY m.id`, userID, id, specialUse)
	if err != nil {
		return nil, err
	}
	out := make([]Message, len(rows))
	for i := range rows {
		out[i] = rows[i].Message
	}
	return out, nil
}
