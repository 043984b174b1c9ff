package mailmap

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"
)

// The accounts generation (migration 0003) is a counter in the database
// that triggers raise on every change to users, identities, contacts and
// subscriptions. On SQLite, AccountsGeneration reads it (one small query).
// On PostgreSQL the triggers also pg_notify the new value on
// accountsChannel, and the Store keeps the generation in memory from those
// notifications, so reading it costs nothing.

// accountsChannel carries the new generation (decimal) at each commit that
// changed account data.
const accountsChannel = "bmgate_accounts"

// epochShift places the LISTEN reconnect count above the database counter
// in the value AccountsGeneration returns (PostgreSQL).
const epochShift = 48

// accountGen is a PostgreSQL Store's in-memory generation.
type accountGen struct {
	mu    sync.Mutex
	epoch uint64 // raised each time the LISTEN connection comes back
	seen  uint64 // highest database counter seen
}

func (g *accountGen) valueLocked() uint64 {
	return g.epoch<<epochShift | g.seen&(1<<epochShift-1)
}

func (g *accountGen) value() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.valueLocked()
}

// observe records a counter value read from the database or a notification
// (they may arrive out of order: the highest wins) and returns the value.
func (g *accountGen) observe(v uint64) uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.seen = max(g.seen, v)
	return g.valueLocked()
}

// reconnected changes the value: notifications sent while the listener was
// away are lost, so whatever was loaded before may be stale.
func (g *accountGen) reconnected() {
	g.mu.Lock()
	g.epoch++
	g.mu.Unlock()
}

// readAccountsGeneration reads the counter from the database.
func (s *sqlStore) readAccountsGeneration(ctx context.Context) (uint64, error) {
	var v int64
	if err := s.rdb.QueryRowContext(ctx, `SELECT generation FROM account_generation WHERE id = 1`).Scan(&v); err != nil {
		return 0, fmt.Errorf("read accounts generation: %w", err)
	}
	return uint64(v), nil
}

func (s *sqlStore) AccountsGeneration(ctx context.Context) (uint64, error) {
	if s.d.notify {
		return s.gen.value(), nil
	}
	return s.readAccountsGeneration(ctx)
}

func (s *sqlStore) ReadAccountsGeneration(ctx context.Context) (uint64, error) {
	v, err := s.readAccountsGeneration(ctx)
	if err != nil {
		return 0, err
	}
	if s.d.notify {
		return s.gen.observe(v), nil
	}
	return v, nil
}

// accountsNotified handles a notification on accountsChannel.
func (s *sqlStore) accountsNotified(payload string) {
	v, err := strconv.ParseUint(payload, 10, 64)
	if err != nil {
		s.log.Warn("ignoring malformed accounts notification", "err", err)
		return
	}
	s.gen.observe(v)
}

// accountsReconnected runs once the LISTEN connection is back: the
// generation changes whatever happened meanwhile, and catches up with the
// database when it can (a failure only delays that to the next
// notification or ReadAccountsGeneration).
func (s *sqlStore) accountsReconnected(ctx context.Context) {
	s.gen.reconnected()
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := s.ReadAccountsGeneration(rctx); err != nil && ctx.Err() == nil {
		s.log.Warn("reading the accounts generation after reconnecting failed", "err", err)
	}
}

// maxUserStates bounds the per-command account check cache; it is emptied
// when full (and at every generation change).
const maxUserStates = 4096

// userStates caches, per accounts generation, whether users may act: nil
// (enabled), ErrDisabled or ErrNotFound.
type userStates struct {
	mu    sync.Mutex
	valid bool
	gen   uint64
	state map[int64]error
}

func (s *sqlStore) UserActive(ctx context.Context, userID int64) error {
	gen, err := s.AccountsGeneration(ctx)
	if err != nil {
		return err
	}
	c := &s.users
	c.mu.Lock()
	if !c.valid || c.gen != gen || len(c.state) >= maxUserStates {
		c.valid, c.gen, c.state = true, gen, map[int64]error{}
	}
	st, ok := c.state[userID]
	c.mu.Unlock()
	if ok {
		return st
	}
	// Read after the generation: the row is at least as new as gen, so a
	// later change moves the generation past the cached entry.
	u, err := s.User(ctx, userID)
	switch {
	case errors.Is(err, ErrNotFound):
		st = ErrNotFound
	case err != nil:
		return err
	case u.Disabled:
		st = ErrDisabled
	}
	c.mu.Lock()
	if c.valid && c.gen == gen {
		c.state[userID] = st
	}
	c.mu.Unlock()
	return st
}
