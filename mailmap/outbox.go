package mailmap

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

const outboxCols = `id, user_id, from_address, to_address, kind, subject, body, encoding, extra, message_id, state,
	attempts, next_attempt, ttl, ack_data, inv_hash, last_error, pow_duration, created_at, sent_at, acked_at,
	notify, ret, env_id, orig_rcpt, delay_reported, reported, original, lease_owner, pow_job, api_ref, trashed`

func scanOutbox(row interface{ Scan(...any) error }) (OutboxItem, error) {
	var it OutboxItem
	var kind, state string
	var subject, body []byte
	var encoding, attempts, next, ttl, pow, created, notify int64
	var sent, acked, job sql.NullInt64
	if err := row.Scan(&it.ID, &it.UserID, &it.FromAddress, &it.ToAddress, &kind, &subject, &body, &encoding, &it.Extra,
		&it.MessageID, &state, &attempts, &next, &ttl, &it.AckData, &it.InvHash, &it.LastError, &pow, &created,
		&sent, &acked, &notify, &it.Ret, &it.EnvID, &it.OrigRcpt, &it.DelayReported, &it.Reported, &it.Original,
		&it.LeaseOwner, &job, &it.APIRef, &it.Trashed); err != nil {
		return OutboxItem{}, err
	}
	it.Kind, it.State = OutboxKind(kind), OutboxState(state)
	it.Subject, it.Body = string(subject), string(body)
	it.Encoding, it.Attempts, it.Notify = fromU64(encoding), int(attempts), int(notify)
	it.NextAttempt, it.CreatedAt = fromMicros(next), fromMicros(created)
	it.TTL, it.PoWDuration = time.Duration(ttl), time.Duration(pow)
	it.SentAt, it.AckedAt = fromNullMicros(sent), fromNullMicros(acked)
	it.PoWJob = job.Int64
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
	return s.enqueueOutbox(ctx, items, nil)
}

