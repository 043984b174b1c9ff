package mailmap

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"
)

const outboxCols = `id, user_id, from_address, to_address, kind, subject, body, encoding, extra, message_id, state,
	attempts, next_attempt, ttl, ack_data, inv_hash, last_error, pow_duration, created_at, sent_at, acked_at,
	notify, ret, env_id, orig_rcpt, delay_reported, reported, original`

func scanOutbox(row interface{ Scan(...any) error }) (OutboxItem, error) {
	var it OutboxItem
	var kind, state string
	var subject, body []byte
	var encoding, attempts, next, ttl, pow, created, notify int64
	var sent, acked sql.NullInt64
	if err := row.Scan(&it.ID, &it.UserID, &it.FromAddress, &it.ToAddress, &kind, &subject, &body, &encoding, &it.Extra,
		&it.MessageID, &state, &attempts, &next, &ttl, &it.AckData, &it.InvHash, &it.LastError, &pow, &created,
		&sent, &acked, &notify, &it.Ret, &it.EnvID, &it.OrigRcpt, &it.DelayReported, &it.Reported, &it.Original); err != nil {
		return OutboxItem{}, err
	}
	it.Kind, it.State = OutboxKind(kind), OutboxState(state)
	it.Subject, it.Body = string(subject), string(body)
	it.Encoding, it.Attempts, it.Notify = fromU64(encoding), int(attempts), int(notify)
	it.NextAttempt, it.CreatedAt = fromMicros(next), fromMicros(created)
	it.TTL, it.PoWDuration = time.Duration(ttl), time.Duration(pow)
	it.SentAt, it.AckedAt = fromNullMicros(sent), fromNullMicros(acked)
	return it, nil
}

// cleanText makes text from outside (error texts, DSN parameters) storable:
// PostgreSQL TEXT refuses NUL and invalid UTF-8.
func cleanText(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
}

func validOutbox(it *OutboxItem) error {
	switch it.Kind {
	case OutboxMsg, OutboxChan, OutboxBroadcast:
	default:
		return invalid("unknown outbox kind")
	}
	switch it.State {
	case OutboxQueued, OutboxAwaitingPubkey, OutboxDoingPoW, OutboxSent, OutboxAcked, OutboxFailed:
	default:
		return invalid("unknown outbox state")
	}
	if it.FromAddress == "" || it.ToAddress == "" || !validText(it.FromAddress, 128) || !validText(it.ToAddress, 128) {
		return invalid("outbox addresses")
	}
	it.MessageID, it.LastError = cleanText(it.MessageID), cleanText(it.LastError)
	it.Ret, it.EnvID, it.OrigRcpt = cleanText(it.Ret), cleanText(it.EnvID), cleanText(it.OrigRcpt)
	return nil
}

// outboxArgs are the values of every column but id, user_id and
// created_at, in the order of outboxSet.
func outboxArgs(it *OutboxItem) []any {
	return []any{it.FromAddress, it.ToAddress, string(it.Kind), []byte(it.Subject), []byte(it.Body), u64(it.Encoding),
		it.Extra, it.MessageID, string(it.State), int64(it.Attempts), toMicros(it.NextAttempt), int64(it.TTL),
		it.AckData, it.InvHash, it.LastError, int64(it.PoWDuration), toNullMicros(it.SentAt), toNullMicros(it.AckedAt),
		int64(it.Notify), it.Ret, it.EnvID, it.OrigRcpt, it.DelayReported, it.Reported, it.Original}
}

