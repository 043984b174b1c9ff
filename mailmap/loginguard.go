package mailmap

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// The login guard's state (migration 0005): failed logins counted per
// client address, per account name and per known (account, address) pair.
// Package loginguard decides the policy (how long a failure delays the
// next attempt, how long failures are remembered); the Store keeps the
// counts where every process sharing the database, and the CLI, sees them,
// and makes the reservation of an account atomic.

// GuardKind is what a login-guard entry counts the failures of.
type GuardKind string

const (
	GuardIP   GuardKind = "ip"   // a client address (an IPv6 client by its /64)
	GuardUser GuardKind = "user" // an account name, lower case, existing or not
	GuardPair GuardKind = "pair" // an account and an address it logged in from
)

// GuardEntry is one row of the login guard.
type GuardEntry struct {
	Kind      GuardKind
	Name      string    // GuardUser, GuardPair: the account name as the guard keys it
	IP        string    // GuardIP, GuardPair
	Failures  int       // failures counted since the count was last forgotten
	LastAt    time.Time // the last failure (or when the row was made)
	NextAt    time.Time // no login is admitted before this (zero: none)
	BusyUntil time.Time // GuardUser: a password check holds the account until then
	OKAt      time.Time // GuardPair: the last successful login
}

// GuardAttempt is a login about to be checked.
type GuardAttempt struct {
	IP   string // the key of the client address ("" when there is none: then it is not counted)
	Name string // the key of the account name
	Now  time.Time
	// Hold is how long the account stays reserved for this attempt if its
	// result never arrives (a crash): it bounds the hash wait and the hash.
	Hold time.Duration
	// KnownFor: a success from IP as Name within this long makes IP known
	// for Name (0: no address is known).
	KnownFor time.Duration
}

// GuardVerdict answers LoginGuardAdmit.
type GuardVerdict struct {
	Admitted bool
	// Known: IP logged in as Name within KnownFor. The account's and the
	// address's locks do not apply to it; the pair's own does.
	Known bool
	// Token identifies the reservation; LoginGuardDone needs it.
	Token int64
	// When not admitted: what holds the attempt back (GuardIP, GuardUser or
	// GuardPair), whether that is a check in progress on the account
	// rather than a lock, its failures and when to try again.
	Blocker  GuardKind
	Busy     bool
	Failures int
	Until    time.Time
}

// GuardResult is how an admitted attempt ended.
type GuardResult int

const (
	GuardOK      GuardResult = iota // the password was right
	GuardFailed                     // the password (or the account name) was wrong
	GuardAborted                    // no answer (hashing busy, a store error, the client left): release only
)

// GuardPolicy is what the store needs of the policy to record a failure.
type GuardPolicy struct {
	// Window: a count whose last failure is older than this starts over.
	Window time.Duration
	// Delay returns how long no login is admitted after the n-th failure
	// (n ≥ 1) of an address, an account or a pair.
	Delay func(n int) time.Duration
}

// GuardOutcome reports the counts after LoginGuardDone recorded a failure.
type GuardOutcome struct {
	IPFailures   int
	UserFailures int
	PairFailures int       // when the address was known for the account
	NextAt       time.Time // the account's (or, when known, the pair's) next admission
}

const guardCols = `kind, name, ip, failures, last_at, next_at, busy_until, ok_at`

func scanGuard(row interface{ Scan(...any) error }) (GuardEntry, error) {
	var e GuardEntry
	var kind string
	var last, next, busy, ok int64
	if err := row.Scan(&kind, &e.Name, &e.IP, &e.Failures, &last, &next, &busy, &ok); err != nil {
		return GuardEntry{}, err
	}
	e.Kind = GuardKind(kind)
	e.LastAt = fromMicros(last)
	e.NextAt, e.BusyUntil, e.OKAt = guardTime(next), guardTime(busy), guardTime(ok)
	return e, nil
}

// guardTime reads a time column where 0 means "none".
func guardTime(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return fromMicros(v)
}

func checkGuardKeys(ip, name string) error {
	if !validText(ip, 128) || !validText(name, 512) {
		return invalid("login guard key must be valid UTF-8 without NUL")
	}
	return nil
}