// EnqueueOutboxOnce enqueues the rows as EnqueueOutbox does, at most once
// per (userID, key): the key is recorded in the same transaction, and when
// it already is nothing is enqueued and duplicate is reported.
func (s *sqlStore) EnqueueOutboxOnce(ctx context.Context, userID int64, key []byte, items []OutboxItem) ([]OutboxItem, bool, error) {
	if len(key) == 0 || len(key) > maxDeliveryKey {
		return nil, false, invalid("outbox key")
	}
	for _, it := range items {
		if it.UserID != userID {
			return nil, false, invalid("outbox row of another user")
		}
	}
	var dup bool
	out, err := s.enqueueOutbox(ctx, items, func(w *wtx) (bool, error) {
		dup = false
		if _, _, err := s.lockUser(ctx, w, userID); err != nil {
			return false, err
		}
		res, err := w.ExecContext(ctx, `INSERT INTO outbox_once (user_id, key, at) VALUES ($1, $2, $3)
			ON CONFLICT (user_id, key) DO NOTHING`, userID, key, toMicros(s.now()))
		if err != nil {
			return false, fmt.Errorf("record outbox key: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return false, fmt.Errorf("record outbox key: %w", err)
		}
		dup = n == 0
		return dup, nil
	})
	if err != nil || dup {
		return nil, dup, err
	}
	return out, false, nil
}

// enqueueOutbox stores the rows; once, when given, runs first in the
// transaction and stops it, enqueueing nothing, when it reports true.
func (s *sqlStore) enqueueOutbox(ctx context.Context, items []OutboxItem, once func(w *wtx) (bool, error)) ([]OutboxItem, error) {
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
		if once != nil {
			if dup, err := once(w); err != nil || dup {
				return err
			}
		}
		if err := s.checkSendRate(ctx, w, out, now); err != nil {
			return err
		}
		stmt, err := w.PrepareContext(ctx, `INSERT INTO outbox (user_id, created_at, from_address, to_address, kind, subject,
				body, encoding, extra, message_id, state, attempts, next_attempt, ttl, ack_data, inv_hash, last_error,
				pow_duration, sent_at, acked_at, notify, ret, env_id, orig_rcpt, delay_reported, reported, original, api_ref)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22,
				$23, $24, $25, $26, $27, $28)
			RETURNING id`)
		if err != nil {
			return fmt.Errorf("enqueue outbox: %w", err)
		}
		defer stmt.Close()
		for i := range out {
			it := &out[i]
			args := append([]any{it.UserID, toMicros(it.CreatedAt)}, outboxArgs(it)...)
			args = append(args, it.APIRef)
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

// sendRateWindow is the window a user's sending rate counts rows in.
const sendRateWindow = time.Hour

// checkSendRate refuses rows that would take a user over their sending
// rate (ErrRateLimited): the rows they enqueued in the last hour and these
// together. The user's row lock makes concurrent submissions count in turn.
func (s *sqlStore) checkSendRate(ctx context.Context, w *wtx, items []OutboxItem, now time.Time) error {
	per := map[int64]int{}
	for _, it := range items {
		per[it.UserID]++
	}
	users := slices.Sorted(maps.Keys(per)) // lock order: user rows by id
	for _, id := range users {
		var quota, used, rate int64
		if err := w.QueryRowContext(ctx, s.d.lockUser, id).Scan(&quota, &used); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return ErrNotFound
			}
			return fmt.Errorf("enqueue outbox: %w", err)
		}
		if err := w.QueryRowContext(ctx, `SELECT send_rate FROM users WHERE id = $1`, id).Scan(&rate); err != nil {
			return fmt.Errorf("enqueue outbox: %w", err)
		}
		if rate <= 0 {
			continue
		}
		var recent int64
		if err := w.QueryRowContext(ctx, `SELECT COUNT(*) FROM outbox WHERE user_id = $1 AND created_at > $2`,
			id, toMicros(now.Add(-sendRateWindow))).Scan(&recent); err != nil {
			return fmt.Errorf("enqueue outbox: %w", err)
		}
		if recent+int64(per[id]) > rate {
			return fmt.Errorf("%w: at most %d messages an hour, %d sent in the last hour", ErrRateLimited, rate, recent)
		}
	}
	return nil
}

// ClaimOutbox takes due rows for this worker and leases them to owner. On
// PostgreSQL rows another transaction is claiming are skipped (FOR UPDATE
// SKIP LOCKED), so workers in several processes never take the same row; on
// SQLite the immediate write transaction makes the claim exclusive. Rows of
// disabled accounts wait, and a doing_pow row is due only when its proof of
// work job is gone or is a solved embedded ack (the scheduler moves it
// otherwise).
func (s *sqlStore) ClaimOutbox(ctx context.Context, states []OutboxState, now time.Time, lease time.Duration, limit int, owner string) ([]OutboxItem, error) {
	if len(states) == 0 || limit <= 0 {
		return nil, nil
	}
	if owner == "" {
		return nil, invalid("claim without an owner")
	}
	args := []any{toMicros(now.Add(lease)), toMicros(now), int64(limit), owner}
	for _, st := range states {
		args = append(args, string(st))
	}
	query := `UPDATE outbox SET next_attempt = $1, lease_owner = $4 WHERE id IN (
		SELECT o.id FROM outbox o WHERE o.state IN (` + placeholders(5, len(states)) + `) AND o.next_attempt <= $2
			AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = o.user_id AND u.disabled)
			AND (o.state <> 'doing_pow' OR NOT EXISTS (SELECT 1 FROM pow_jobs j WHERE j.outbox_id = o.id
				AND (j.publish OR j.state <> 'solved')))
		ORDER BY o.next_attempt, o.id LIMIT $3` + s.d.skipLocked + `)
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

// TransitionOutbox applies one checked transition: it writes the step's
// columns only when the row is in one of step.From (and, when given, leased
// by step.Owner and waiting for step.Job), else it returns ErrConflict and
// writes nothing. A report in the step is appended to the sender's INBOX in
// the same transaction, once: the flag it sets is checked first.
func (s *sqlStore) TransitionOutbox(ctx context.Context, step OutboxStep) (OutboxItem, error) {
	if len(step.From) == 0 || step.To == "" {
		return OutboxItem{}, invalid("outbox transition without states")
	}
	for _, st := range append(slices.Clone(step.From), step.To) {
		if err := validOutbox(&OutboxItem{Kind: OutboxMsg, State: st, FromAddress: "x", ToAddress: "x"}); err != nil {
			return OutboxItem{}, err
		}
	}
	set := []string{"state = $1"}
	args := []any{string(step.To)}
	add := func(col string, v any) {
		args = append(args, v)
		set = append(set, fmt.Sprintf("%s = $%d", col, len(args)))
	}
	if step.Attempts != nil {
		add("attempts", int64(*step.Attempts))
	}
	if step.NextAttempt != nil {
		add("next_attempt", toMicros(stored(*step.NextAttempt)))
	}
	if step.TTL != nil {
		add("ttl", int64(*step.TTL))
	}
	if step.AckData != nil {
		var v any
		if len(*step.AckData) > 0 {
			v = *step.AckData
		}
		add("ack_data", v)
	}
	if step.InvHash != nil {
		add("inv_hash", step.InvHash)
	}
	if step.LastError != nil {
		add("last_error", cleanText(*step.LastError))
	}
	if step.AddPoWDuration > 0 {
		args = append(args, int64(step.AddPoWDuration))
		set = append(set, fmt.Sprintf("pow_duration = pow_duration + $%d", len(args)))
	}
	if step.SentAt != nil {
		add("sent_at", toNullMicros(stored(*step.SentAt)))
	}
	if step.AckedAt != nil {
		add("acked_at", toNullMicros(stored(*step.AckedAt)))
	}
	if !step.KeepLease {
		set = append(set, "lease_owner = ''")
	}
	if step.Job == nil && !step.KeepJob {
		set = append(set, "pow_job = NULL")
	}
	where := []string{}
	args = append(args, step.ID)
	where = append(where, fmt.Sprintf("id = $%d", len(args)))
	var states []string
	for _, st := range step.From {
		args = append(args, string(st))
		states = append(states, fmt.Sprintf("$%d", len(args)))
	}
	where = append(where, "state IN ("+strings.Join(states, ", ")+")")
	if step.Owner != "" {
		args = append(args, step.Owner)
		where = append(where, fmt.Sprintf("lease_owner = $%d", len(args)))
	}
	if step.WaitingJob != 0 {
		args = append(args, step.WaitingJob)
		where = append(where, fmt.Sprintf("pow_job = $%d", len(args)))
	}
	if step.AckDataIs != nil {
		args = append(args, step.AckDataIs)
		where = append(where, fmt.Sprintf("ack_data = $%d", len(args)))
	}
	query := `UPDATE outbox SET ` + strings.Join(set, ", ") + ` WHERE ` + strings.Join(where, " AND ") + ` RETURNING ` + outboxCols
	var out OutboxItem
	err := s.write(ctx, func(w *wtx) error {
		it, err := scanOutbox(w.QueryRowContext(ctx, query, args...))
		if errors.Is(err, sql.ErrNoRows) {
			return ErrConflict
		}
		if err != nil {
			return fmt.Errorf("outbox transition: %w", err)
		}
		// The row's previous job, if any, is replaced or dropped.
		if !step.KeepJob {
			if _, err := w.ExecContext(ctx, `DELETE FROM pow_jobs WHERE outbox_id = $1`, it.ID); err != nil {
				return fmt.Errorf("outbox transition: drop pow job: %w", err)
			}
		}
		if step.Job != nil {
			job := *step.Job
			job.UserID, job.OutboxID = it.UserID, it.ID
			if job, err = s.insertPoWJob(ctx, w, job); err != nil {
				return err
			}
			if _, err := w.ExecContext(ctx, `UPDATE outbox SET pow_job = $1 WHERE id = $2`, job.ID, it.ID); err != nil {
				return fmt.Errorf("outbox transition: %w", err)
			}
			it.PoWJob = job.ID
		}
		if step.Report != nil {
			col := "reported"
			if step.Report.Delay {
				col = "delay_reported"
			}
			res, err := w.ExecContext(ctx, `UPDATE outbox SET `+col+` = TRUE WHERE id = $1 AND NOT `+col, it.ID)
			if err != nil {
				return fmt.Errorf("outbox transition: report flag: %w", err)
			}
			if n, _ := res.RowsAffected(); n == 1 {
				if step.Report.Delay {
					it.DelayReported = true
				} else {
					it.Reported = true
				}
				if len(step.Report.Raw) > 0 {
					if err := s.appendReport(ctx, w, it.UserID, step.Report.Raw); err != nil {
						return err
					}
				}
			}
		}
		out = it
		return nil
	})
	if err != nil {
		return OutboxItem{}, err
	}
	return out, nil
}

// appendReport files a delivery status report in the user's INBOX. A full
// mailbox drops the report (the flag stays set: it is not retried).
func (s *sqlStore) appendReport(ctx context.Context, w *wtx, userID int64, raw []byte) error {
	var inbox int64
	err := w.QueryRowContext(ctx, `SELECT id FROM mailboxes WHERE user_id = $1 AND name = 'INBOX'`, userID).Scan(&inbox)
	if errors.Is(err, sql.ErrNoRows) {
		return nil // no INBOX (account being deleted): nobody to tell
	}
	if err != nil {
		return fmt.Errorf("find INBOX for report: %w", err)
	}
	// A savepoint keeps the transition when only the report cannot be stored.
	mark := len(w.changes)
	if _, err := w.ExecContext(ctx, `SAVEPOINT report`); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if _, err := s.appendTx(ctx, w, userID, inbox, raw, nil, s.now()); err != nil {
		if !errors.Is(err, ErrOverQuota) {
			return fmt.Errorf("deliver report: %w", err)
		}
		if _, err := w.ExecContext(ctx, `ROLLBACK TO SAVEPOINT report`); err != nil {
			return fmt.Errorf("report: %w", err)
		}
		w.changes = w.changes[:mark]
		s.log.Warn("report dropped: mailbox over quota", "user", userID)
		return nil
	}
	_, err = w.ExecContext(ctx, `RELEASE SAVEPOINT report`)
	return err
}

// ReleaseOutbox gives back the rows leased by owner (a graceful shutdown),
// so that any worker, this one after a restart included, takes them at once.
func (s *sqlStore) ReleaseOutbox(ctx context.Context, owner string, now time.Time) error {
	if owner == "" {
		return nil
	}
	_, err := s.db.ExecContext(ctx, `UPDATE outbox SET lease_owner = '', next_attempt = $1
		WHERE lease_owner = $2 AND state NOT IN ('acked', 'failed') AND next_attempt > $1`, toMicros(now), owner)
	if err != nil {
		return fmt.Errorf("release outbox: %w", err)
	}
	return nil
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

// TrashOutbox marks the user's rows trashed; other users' ids are ignored.
func (s *sqlStore) TrashOutbox(ctx context.Context, userID int64, ids []int64) (int64, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	args := []any{userID}
	for _, id := range ids {
		args = append(args, id)
	}
	res, err := s.db.ExecContext(ctx, `UPDATE outbox SET trashed = TRUE WHERE user_id = $1 AND NOT trashed AND id IN (`+
		placeholders(2, len(ids))+`)`, args...)
	if err != nil {
		return 0, fmt.Errorf("trash outbox: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("trash outbox: %w", err)
	}
	return n, nil
}
