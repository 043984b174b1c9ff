package mailmap

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/bmgate/bmgate/bmcore/wire"
)

// SetAsideObject is an inventory object whose processing failed too often:
// the dispatcher no longer tries it, and operators see it with its error.
type SetAsideObject struct {
	Hash      wire.InvHash
	Type      uint32
	Attempts  int
	LastError string
	Expires   time.Time
}

// InboundBacklog is the gateway's inbound queue at a moment: the objects
// waiting (Pending; Due of them may be tried now, Leased of them are being
// processed by some instance) and the objects the whole deployment
// processed during the last Window.
type InboundBacklog struct {
	Pending   int
	Due       int
	Leased    int
	Processed int
	Window    time.Duration
}

// Rate is the deployment's recent processing rate, in objects per second.
func (b InboundBacklog) Rate() float64 {
	if b.Window <= 0 {
		return 0
	}
	return float64(b.Processed) / b.Window.Seconds()
}

// CatchUp is the expected time to work through the pending objects at the
// recent rate: 0 when nothing is pending, -1 when nothing was processed
// lately (unknown).
func (b InboundBacklog) CatchUp() time.Duration {
	switch {
	case b.Pending == 0:
		return 0
	case b.Processed == 0:
		return -1
	}
	return time.Duration(float64(b.Pending) / b.Rate() * float64(time.Second))
}

// maxDeliveryKey bounds DeliverOnce keys (inventory hashes are 32 bytes).
const maxDeliveryKey = 64

// maxObjectError bounds the error text kept for a failed object.
const maxObjectError = 1000

// strayDeliveries is how long a deliveries row may outlive the pruning of
// inventory objects when its object is not (or no longer) in the inventory.
// An object lives at most 28 days and 3 hours after it is received, so a
// key older than that, counted from the Expire cut-off, names an object
// that cannot come back.
const strayDeliveries = 30 * 24 * time.Hour

func (s *sqlStore) DeliverOnce(ctx context.Context, userID, mailboxID int64, key, raw []byte, flags []string, date time.Time) (Message, bool, error) {
	if len(key) == 0 || len(key) > maxDeliveryKey {
		return Message{}, false, invalid("delivery key")
	}
	var m Message
	var dup bool
	err := s.write(ctx, func(w *wtx) error {
		m, dup = Message{}, false
		// The user's lock first, as every writer takes it (lock order),
		// and a missing user is ErrNotFound rather than a foreign key error.
		if _, _, err := s.lockUser(ctx, w, userID); err != nil {
			return err
		}
		res, err := w.ExecContext(ctx, `INSERT INTO deliveries (user_id, inv_hash, at) VALUES ($1, $2, $3)
			ON CONFLICT (user_id, inv_hash) DO NOTHING`, userID, key, toMicros(s.now()))
		if err != nil {
			return fmt.Errorf("record delivery: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("record delivery: %w", err)
		}
		if n == 0 {
			dup = true
			return nil
		}
		m, err = s.appendTx(ctx, w, userID, mailboxID, raw, flags, date)
		return err
	})
	if err != nil {
		return Message{}, false, err
	}
	return m, dup, nil
}

func (s *sqlStore) ObjectFailed(ctx context.Context, h wire.InvHash, errText string, now time.Time, backoff func(attempts int) time.Duration, maxAttempts int) (int, bool, error) {
	limit := int64(math.MaxInt64)
	if maxAttempts > 0 {
		limit = int64(maxAttempts)
	}
	var attempts int64
	var aside bool
	err := s.write(ctx, func(w *wtx) error {
		// The failure ends the lease: the object waits for its retry time,
		// then any instance may take it.
		err := w.QueryRowContext(ctx, `UPDATE inventory SET attempts = attempts + 1, last_error = $1,
				set_aside = (set_aside OR attempts + 1 >= $2), lease_owner = '', lease_until = 0
			WHERE hash = $3 RETURNING attempts, set_aside`,
			objectError(errText), limit, h[:]).Scan(&attempts, &aside)
		if errors.Is(err, sql.ErrNoRows) {
			return errObjectNotFound
		}
		if err != nil {
			return fmt.Errorf("record object failure: %w", err)
		}
		// The wait grows with the attempts the store counted, so a
		// restart does not shorten it.
		retryAt := now
		if backoff != nil {
			retryAt = now.Add(backoff(int(attempts)))
		}
		if _, err := w.ExecContext(ctx, `UPDATE inventory SET retry_at = $1 WHERE hash = $2`, toMicros(retryAt), h[:]); err != nil {
			return fmt.Errorf("record object failure: %w", err)
		}
		return nil
	})
	if err != nil {
		return 0, false, err
	}
	return int(attempts), aside, nil
}

// HoldObject puts a pending object off until retryAt without counting a
// failure (its attempts stay as they are): it cannot be processed yet for
// a reason that is nobody's fault, like a recipient over quota. The reason
// is kept as its last error, the lease ends.
func (s *sqlStore) HoldObject(ctx context.Context, h wire.InvHash, reason string, retryAt time.Time) error {
	res, err := s.db.ExecContext(ctx, `UPDATE inventory SET last_error = $1, retry_at = $2, lease_owner = '', lease_until = 0
		WHERE hash = $3 AND NOT processed`, objectError(reason), toMicros(retryAt), h[:])
	if err := rowsAffected("hold object", res, err); err != nil {
		if errors.Is(err, ErrNotFound) {
			return errObjectNotFound
		}
		return err
	}
	return nil
}

// RetrySetAside makes set-aside objects pending again, due at once with
// their attempts counted from zero: the one with hash h, or every one when
// h is nil (an operator fixed the cause). It returns how many it released.
func (s *sqlStore) RetrySetAside(ctx context.Context, h *wire.InvHash) (int, error) {
	query := `UPDATE inventory SET set_aside = FALSE, attempts = 0, retry_at = 0, lease_owner = '', lease_until = 0
		WHERE set_aside AND NOT processed`
	var args []any
	if h != nil {
		query += ` AND hash = $1`
		args = append(args, h[:])
	}
	res, err := s.db.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, fmt.Errorf("retry set-aside objects: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("retry set-aside objects: %w", err)
	}
	return int(n), nil
}

func (s *sqlStore) SetAsideObjects(ctx context.Context, limit int) ([]SetAsideObject, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.rdb.QueryContext(ctx, `SELECT hash, type, attempts, last_error, expires FROM inventory
		WHERE set_aside AND NOT processed ORDER BY id LIMIT $1`, int64(limit))
	if err != nil {
		return nil, fmt.Errorf("set-aside objects: %w", err)
	}
	defer rows.Close()
	var out []SetAsideObject
	for rows.Next() {
		var o SetAsideObject
		var hash []byte
		var typ, attempts, expires int64
		if err := rows.Scan(&hash, &typ, &attempts, &o.LastError, &expires); err != nil {
			return nil, fmt.Errorf("set-aside objects: %w", err)
		}
		if len(hash) != len(o.Hash) || typ < 0 || typ > math.MaxUint32 {
			return nil, errors.New("set-aside objects: malformed inventory row")
		}
		copy(o.Hash[:], hash)
		o.Type, o.Attempts, o.Expires = uint32(typ), int(attempts), fromMicros(expires)
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("set-aside objects: %w", err)
	}
	return out, nil
}

// objectError makes an error text storable in both dialects (valid UTF-8,
// no NUL) and bounds its length.
func objectError(s string) string {
	s = strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", ""), "\uFFFD")
	if len(s) <= maxObjectError {
		return s
	}
	s = s[:maxObjectError]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}