// EnqueueOutbox stores the rows in one transaction. An empty State means
// queued; a zero CreatedAt means now.
func (s *sqlStore) EnqueueOutbox(ctx context.Context, items []OutboxItem) ([]OutboxItem, error) {
	out := slices.Clone(items)
	now := s.now()
	for i := range out {
		it := &out[i]
		if it.State == "" {
			it.State = OutboxQueued
		}
		if it.CreatedAt.IsZero() {
			it.CreatedAt = now
		}
		if err := validOutbox(it); err != nil {
			return nil, err
		}
		it.CreatedAt, it.NextAttempt = stored(it.CreatedAt), stored(it.NextAttempt)
		it.SentAt, it.AckedAt = stored(it.SentAt), stored(it.AckedAt)
	}
	err := s.write(ctx, func(w *wtx) error {
		stmt, err := w.PrepareContext(ctx, `INSERT INTO outbox (user_id, created_at, from_address, to_address, kind, subject,
				body, encoding, extra, message_id, state, attempts, next_attempt, ttl, ack_data, inv_hash, last_error,
				pow_duration, sent_at, acked_at, notify, ret, env_id, orig_rcpt, delay_reported, reported, original)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22,
				$23, $24, $25, $26, $27)
			RETURNING id`)
		if err != nil {
			return fmt.Errorf("enqueue outbox: %w", err)
		}
		defer stmt.Close()
		for i := range out {
			it := &out[i]
			args := append([]any{it.UserID, toMicros(it.CreatedAt)}, outboxArgs(it)...)
			if err := stmt.QueryRowContext(ctx, args...).Scan(&it.ID); err != nil {
				if isForeignKeyViolation(err) {
					return ErrNotFound
				}
				return fmt.Errorf("enqueue outbox: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ClaimOutbox takes due rows for this worker. On PostgreSQL rows another
// transaction is claiming are skipped (FOR UPDATE SKIP LOCKED), so workers
// in several processes never take the same row; on SQLite the immediate
// write transaction makes the claim exclusive.
func (s *sqlStore) ClaimOutbox(ctx context.Context, states []OutboxState, now time.Time, lease time.Duration, limit int) ([]OutboxItem, error) {
	if len(states) == 0 || limit <= 0 {
		return nil, nil
	}
	args := []any{toMicros(now.Add(lease)), toMicros(now), int64(limit)}
	for _, st := range states {
		args = append(args, string(st))
	}
	query := `UPDATE outbox SET next_attempt = $1 WHERE id IN (
		SELECT id FROM outbox WHERE state IN (` + placeholders(4, len(states)) + `) AND next_attempt <= $2
		ORDER BY next_attempt, id LIMIT $3` + s.d.skipLocked + `)
		RETURNING ` + outboxCols
	var out []OutboxItem
	err := s.write(ctx, func(w *wtx) error {
		out = nil
		rows, err := w.QueryContext(ctx, query, args...)
		if err != nil {
			return fmt.Errorf("claim outbox: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			it, err := scanOutbox(rows)
			if err != nil {
				return fmt.Errorf("claim outbox: %w", err)
			}
			out = append(out, it)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("claim outbox: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b OutboxItem) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// UpdateOutbox writes every field of the row but ID, UserID and CreatedAt.
func (s *sqlStore) UpdateOutbox(ctx context.Context, item OutboxItem) error {
	if err := validOutbox(&item); err != nil {
		return err
	}
	args := append(outboxArgs(&item), item.ID, item.UserID)
	res, err := s.db.ExecContext(ctx, `UPDATE outbox SET from_address = $1, to_address = $2, kind = $3, subject = $4,
			body = $5, encoding = $6, extra = $7, message_id = $8, state = $9, attempts = $10, next_attempt = $11,
			ttl = $12, ack_data = $13, inv_hash = $14, last_error = $15, pow_duration = $16, sent_at = $17,
			acked_at = $18, notify = $19, ret = $20, env_id = $21, orig_rcpt = $22, delay_reported = $23,
			reported = $24, original = $25
		WHERE id = $26 AND user_id = $27`, args...)
	return rowsAffected("update outbox", res, err)
}

func (s *sqlStore) OutboxItem(ctx context.Context, id int64) (OutboxItem, error) {
	it, err := scanOutbox(s.rdb.QueryRowContext(ctx, `SELECT `+outboxCols+` FROM outbox WHERE id = $1`, id))
	if err != nil {
		return OutboxItem{}, notFound("read outbox", err)
	}
	return it, nil
}

func (s *sqlStore) OutboxByAckData(ctx context.Context, ackData []byte) (OutboxItem, error) {
	if len(ackData) == 0 {
		return OutboxItem{}, ErrNotFound
	}
	it, err := scanOutbox(s.rdb.QueryRowContext(ctx,
		`SELECT `+outboxCols+` FROM outbox WHERE ack_data = $1 ORDER BY id LIMIT 1`, ackData))
	if err != nil {
		return OutboxItem{}, notFound("read outbox", err)
	}
	return it, nil
}

func (s *sqlStore) OutboxCounts(ctx context.Context) (map[OutboxState]int, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT state, COUNT(*) FROM outbox GROUP BY state`)
	if err != nil {
		return nil, fmt.Errorf("count outbox: %w", err)
	}
	defer rows.Close()
	out := map[OutboxState]int{}
	for rows.Next() {
		var st string
		var n int64
		if err := rows.Scan(&st, &n); err != nil {
			return nil, fmt.Errorf("count outbox: %w", err)
		}
		out[OutboxState(st)] = int(n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count outbox: %w", err)
	}
	return out, nil
}

func (s *sqlStore) UserOutbox(ctx context.Context, userID int64) ([]OutboxItem, error) {
	return s.listOutbox(ctx, `SELECT `+outboxCols+` FROM outbox WHERE user_id = $1 ORDER BY id`, userID)
}

func (s *sqlStore) OutboxTo(ctx context.Context, userID int64, from, to string, limit int) ([]OutboxItem, error) {
	return s.listOutbox(ctx, `SELECT `+outboxCols+` FROM outbox WHERE user_id = $1 AND from_address = $2 AND to_address = $3
		ORDER BY id DESC LIMIT $4`, userID, from, to, limit)
}

func (s *sqlStore) listOutbox(ctx context.Context, query string, args ...any) ([]OutboxItem, error) {
	rows, err := s.rdb.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list outbox: %w", err)
	}
	defer rows.Close()
	var out []OutboxItem
	for rows.Next() {
		it, err := scanOutbox(rows)
		if err != nil {
			return nil, fmt.Errorf("list outbox: %w", err)
		}
		out = append(out, it)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list outbox: %w", err)
	}
	return out, nil
}
