// Package loginguard slows down password guessing against the SMTP and IMAP
// servers. One Guard serves both: every login passes through Login, which
// counts failures per client address, per account name and per known
// (account, address) pair in the store (so every bmgate process on one
// database, and `bmgate login-guard`, see the same counts).
//
// The policy:
//
//   - An attempt is admitted only when neither its address nor its account
//     is locked, and no other attempt on the account is being checked: the
//     store reserves the account atomically, so attempts on one account are
//     checked one at a time, in every process.
//   - The n-th failure (counted within Window of the previous one) locks the
//     address, the account and, for a known address, the pair for
//     BaseDelay × 2^(n−1), at most MaxDelay. With BaseDelay ≥ 1 s an account
//     gets at most one guess per second in total, whatever the number of
//     addresses and protocols, and fewer as failures add up.
//   - An address that logged in to an account within KnownFor is known for
//     it: its attempts on that account skip the account's and the address's
//     locks and count against the pair instead, so someone who locks an
//     account by guessing does not lock its owner out.
//   - A success clears the pair's failures only: never another account's
//     count, nor the address's or the account's.
//   - An attempt that is not admitted waits for its turn, holding no hash
//     memory (the password is not hashed until admitted), at most MaxWait;
//     then it is refused with ErrLocked, and the caller answers with a
//     temporary failure. Nothing is hashed for a refused attempt.
//
// Every decision is logged (successes and failures at Info, refusals at
// Warn, with the client address and the account name: fail2ban can act on
// "login failed" and "login refused" lines) and counted (Stats).
package loginguard

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/bmgate/bmgate/mailmap"
	"github.com/bmgate/bmgate/mailmap/logsafe"
)

// Store is the part of mailmap.Store the guard uses.
type Store interface {
	LoginAccount(ctx context.Context, name string) (string, error)
	LoginGuardAdmit(ctx context.Context, a mailmap.GuardAttempt) (mailmap.GuardVerdict, error)
	LoginGuardDone(ctx context.Context, a mailmap.GuardAttempt, v mailmap.GuardVerdict, r mailmap.GuardResult, p mailmap.GuardPolicy) (mailmap.GuardOutcome, error)
	LoginGuardPrune(ctx context.Context, now time.Time, window, knownFor time.Duration, maxRows int) (int64, error)
}

// Defaults of Config.
const (
	DefaultBaseDelay  = time.Second
	DefaultMaxDelay   = 15 * time.Minute
	DefaultWindow     = time.Hour
	DefaultMaxWait    = 5 * time.Second
	DefaultHold       = 30 * time.Second
	DefaultKnownFor   = 30 * 24 * time.Hour
	DefaultMaxEntries = 100000
	DefaultPruneEvery = time.Minute
)