// LoginGuardAdmit decides whether a login may be checked now. Admission
// reserves the account (kind 'user') until Now+Hold or LoginGuardDone, in
// one statement, so concurrent attempts on one account (in any process) are
// admitted one at a time.
func (s *sqlStore) LoginGuardAdmit(ctx context.Context, a GuardAttempt) (GuardVerdict, error) {
	if err := checkGuardKeys(a.IP, a.Name); err != nil {
		return GuardVerdict{}, err
	}
	now := toMicros(a.Now)
	var v GuardVerdict
	if a.IP != "" {
		rows, err := s.rdb.QueryContext(ctx, `SELECT `+guardCols+` FROM login_guard
			WHERE (kind = 'ip' AND name = '' AND ip = $1) OR (kind = 'pair' AND name = $2 AND ip = $1)`, a.IP, a.Name)
		if err != nil {
			return GuardVerdict{}, fmt.Errorf("login guard: %w", err)
		}
		var ipRow, pair *GuardEntry
		for rows.Next() {
			e, err := scanGuard(rows)
			if err != nil {
				rows.Close()
				return GuardVerdict{}, fmt.Errorf("login guard: %w", err)
			}
			if e.Kind == GuardIP {
				ipRow = &e
			} else {
				pair = &e
			}
		}
		if err := rows.Close(); err != nil {
			return GuardVerdict{}, fmt.Errorf("login guard: %w", err)
		}
		if err := rows.Err(); err != nil {
			return GuardVerdict{}, fmt.Errorf("login guard: %w", err)
		}
		v.Known = pair != nil && a.KnownFor > 0 && !pair.OKAt.IsZero() && a.Now.Sub(pair.OKAt) < a.KnownFor
		lock := ipRow
		if v.Known {
			lock = pair
		}
		if lock != nil && lock.NextAt.After(a.Now) {
			v.Blocker, v.Failures, v.Until = lock.Kind, lock.Failures, lock.NextAt
			return v, nil
		}
	}
	token := now + max(a.Hold.Microseconds(), 1)
	err := s.db.QueryRowContext(ctx, `INSERT INTO login_guard (kind, name, ip, failures, last_at, next_at, busy_until)
		VALUES ('user', $1, '', 0, $2, 0, $3)
		ON CONFLICT (kind, name, ip) DO UPDATE SET busy_until = excluded.busy_until
		WHERE login_guard.busy_until <= $2 AND ($4 OR login_guard.next_at <= $2)
		RETURNING busy_until`, a.Name, now, token, v.Known).Scan(&v.Token)
	if err == nil {
		v.Admitted = true
		return v, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return GuardVerdict{}, fmt.Errorf("login guard: %w", err)
	}
	e, err := scanGuard(s.rdb.QueryRowContext(ctx, `SELECT `+guardCols+` FROM login_guard
		WHERE kind = 'user' AND name = $1 AND ip = ''`, a.Name))
	if err != nil {
		// Deleted in between (login-guard clear): the caller asks again.
		if errors.Is(err, sql.ErrNoRows) {
			v.Blocker, v.Busy, v.Until = GuardUser, true, a.Now
			return v, nil
		}
		return GuardVerdict{}, fmt.Errorf("login guard: %w", err)
	}
	v.Blocker, v.Failures, v.Until = GuardUser, e.Failures, e.BusyUntil
	v.Busy = e.BusyUntil.After(a.Now)
	if !v.Known && e.NextAt.After(v.Until) {
		v.Until = e.NextAt
	}
	if !v.Until.After(a.Now) {
		v.Until = a.Now // freed in between: try again at once
	}
	return v, nil
}

