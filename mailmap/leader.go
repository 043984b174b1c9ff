package mailmap

import (
	"context"
	"database/sql"
	"fmt"
	"hash/fnv"
	"sync"
)

// Lock is a named lock held by one process of a deployment (see TryLock).
type Lock interface {
	// Held reports whether the lock is still held; on PostgreSQL it checks
	// that the session holding it is alive (a lost session loses the lock).
	Held(ctx context.Context) bool
	// Release gives the lock up.
	Release()
}

// lockKey maps a lock name to a PostgreSQL advisory-lock key.
func lockKey(name string) int64 {
	h := fnv.New64a()
	h.Write([]byte("bmgate:" + name))
	return int64(h.Sum64())
}

// TryLock takes a named lock for the whole deployment, or reports false
// when another process holds it. Several bmgate instances sharing one
// PostgreSQL database use it so that one of them at a time owns a singleton
// job (the inventory dispatcher). On SQLite there is one process, and the
// lock is granted within it once.
func (s *sqlStore) TryLock(ctx context.Context, name string) (Lock, bool, error) {
	l, ok, err := s.tryLock(ctx, name)
	if ok {
		s.locksMu.Lock()
		if s.locks == nil {
			s.locks = map[Lock]struct{}{}
		}
		s.locks[l] = struct{}{}
		s.locksMu.Unlock()
	}
	return l, ok, err
}

// releaseLocks gives up every lock still held (the store is closing: a
// session-level lock would otherwise outlive it on a checked-out connection).
func (s *sqlStore) releaseLocks() {
	s.locksMu.Lock()
	locks := s.locks
	s.locks = nil
	s.locksMu.Unlock()
	for l := range locks {
		l.Release()
	}
}

func (s *sqlStore) tryLock(ctx context.Context, name string) (Lock, bool, error) {
	if !s.d.notify { // SQLite: in-process only
		return s.localLock(name)
	}
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("lock %s: %w", name, err)
	}
	var ok bool
	if err := conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1)`, lockKey(name)).Scan(&ok); err != nil {
		conn.Close()
		return nil, false, fmt.Errorf("lock %s: %w", name, err)
	}
	if !ok {
		conn.Close()
		return nil, false, nil
	}
	return &pgLock{conn: conn, key: lockKey(name)}, true, nil
}

// pgLock is a session-level advisory lock, held as long as its connection.
type pgLock struct {
	mu   sync.Mutex
	conn *sql.Conn
	key  int64
}

func (l *pgLock) Held(ctx context.Context) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn == nil {
		return false
	}
	if err := l.conn.PingContext(ctx); err != nil {
		l.conn.Close()
		l.conn = nil
		return false
	}
	return true
}

func (l *pgLock) Release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn == nil {
		return
	}
	_, _ = l.conn.ExecContext(context.Background(), `SELECT pg_advisory_unlock($1)`, l.key)
	l.conn.Close()
	l.conn = nil
}

var localLocks = struct {
	sync.Mutex
	held map[string]bool
}{held: map[string]bool{}}

func (s *sqlStore) localLock(name string) (Lock, bool, error) {
	key := s.origin + "\x00" + name
	localLocks.Lock()
	defer localLocks.Unlock()
	if localLocks.held[key] {
		return nil, false, nil
	}
	localLocks.held[key] = true
	return &localLock{key: key}, true, nil
}

type localLock struct {
	once sync.Once
	key  string
	gone bool
}

func (l *localLock) Held(context.Context) bool {
	localLocks.Lock()
	defer localLocks.Unlock()
	return !l.gone
}

func (l *localLock) Release() {
	l.once.Do(func() {
		localLocks.Lock()
		delete(localLocks.held, l.key)
		l.gone = true
		localLocks.Unlock()
	})
}
