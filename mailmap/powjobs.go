package mailmap

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

const powJobCols = `id, kind, priority, user_id, user_seq, outbox_id, dedupe_key, publish, headless, target, expected,
	state, lease_owner, lease_until, nonce, trials, created_at, solved_at`

func scanPoWJob(row interface{ Scan(...any) error }) (PoWJob, error) {
	var j PoWJob
	var user, outbox, nonce, solved sql.NullInt64
	var dedupe sql.NullString
	var state string
	var target, expected, lease, trials, created int64
	var prio int64
	if err := row.Scan(&j.ID, &j.Kind, &prio, &user, &j.UserSeq, &outbox, &dedupe, &j.Publish, &j.Headless, &target,
		&expected, &state, &j.LeaseOwner, &lease, &nonce, &trials, &created, &solved); err != nil {
		return PoWJob{}, err
	}
	j.Priority, j.State = int(prio), PoWJobState(state)
	j.UserID, j.OutboxID, j.DedupeKey = user.Int64, outbox.Int64, dedupe.String
	j.Target, j.Expected, j.Nonce, j.Trials = fromU64(target), fromU64(expected), fromU64(nonce.Int64), fromU64(trials)
	j.LeaseUntil, j.CreatedAt, j.SolvedAt = fromMicros(lease), fromMicros(created), fromNullMicros(solved)
	return j, nil
}

func nullID(id int64) any {
	if id == 0 {
		return nil
	}
	return id
}

// insertPoWJob adds a pending job inside w. Its UserSeq puts it behind its
// user's queued jobs but, for a user with none, level with the front of the
// queue, so users take turns.
func (s *sqlStore) insertPoWJob(ctx context.Context, w *wtx, j PoWJob) (PoWJob, error) {
	if j.Kind == "" || len(j.Headless) < 8 || j.Target == 0 {
		return PoWJob{}, invalid("proof-of-work job")
	}
	var dedupe any
	if j.DedupeKey != "" {
		if !validText(j.DedupeKey, 200) {
			return PoWJob{}, invalid("proof-of-work job key")
		}
		dedupe = j.DedupeKey
		existing, err := scanPoWJob(w.QueryRowContext(ctx, powJobByKey, j.DedupeKey))
		if err == nil {
			return existing, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return PoWJob{}, fmt.Errorf("enqueue proof of work: %w", err)
		}
	}
	own := `user_id IS NULL`
	args := []any{}
	if j.UserID != 0 {
		own = `user_id = $1`
		args = append(args, j.UserID)
	}
	if err := w.QueryRowContext(ctx, `SELECT COALESCE((SELECT MAX(user_seq) FROM pow_jobs WHERE `+own+`),
			(SELECT MIN(user_seq) - 1 FROM pow_jobs WHERE state <> 'solved'), 0) + 1`, args...).Scan(&j.UserSeq); err != nil {
		return PoWJob{}, fmt.Errorf("enqueue proof of work: %w", err)
	}
	j.State, j.CreatedAt = PoWPending, stored(s.now())
	j.LeaseOwner, j.LeaseUntil, j.Nonce, j.Trials, j.SolvedAt = "", time.Time{}, 0, 0, time.Time{}
	err := w.QueryRowContext(ctx, `INSERT INTO pow_jobs (kind, priority, user_id, user_seq, outbox_id, dedupe_key, publish,
			headless, target, expected, state, lease_owner, lease_until, trials, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'pending', '', 0, 0, $11) RETURNING id`,
		j.Kind, int64(j.Priority), nullID(j.UserID), j.UserSeq, nullID(j.OutboxID), dedupe, j.Publish, j.Headless,
		u64(j.Target), u64(j.Expected), toMicros(j.CreatedAt)).Scan(&j.ID)
	if err != nil {
		if isForeignKeyViolation(err) {
			return PoWJob{}, ErrNotFound
		}
		return PoWJob{}, fmt.Errorf("enqueue proof of work: %w", err)
	}
	return j, nil
}

func (s *sqlStore) EnqueuePoW(ctx context.Context, j PoWJob) (PoWJob, error) {
	var out PoWJob
	err := s.write(ctx, func(w *wtx) error {
		var err error
		out, err = s.insertPoWJob(ctx, w, j)
		return err
	})
	return out, err
}