// LoginGuardDone records how an admitted attempt ended and releases the
// account. A success makes the address known for the account (and clears
// the pair's failures); it never clears the account's or the address's
// counts. A failure counts against the address, the account and, when the
// address was known, the pair, and pushes their next admission back by
// p.Delay of their new count.
func (s *sqlStore) LoginGuardDone(ctx context.Context, a GuardAttempt, v GuardVerdict, r GuardResult, p GuardPolicy) (GuardOutcome, error) {
	if err := checkGuardKeys(a.IP, a.Name); err != nil {
		return GuardOutcome{}, err
	}
	now := toMicros(a.Now)
	const release = `UPDATE login_guard SET busy_until = 0
		WHERE kind = 'user' AND name = $1 AND ip = '' AND busy_until = $2`
	switch r {
	case GuardAborted:
		_, err := s.db.ExecContext(ctx, release, a.Name, v.Token)
		if err != nil {
			return GuardOutcome{}, fmt.Errorf("login guard: %w", err)
		}
		return GuardOutcome{}, nil
	case GuardOK:
		err := s.write(ctx, func(w *wtx) error {
			if _, err := w.ExecContext(ctx, release, a.Name, v.Token); err != nil {
				return err
			}
			if a.IP == "" {
				return nil
			}
			_, err := w.ExecContext(ctx, `INSERT INTO login_guard (kind, name, ip, failures, last_at, ok_at)
				VALUES ('pair', $1, $2, 0, $3, $3)
				ON CONFLICT (kind, name, ip) DO UPDATE SET failures = 0, next_at = 0, last_at = $3, ok_at = $3`,
				a.Name, a.IP, now)
			return err
		})
		if err != nil {
			return GuardOutcome{}, fmt.Errorf("login guard: %w", err)
		}
		return GuardOutcome{}, nil
	}
	cut := now - p.Window.Microseconds()
	var out GuardOutcome
	err := s.write(ctx, func(w *wtx) error {
		out = GuardOutcome{}
		count := func(kind GuardKind, name, ip string, token int64) (int, int64, error) {
			var n int
			err := w.QueryRowContext(ctx, `INSERT INTO login_guard (kind, name, ip, failures, last_at)
				VALUES ($1, $2, $3, 1, $4)
				ON CONFLICT (kind, name, ip) DO UPDATE SET
					failures = CASE WHEN login_guard.last_at < $5 THEN 1 ELSE login_guard.failures + 1 END,
					last_at = excluded.last_at
				RETURNING failures`, string(kind), name, ip, now, cut).Scan(&n)
			if err != nil {
				return 0, 0, err
			}
			next := now + p.Delay(n).Microseconds()
			_, err = w.ExecContext(ctx, `UPDATE login_guard SET
					next_at = CASE WHEN next_at < $4 THEN $4 ELSE next_at END,
					busy_until = CASE WHEN busy_until = $5 THEN 0 ELSE busy_until END
				WHERE kind = $1 AND name = $2 AND ip = $3`, string(kind), name, ip, next, token)
			return n, next, err
		}
		var next int64
		var err error
		if out.UserFailures, next, err = count(GuardUser, a.Name, "", v.Token); err != nil {
			return err
		}
		if a.IP == "" {
			out.NextAt = fromMicros(next)
			return nil
		}
		if out.IPFailures, _, err = count(GuardIP, "", a.IP, 0); err != nil {
			return err
		}
		if v.Known {
			// The pair's own lock is what the owner's address waits for.
			if out.PairFailures, next, err = count(GuardPair, a.Name, a.IP, 0); err != nil {
				return err
			}
		}
		out.NextAt = fromMicros(next)
		return nil
	})
	if err != nil {
		return GuardOutcome{}, fmt.Errorf("login guard: %w", err)
	}
	return out, nil
}

// LoginGuardEntries lists the guard's rows that count failures or lock
// something, and the known pairs: addresses first, then accounts, then
// pairs, most recent first; at most limit rows (≤ 0: 1000).
func (s *sqlStore) LoginGuardEntries(ctx context.Context, limit int) ([]GuardEntry, error) {
	if limit <= 0 {
		limit = 1000
	}
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+guardCols+` FROM login_guard
		WHERE failures > 0 OR next_at > $1 OR kind = 'pair'
		ORDER BY CASE kind WHEN 'ip' THEN 0 WHEN 'user' THEN 1 ELSE 2 END, last_at DESC, name, ip
		LIMIT $2`, toMicros(s.now()), limit)
	if err != nil {
		return nil, fmt.Errorf("list login guard: %w", err)
	}
	defer rows.Close()
	var out []GuardEntry
	for rows.Next() {
		e, err := scanGuard(rows)
		if err != nil {
			return nil, fmt.Errorf("list login guard: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list login guard: %w", err)
	}
	return out, nil
}

