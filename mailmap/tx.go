package mailmap

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// wtx is a write transaction that also collects the Changes to announce
// once it commits.
type wtx struct {
	*sql.Tx
	changes []Change
}

func (w *wtx) emit(c Change) { w.changes = append(w.changes, c) }

// maxTxAttempts bounds retries of transactions that failed transiently
// (PostgreSQL deadlock or serialization failure).
const maxTxAttempts = 3

// write runs fn in a write transaction and commits it. Changes fn emitted are
// sent with pg_notify inside the transaction (PostgreSQL, so other processes
// learn of them exactly when the data is visible) and to this process's
// subscribers after the commit. Nothing is announced for a transaction that
// did not commit.
func (s *sqlStore) write(ctx context.Context, fn func(w *wtx) error) error {
	var err error
	for attempt := 1; attempt <= maxTxAttempts; attempt++ {
		var changes []Change
		changes, err = s.writeOnce(ctx, fn)
		if err == nil {
			s.hub.publish(changes)
			return nil
		}
		if !s.d.retryable(err) || ctx.Err() != nil {
			return err
		}
	}
	return err
}

func (s *sqlStore) writeOnce(ctx context.Context, fn func(w *wtx) error) ([]Change, error) {
	// Waiting for the (SQLite: only) writer connection honours ctx. The
	// transaction itself is begun without cancellation, because the drivers
	// commit with the Begin context: a cancel arriving during COMMIT would
	// report failure for a transaction the server may have committed. ctx
	// still cancels every statement, and is checked once more before COMMIT;
	// once COMMIT is sent, the answer is the truth.
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin transaction: %w", err)
	}
	defer conn.Close()
	tx, err := conn.BeginTx(context.WithoutCancel(ctx), nil)
	if err != nil {
		return nil, fmt.Errorf("begin transaction: %w", err)
	}
	w := &wtx{Tx: tx}
	if err := fn(w); err != nil {
		tx.Rollback()
		return nil, err
	}
	if s.d.notify && len(w.changes) > 0 {
		if err := s.notifyTx(ctx, w); err != nil {
			tx.Rollback()
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		tx.Rollback()
		return nil, fmt.Errorf("commit transaction: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("commit transaction: %w", err)
	}
	return w.changes, nil
}

// queryer is what read helpers need: a *sql.DB, *sql.Tx or *wtx.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// Times are stored as unix microseconds: exact in both dialects, no
// driver-specific time handling, and ±290,000 years of range.
var zeroMicros = time.Time{}.UnixMicro()

func toMicros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(v int64) time.Time {
	if v == zeroMicros {
		return time.Time{}
	}
	return time.UnixMicro(v).UTC()
}

// stored returns t as it reads back from the database (UTC, microseconds).
func stored(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return fromMicros(toMicros(t))
}

// toNullMicros stores the zero time as NULL ("never").
func toNullMicros(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMicro()
}

func fromNullMicros(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return fromMicros(v.Int64)
}

// uint64 protocol values go into BIGINT bit for bit (database/sql refuses
// uint64 ≥ 2^63, and a peer may send any value).
func u64(v uint64) int64     { return int64(v) }
func fromU64(v int64) uint64 { return uint64(v) }

// placeholders returns "$start, $start+1, …" for n parameters.
func placeholders(start, n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('$')
		b.WriteString(strconv.Itoa(start + i))
	}
	return b.String()
}

// inChunk bounds the size of IN (…) lists: SQLite allows 32766 parameters,
// PostgreSQL 65535, and short lists keep plans cached.
const inChunk = 500

// chunks splits xs into slices of at most inChunk elements.
func chunks[T any](xs []T) [][]T {
	var out [][]T
	for len(xs) > inChunk {
		out = append(out, xs[:inChunk])
		xs = xs[inChunk:]
	}
	if len(xs) > 0 {
		out = append(out, xs)
	}
	return out
}

// validText reports whether s can be stored in a TEXT column of both
// dialects: PostgreSQL refuses NUL and invalid UTF-8.
func validText(s string, maxLen int) bool {
	return len(s) <= maxLen && utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

func invalid(what string) error { return fmt.Errorf("%w: %s", ErrInvalidName, what) }

// notFound maps sql.ErrNoRows to ErrNotFound and wraps other errors.
func notFound(op string, err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	return fmt.Errorf("%s: %w", op, err)
}

// rowsAffected returns ErrNotFound when an UPDATE or DELETE matched nothing.
func rowsAffected(op string, res sql.Result, err error) error {
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// checkUID refuses a UID past the 32-bit space (RFC 9051 §2.3.1.1: a
// mailbox that runs out must get a new UIDVALIDITY, i.e. be recreated).
func checkUID(next int64) error {
	if next-1 > math.MaxUint32 {
		return errors.New("mailmap: mailbox UID space exhausted; recreate the mailbox")
	}
	return nil
}