func (s *sqlStore) ClaimPoW(ctx context.Context, owner string, now time.Time, lease time.Duration) (PoWJob, bool, error) {
	if owner == "" {
		return PoWJob{}, false, invalid("claim without an owner")
	}
	// Solved jobs whose finishing was interrupted come first: they only
	// need publishing. A solved job that is not published (an embedded
	// ack) is the outbound worker's to continue, not the scheduler's.
	query := `UPDATE pow_jobs SET state = CASE WHEN state = 'solved' THEN 'solved' ELSE 'solving' END,
			lease_owner = $1, lease_until = $2
		WHERE id IN (SELECT j.id FROM pow_jobs j WHERE (j.state = 'pending' OR j.lease_until <= $3)
			AND (j.publish OR j.state <> 'solved')
			AND (j.user_id IS NULL OR NOT EXISTS (SELECT 1 FROM users u WHERE u.id = j.user_id AND u.disabled))
			ORDER BY CASE WHEN j.state = 'solved' THEN 0 ELSE 1 END, j.priority DESC, j.user_seq, j.id
			LIMIT 1` + s.d.skipLocked + `)
		RETURNING ` + powJobCols
	var j PoWJob
	found := false
	err := s.write(ctx, func(w *wtx) error {
		var err error
		j, err = scanPoWJob(w.QueryRowContext(ctx, query, owner, toMicros(now.Add(lease)), toMicros(now)))
		if errors.Is(err, sql.ErrNoRows) {
			found = false
			return nil
		}
		if err != nil {
			return fmt.Errorf("claim proof of work: %w", err)
		}
		found = true
		return nil
	})
	if err != nil {
		return PoWJob{}, false, err
	}
	return j, found, nil
}

func (s *sqlStore) RenewPoW(ctx context.Context, id int64, owner string, until time.Time, trials uint64) error {
	res, err := s.db.ExecContext(ctx, `UPDATE pow_jobs SET lease_until = $1, trials = $2
		WHERE id = $3 AND lease_owner = $4 AND state = 'solving'`, toMicros(until), u64(trials), id, owner)
	return conflictUnlessOne("renew proof of work", res, err)
}

func (s *sqlStore) SolvedPoW(ctx context.Context, id int64, owner string, nonce, trials uint64, now time.Time) error {
	res, err := s.db.ExecContext(ctx, `UPDATE pow_jobs SET state = 'solved', nonce = $1, trials = $2, solved_at = $3
		WHERE id = $4 AND lease_owner = $5 AND state = 'solving'`, u64(nonce), u64(trials), toMicros(now), id, owner)
	return conflictUnlessOne("solved proof of work", res, err)
}

func (s *sqlStore) DeletePoW(ctx context.Context, id int64, owner string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM pow_jobs WHERE id = $1 AND lease_owner = $2`, id, owner)
	return conflictUnlessOne("delete proof of work", res, err)
}

func (s *sqlStore) ReleasePoW(ctx context.Context, owner string) error {
	if owner == "" {
		return nil
	}
	_, err := s.db.ExecContext(ctx, `UPDATE pow_jobs SET lease_owner = '', lease_until = 0,
		state = CASE WHEN state = 'solved' THEN 'solved' ELSE 'pending' END WHERE lease_owner = $1`, owner)
	if err != nil {
		return fmt.Errorf("release proof of work: %w", err)
	}
	return nil
}

func (s *sqlStore) PoWJobs(ctx context.Context) ([]PoWJob, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+powJobCols+` FROM pow_jobs
		ORDER BY CASE WHEN state = 'solved' THEN 0 WHEN state = 'solving' THEN 1 ELSE 2 END, priority DESC, user_seq, id`)
	if err != nil {
		return nil, fmt.Errorf("list proof of work: %w", err)
	}
	defer rows.Close()
	var out []PoWJob
	for rows.Next() {
		j, err := scanPoWJob(rows)
		if err != nil {
			return nil, fmt.Errorf("list proof of work: %w", err)
		}
		out = append(out, j)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list proof of work: %w", err)
	}
	return out, nil
}

func (s *sqlStore) PoWJob(ctx context.Context, id int64) (PoWJob, error) {
	j, err := scanPoWJob(s.rdb.QueryRowContext(ctx, `SELECT `+powJobCols+` FROM pow_jobs WHERE id = $1`, id))
	if err != nil {
		return PoWJob{}, notFound("read proof of work", err)
	}
	return j, nil
}

const powJobByKey = `SELECT ` + powJobCols + ` FROM pow_jobs WHERE dedupe_key = $1`

func (s *sqlStore) PoWJobByKey(ctx context.Context, key string) (PoWJob, error) {
	j, err := scanPoWJob(s.rdb.QueryRowContext(ctx, powJobByKey, key))
	if err != nil {
		return PoWJob{}, notFound("read proof of work", err)
	}
	return j, nil
}

// conflictUnlessOne turns "no row matched the expected state" into
// ErrConflict.
func conflictUnlessOne(op string, res sql.Result, err error) error {
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if n != 1 {
		return ErrConflict
	}
	return nil
}