// LoginGuardClear forgets failures and lifts locks: those of the address ip
// (its own count and its pairs'), of the account name (its count and its
// pairs'), or, with both empty, all of them. Known pairs stay known. It
// returns the number of rows changed.
func (s *sqlStore) LoginGuardClear(ctx context.Context, ip, name string) (int64, error) {
	if err := checkGuardKeys(ip, name); err != nil {
		return 0, err
	}
	var total int64
	err := s.write(ctx, func(w *wtx) error {
		total = 0
		exec := func(q string, args ...any) error {
			res, err := w.ExecContext(ctx, q, args...)
			if err != nil {
				return err
			}
			n, err := res.RowsAffected()
			total += n
			return err
		}
		const resetPairs = `UPDATE login_guard SET failures = 0, next_at = 0 WHERE kind = 'pair' AND (failures > 0 OR next_at > 0)`
		if ip == "" && name == "" {
			if err := exec(`DELETE FROM login_guard WHERE kind <> 'pair'`); err != nil {
				return err
			}
			return exec(resetPairs)
		}
		if ip != "" {
			if err := exec(`DELETE FROM login_guard WHERE kind = 'ip' AND ip = $1`, ip); err != nil {
				return err
			}
			if err := exec(resetPairs+` AND ip = $1`, ip); err != nil {
				return err
			}
		}
		if name != "" {
			if err := exec(`DELETE FROM login_guard WHERE kind = 'user' AND name = $1`, name); err != nil {
				return err
			}
			if err := exec(resetPairs+` AND name = $1`, name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("clear login guard: %w", err)
	}
	return total, nil
}

// LoginGuardPrune deletes what the guard no longer needs: counts whose last
// failure is older than window and that lock nothing, pairs not used for
// knownFor; then, while more than maxRows rows remain (maxRows > 0), the
// least recently failed addresses and accounts, then the least recently
// used pairs. It returns the number of rows deleted.
func (s *sqlStore) LoginGuardPrune(ctx context.Context, now time.Time, window, knownFor time.Duration, maxRows int) (int64, error) {
	n := toMicros(now)
	var total int64
	err := s.write(ctx, func(w *wtx) error {
		total = 0
		exec := func(q string, args ...any) error {
			res, err := w.ExecContext(ctx, q, args...)
			if err != nil {
				return err
			}
			k, err := res.RowsAffected()
			total += k
			return err
		}
		if err := exec(`DELETE FROM login_guard WHERE kind <> 'pair' AND last_at < $1 AND next_at <= $2 AND busy_until <= $2`,
			n-window.Microseconds(), n); err != nil {
			return err
		}
		if err := exec(`DELETE FROM login_guard WHERE kind = 'pair' AND ok_at < $1 AND last_at < $2 AND next_at <= $3`,
			n-knownFor.Microseconds(), n-window.Microseconds(), n); err != nil {
			return err
		}
		if maxRows <= 0 {
			return nil
		}
		var rows int
		if err := w.QueryRowContext(ctx, `SELECT COUNT(*) FROM login_guard`).Scan(&rows); err != nil {
			return err
		}
		if over := rows - maxRows; over > 0 {
			before := total
			if err := exec(`DELETE FROM login_guard WHERE (kind, name, ip) IN (
				SELECT kind, name, ip FROM login_guard WHERE kind <> 'pair' ORDER BY last_at LIMIT $1)`, over); err != nil {
				return err
			}
			rows -= int(total - before)
		}
		if over := rows - maxRows; over > 0 {
			return exec(`DELETE FROM login_guard WHERE (kind, name, ip) IN (
				SELECT kind, name, ip FROM login_guard WHERE kind = 'pair' ORDER BY ok_at LIMIT $1)`, over)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("prune login guard: %w", err)
	}
	return total, nil
}