// Config configures a Guard. Zero fields take the defaults.
type Config struct {
	Store Store
	// BaseDelay is the lock after a first failure; each further failure
	// doubles it, up to MaxDelay.
	BaseDelay time.Duration
	MaxDelay  time.Duration
	// Window: failures are forgotten once the last one is this old.
	Window time.Duration
	// MaxWait is how long an attempt waits for its turn before ErrLocked.
	MaxWait time.Duration
	// Hold bounds how long one attempt reserves its account (the password
	// check normally releases it at once); it must exceed the longest wait
	// for a hashing slot plus a hash.
	Hold time.Duration
	// KnownFor is how long a successful login makes its address known for
	// the account; negative: no address is ever known.
	KnownFor time.Duration
	// MaxEntries bounds the store's table (Run prunes to it).
	MaxEntries int
	// PruneEvery is how often Run prunes.
	PruneEvery time.Duration
	Clock      Clock        // nil: the real clock
	Logger     *slog.Logger // nil: discard
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.BaseDelay, DefaultBaseDelay)
	def(&c.MaxDelay, DefaultMaxDelay)
	c.MaxDelay = max(c.MaxDelay, c.BaseDelay)
	def(&c.Window, DefaultWindow)
	c.Window = max(c.Window, c.MaxDelay) // a lock must not outlive the count it comes from
	def(&c.MaxWait, DefaultMaxWait)
	def(&c.Hold, DefaultHold)
	if c.KnownFor == 0 {
		c.KnownFor = DefaultKnownFor
	} else if c.KnownFor < 0 {
		c.KnownFor = 0
	}
	if c.MaxEntries <= 0 {
		c.MaxEntries = DefaultMaxEntries
	}
	def(&c.PruneEvery, DefaultPruneEvery)
	if c.Clock == nil {
		c.Clock = realClock{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// ErrLocked refuses an attempt that did not get its turn within MaxWait.
// The password was not checked.
var ErrLocked = errors.New("loginguard: too many failed logins, try again later")

// LockedError is the ErrLocked a Login returns, with its reason.
type LockedError struct {
	Blocker    mailmap.GuardKind // what is locked: the address, the account or the pair
	Failures   int
	RetryAfter time.Duration
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("loginguard: %s locked after %d failed logins, retry in %v", e.Blocker, e.Failures, e.RetryAfter.Round(time.Second))
}

func (e *LockedError) Is(target error) bool { return target == ErrLocked }

// Outcomes counted by Stats.
const (
	OutcomeOK       = "ok"       // right password
	OutcomeFailed   = "failed"   // wrong password or unknown account
	OutcomeLocked   = "locked"   // refused without checking: locked, or its turn did not come
	OutcomeBusy     = "busy"     // admitted, but no password-hashing slot freed up (mailmap.ErrBusy)
	OutcomeDisabled = "disabled" // right password, disabled account
	OutcomeError    = "error"    // the store failed
)

// Guard is the login guard. Its methods are safe for concurrent use.
type Guard struct {
	cfg    Config
	store  Store
	clock  Clock
	log    *slog.Logger
	policy mailmap.GuardPolicy

	mu     sync.Mutex
	wake   map[string]*waker // account key → waiters of this process
	counts map[statKey]uint64
	waited uint64
	pruned uint64
}

type waker struct {
	ch      chan struct{} // closed when an attempt on the account ends here
	waiters int
}

type statKey struct{ proto, outcome string }

// New returns a Guard over cfg.Store.
func New(cfg Config) *Guard {
	cfg.setDefaults()
	g := &Guard{
		cfg:    cfg,
		store:  cfg.Store,
		clock:  cfg.Clock,
		log:    cfg.Logger,
		wake:   make(map[string]*waker),
		counts: make(map[statKey]uint64),
	}
	g.policy = mailmap.GuardPolicy{Window: cfg.Window, Delay: g.Delay}
	return g
}

// Config returns the guard's settings, defaults filled in.
func (g *Guard) Config() Config { return g.cfg }

// Delay is the lock after the n-th failure.
func (g *Guard) Delay(n int) time.Duration {
	if n < 1 {
		return 0
	}
	d := g.cfg.BaseDelay
	for i := 1; i < n && d < g.cfg.MaxDelay; i++ {
		d *= 2
	}
	return min(d, g.cfg.MaxDelay)
}

// IPKey is the key an address is counted under: the address itself, an
// IPv6 address's /64 (one subscriber usually has a whole /64), or the
// text given when it is no address (e.g. "local").
func IPKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return textKey(ip)
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// NameKey is the key an account name is counted under: lower case (login
// names are case-insensitive), or a digest for names the store could not
// hold (invalid UTF-8, NUL, too long), which no account has anyway.
func NameKey(name string) string { return textKey(strings.ToLower(name)) }

func textKey(s string) string {
	if len(s) <= 254 && utf8.ValidString(s) && !strings.ContainsRune(s, 0) {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	return "~invalid-" + hex.EncodeToString(sum[:12])
}

type connKey struct{}

// WithConn returns ctx carrying the id of the connection a login comes
// from; Login's log lines then carry it as "conn", as the server's own do.
func WithConn(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, connKey{}, id)
}

// Verify checks a password; Login calls it once the attempt is admitted.
// It returns what mailmap.Store.Authenticate returns.
type Verify func(ctx context.Context) (mailmap.User, error)

// Login runs one login attempt of name from ip (proto, e.g. "smtp", names
// the server in logs and Stats): it waits for the attempt's turn, calls
// verify, records the result and returns verify's. When the turn does not
// come within MaxWait it returns a *LockedError (errors.Is ErrLocked)
// without calling verify.
func (g *Guard) Login(ctx context.Context, proto, ip, name string, verify Verify) (mailmap.User, error) {
	log := g.log.With("proto", proto, "ip", ip, "user", logsafe.String(name))
	if conn, ok := ctx.Value(connKey{}).(string); ok {
		log = log.With("conn", conn)
	}
	// A user may log in with the user name or an own address: count the
	// failures of every form against the one account.
	account, err := g.store.LoginAccount(ctx, name)
	if err != nil {
		g.count(proto, OutcomeError)
		log.Error("login guard unavailable", "err", err)
		return mailmap.User{}, err
	}
	a := mailmap.GuardAttempt{IP: IPKey(ip), Name: NameKey(account), Hold: g.cfg.Hold, KnownFor: g.cfg.KnownFor}
	start := g.clock.Now()
	deadline := start.Add(g.cfg.MaxWait)
	waited := false
	var v mailmap.GuardVerdict
	for {
		a.Now = g.clock.Now()
		var err error
		v, err = g.store.LoginGuardAdmit(ctx, a)
		if err != nil {
			g.count(proto, OutcomeError)
			log.Error("login guard unavailable", "err", err)
			return mailmap.User{}, err
		}
		if v.Admitted {
			break
		}
		now := g.clock.Now()
		if !now.Before(deadline) {
			retry := max(v.Until.Sub(now), 0)
			g.count(proto, OutcomeLocked)
			log.Warn("login refused", "locked", string(v.Blocker), "busy", v.Busy, "failures", v.Failures, "retry_after", retry.Round(time.Millisecond))
			return mailmap.User{}, &LockedError{Blocker: v.Blocker, Failures: v.Failures, RetryAfter: retry}
		}
		if !waited {
			waited = true
			g.mu.Lock()
			g.waited++
			g.mu.Unlock()
		}
		// Wait for the turn, at most until the deadline: a refused
		// client's retries are paced, not a busy loop on the store. The
		// end of an attempt on the account in this process wakes the
		// waiters early; a check in progress elsewhere is polled (its
		// reservation's end is only an upper bound).
		d := v.Until.Sub(now)
		if v.Busy {
			d = min(d, busyPoll)
		}
		if err := g.wait(ctx, a.Name, min(d, deadline.Sub(now))); err != nil {
			g.count(proto, OutcomeError)
			return mailmap.User{}, err
		}
	}

	u, err := verify(ctx)
	result := mailmap.GuardAborted
	outcome := OutcomeError
	switch {
	case err == nil:
		result, outcome = mailmap.GuardOK, OutcomeOK
	case errors.Is(err, mailmap.ErrAuthFailed), errors.Is(err, mailmap.ErrNotFound):
		result, outcome = mailmap.GuardFailed, OutcomeFailed
	case errors.Is(err, mailmap.ErrDisabled):
		outcome = OutcomeDisabled // the right password: no failure
	case errors.Is(err, mailmap.ErrBusy):
		outcome = OutcomeBusy
	}
	a.Now = g.clock.Now()
	// Record even when the client's context ended: the guess was made.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	out, derr := g.store.LoginGuardDone(rctx, a, v, result, g.policy)
	cancel()
	g.notify(a.Name)
	g.count(proto, outcome)
	wait := a.Now.Sub(start).Round(time.Millisecond)
	switch outcome {
	case OutcomeOK:
		log.Info("login", "known", v.Known, "waited", wait)
	case OutcomeFailed:
		log.Info("login failed", "known", v.Known, "ip_failures", out.IPFailures, "user_failures", out.UserFailures,
			"pair_failures", out.PairFailures, "locked_for", out.NextAt.Sub(a.Now).Round(time.Millisecond), "waited", wait)
	case OutcomeDisabled:
		log.Info("login refused: account disabled")
	case OutcomeBusy:
		log.Warn("login not checked: password hashing busy")
	default:
		log.Error("login check failed", "err", err)
	}
	if derr != nil {
		log.Error("login guard could not record the result", "err", derr)
	}
	return u, err
}

// busyPoll is how often an attempt waiting for a check in progress asks
// the store again (a check in this process wakes it at once).
const busyPoll = 100 * time.Millisecond

// wait waits d, or until an attempt on the account ends in this process,
// or ctx ends.
func (g *Guard) wait(ctx context.Context, name string, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	g.mu.Lock()
	w := g.wake[name]
	if w == nil {
		w = &waker{ch: make(chan struct{})}
		g.wake[name] = w
	}
	w.waiters++
	ch := w.ch
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		if w.waiters--; w.waiters == 0 && g.wake[name] == w {
			delete(g.wake, name)
		}
		g.mu.Unlock()
	}()
	tc, stop := g.clock.After(d)
	defer stop()
	select {
	case <-tc:
	case <-ch:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// notify wakes this process's waiters on an account.
func (g *Guard) notify(name string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if w := g.wake[name]; w != nil {
		close(w.ch)
		delete(g.wake, name)
	}
}

func (g *Guard) count(proto, outcome string) {
	g.mu.Lock()
	g.counts[statKey{proto, outcome}]++
	g.mu.Unlock()
}

// Stats are the guard's counters since it started.
type Stats struct {
	// Attempts counts login attempts by protocol and Outcome*.
	Attempts map[string]map[string]uint64
	Waited   uint64 // attempts that waited for their turn
	Pruned   uint64 // store rows pruned by Run
}

// Stats returns the guard's counters.
func (g *Guard) Stats() Stats {
	g.mu.Lock()
	defer g.mu.Unlock()
	st := Stats{Attempts: make(map[string]map[string]uint64), Waited: g.waited, Pruned: g.pruned}
	for k, n := range g.counts {
		if st.Attempts[k.proto] == nil {
			st.Attempts[k.proto] = make(map[string]uint64)
		}
		st.Attempts[k.proto][k.outcome] = n
	}
	return st
}

// Prune deletes the store's rows the guard no longer needs and bounds the
// table to MaxEntries.
func (g *Guard) Prune(ctx context.Context) error {
	n, err := g.store.LoginGuardPrune(ctx, g.clock.Now(), g.cfg.Window, g.cfg.KnownFor, g.cfg.MaxEntries)
	if err != nil {
		return err
	}
	g.mu.Lock()
	g.pruned += uint64(n)
	g.mu.Unlock()
	if n > 0 {
		g.log.Debug("login guard pruned", "rows", n)
	}
	return nil
}

// Run prunes every PruneEvery until ctx ends.
func (g *Guard) Run(ctx context.Context) {
	for {
		if err := g.Prune(ctx); err != nil && ctx.Err() == nil {
			g.log.Warn("login guard prune failed", "err", err)
		}
		tc, stop := g.clock.After(g.cfg.PruneEvery)
		select {
		case <-tc:
		case <-ctx.Done():
			stop()
			return
		}
	}
}
