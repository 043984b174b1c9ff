package loginguard

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bmgate/bmgate/mailmap"
)

var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func openStore(t *testing.T) mailmap.Store {
	t.Helper()
	st, err := mailmap.Open(context.Background(), filepath.Join(t.TempDir(), "mail.db"), mailmap.Options{SecretKey: bytes.Repeat([]byte{3}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// fakeVerify answers like Authenticate for a fixed set of passwords, at
// no cost, and records when it was called for each account.
type fakeVerify struct {
	clock *ManualClock
	mu    sync.Mutex
	calls map[string][]time.Time
}

func (f *fakeVerify) check(name, password string) Verify {
	return func(context.Context) (mailmap.User, error) {
		f.mu.Lock()
		f.calls[name] = append(f.calls[name], f.clock.Now())
		f.mu.Unlock()
		if password == "right" {
			return mailmap.User{Name: name}, nil
		}
		return mailmap.User{}, mailmap.ErrAuthFailed
	}
}

func (f *fakeVerify) times(name string) []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.calls[name]...)
}

func newGuard(t *testing.T, cfg Config) (*Guard, *ManualClock, *fakeVerify) {
	clock := NewManualClock(t0)
	cfg.Clock = clock
	if cfg.Store == nil {
		cfg.Store = openStore(t)
	}
	return New(cfg), clock, &fakeVerify{clock: clock, calls: make(map[string][]time.Time)}
}

// TestOneGuessPerSecond: 20 clients on 10 addresses guess one account's
// password as fast as the guard lets them, while one of those addresses
// keeps logging in to another account; the fake clock moves 100 ms each
// time every guesser waits. Guesses against the account are at least
// BaseDelay (1 s) apart in total, the other account's logins are never
// held up, and with the default doubling the guesses thin out further.
func TestOneGuessPerSecond(t *testing.T) {
	for _, tc := range []struct {
		name     string
		maxDelay time.Duration
		span     time.Duration
		minGuess int // at least this many guesses: the guard, not the test, limits them
		maxGuess int
	}{
		{"constant delay", time.Second, 8 * time.Second, 7, 9},
		{"doubling delay", 0, 16 * time.Second, 4, 5}, // at 0, 1, 3, 7, 15 s
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, clock, fv := newGuard(t, Config{MaxDelay: tc.maxDelay})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()

			// bob logs in from the guessers' first address before the
			// attack, so that address is known for bob.
			if _, err := g.Login(ctx, "imap", "127.0.0.10", "bob", fv.check("bob", "right")); err != nil {
				t.Fatal(err)
			}
			const guessers = 20
			var wg sync.WaitGroup
			var refused, failed atomic.Int64
			for i := range guessers {
				ip := fmt.Sprintf("127.0.0.%d", 10+i%10)
				proto := []string{"smtp", "imap"}[i%2]
				wg.Go(func() {
					for n := 0; ctx.Err() == nil; n++ {
						_, err := g.Login(ctx, proto, ip, "Alice", fv.check("alice", fmt.Sprint("guess", i, n)))
						switch {
						case errors.Is(err, ErrLocked):
							refused.Add(1)
						case errors.Is(err, mailmap.ErrAuthFailed):
							failed.Add(1)
						}
					}
				})
			}
			var bobErrs atomic.Int64
			bobDone := make(chan struct{})
			var bobLogins int
			go func() {
				defer close(bobDone)
				for ctx.Err() == nil {
					if _, err := g.Login(ctx, "smtp", "127.0.0.10", "bob", fv.check("bob", "right")); err != nil && ctx.Err() == nil {
						bobErrs.Add(1)
					}
					bobLogins++
				}
			}()
			for clock.Now().Sub(t0) < tc.span {
				clock.WaitForWaiters(guessers, ctx.Done())
				clock.Advance(100 * time.Millisecond)
			}
			cancel()
			wg.Wait()
			<-bobDone

			guesses := fv.times("alice")
			for i := 1; i < len(guesses); i++ {
				if gap := guesses[i].Sub(guesses[i-1]); gap < time.Second {
					t.Errorf("guesses %d and %d only %v apart", i-1, i, gap)
				}
			}
			if len(guesses) < tc.minGuess || len(guesses) > tc.maxGuess {
				t.Errorf("%d guesses in %v, want %d..%d", len(guesses), tc.span, tc.minGuess, tc.maxGuess)
			}
			if bobErrs.Load() > 0 || bobLogins < 10 {
				t.Errorf("bob: %d logins, %d refused or failed", bobLogins, bobErrs.Load())
			}
			st := g.Stats()
			t.Logf("%d guesses, %d failed, %d refused unchecked, bob %d logins; stats %+v", len(guesses), failed.Load(), refused.Load(), bobLogins, st)
			if refused.Load() == 0 || st.Attempts["smtp"][OutcomeLocked]+st.Attempts["imap"][OutcomeLocked] != uint64(refused.Load()) {
				t.Errorf("refusals %d, stats %+v", refused.Load(), st.Attempts)
			}
		})
	}
}

// TestSuccessClearsOnlyItsPair: an address that failed on alice and then
// logs in to bob keeps its count (its next attempt on another account
// waits), and alice stays locked.
func TestSuccessClearsOnlyItsPair(t *testing.T) {
	g, clock, fv := newGuard(t, Config{MaxWait: time.Second})
	ctx := context.Background()
	for range 3 {
		if _, err := g.Login(ctx, "smtp", "192.0.2.1", "alice", fv.check("alice", "wrong")); !errors.Is(err, mailmap.ErrAuthFailed) {
			t.Fatalf("guess: %v", err)
		}
		clock.Advance(time.Hour / 4) // past each lock, within the window of the count
	}
	// A fourth failure locks the address for 8 s.
	_, err := g.Login(ctx, "smtp", "192.0.2.1", "alice", fv.check("alice", "wrong"))
	if !errors.Is(err, mailmap.ErrAuthFailed) {
		t.Fatal(err)
	}
	// The address is locked for 8 s: bob from there waits past MaxWait and is refused.
	done := make(chan error, 1)
	go func() {
		_, err := g.Login(ctx, "imap", "192.0.2.1", "bob", fv.check("bob", "right"))
		done <- err
	}()
	clock.WaitForWaiters(1, nil)
	clock.Advance(time.Second)
	if err := <-done; !errors.Is(err, ErrLocked) {
		t.Fatalf("bob from a locked address: %v, want ErrLocked", err)
	}
	if n := len(fv.times("bob")); n != 0 {
		t.Fatalf("password checked %d times for a refused attempt", n)
	}
	clock.Advance(8 * time.Second)
	if _, err := g.Login(ctx, "imap", "192.0.2.1", "bob", fv.check("bob", "right")); err != nil {
		t.Fatal(err)
	}
	// bob's success cleared neither the address's count (carol waits
	// longer after its next failure) nor alice's lock.
	_, err = g.Login(ctx, "imap", "192.0.2.1", "carol", fv.check("carol", "wrong"))
	if !errors.Is(err, mailmap.ErrAuthFailed) {
		t.Fatal(err)
	}
	entries, err := g.store.(mailmap.Store).LoginGuardEntries(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	var ipFails, aliceFails int
	for _, e := range entries {
		switch {
		case e.Kind == mailmap.GuardIP && e.IP == "192.0.2.1":
			ipFails = e.Failures
		case e.Kind == mailmap.GuardUser && e.Name == "alice":
			aliceFails = e.Failures
		}
	}
	if ipFails != 5 || aliceFails != 4 {
		t.Fatalf("after bob's success: address failures %d (want 5), alice's %d (want 4)", ipFails, aliceFails)
	}
}

// TestOwnerNotLockedOut: while guessing from elsewhere keeps an account
// locked, its owner's known address logs in at once; a wrong password from
// the owner's address locks only that pair.
func TestOwnerNotLockedOut(t *testing.T) {
	g, clock, fv := newGuard(t, Config{})
	ctx := context.Background()
	if _, err := g.Login(ctx, "imap", "2001:db8:1:2::5", "alice", fv.check("alice", "right")); err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		clock.Advance(time.Minute)
		if _, err := g.Login(ctx, "smtp", fmt.Sprintf("203.0.113.%d", i), "alice", fv.check("alice", "wrong")); !errors.Is(err, mailmap.ErrAuthFailed) {
			t.Fatalf("guess %d: %v", i, err)
		}
	}
	// The account is locked for 32 s; another address of the owner's /64 is known.
	u, err := g.Login(ctx, "imap", "2001:db8:1:2::77", "ALICE", fv.check("alice", "right"))
	if err != nil || u.Name != "alice" {
		t.Fatalf("owner during the lock: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := g.Login(ctx, "imap", "192.0.2.200", "alice", fv.check("alice", "right"))
		done <- err
	}()
	clock.WaitForWaiters(1, nil)
	clock.Advance(DefaultMaxWait)
	var le *LockedError
	if err := <-done; !errors.As(err, &le) || !errors.Is(err, ErrLocked) || le.Blocker != mailmap.GuardUser || le.Failures != 6 {
		t.Fatalf("unknown address during the lock: %v", err)
	}
	if n := len(fv.times("alice")); n != 8 {
		t.Fatalf("%d password checks, want 8 (none for the refused attempt)", n)
	}
	// The owner mistypes: her pair is locked for 1 s, the account is not
	// relieved, and after the second her next try is admitted.
	if _, err := g.Login(ctx, "imap", "2001:db8:1:2::77", "alice", fv.check("alice", "typo")); !errors.Is(err, mailmap.ErrAuthFailed) {
		t.Fatal(err)
	}
	go func() {
		_, err := g.Login(ctx, "imap", "2001:db8:1:2::77", "alice", fv.check("alice", "right"))
		done <- err
	}()
	clock.WaitForWaiters(1, nil)
	clock.Advance(time.Second)
	if err := <-done; err != nil {
		t.Fatalf("owner after her typo's delay: %v", err)
	}
}

// TestParallelLoginsOfOneAccount: a client opening several connections at
// once (Thunderbird opens up to five) gets them all: the account's checks
// are serialised, each waiter woken when the one before it ends.
func TestParallelLoginsOfOneAccount(t *testing.T) {
	g, _, fv := newGuard(t, Config{})
	var wg sync.WaitGroup
	var errs atomic.Int64
	for range 5 {
		wg.Go(func() {
			if _, err := g.Login(context.Background(), "imap", "192.0.2.1", "alice", fv.check("alice", "right")); err != nil {
				errs.Add(1)
			}
		})
	}
	wg.Wait()
	if errs.Load() != 0 || len(fv.times("alice")) != 5 {
		t.Fatalf("%d errors, %d checks", errs.Load(), len(fv.times("alice")))
	}
}

// TestBusyAndDisabledAreNotFailures: ErrBusy and ErrDisabled release the
// account without counting a failure.
func TestBusyAndDisabledAreNotFailures(t *testing.T) {
	g, _, _ := newGuard(t, Config{})
	ctx := context.Background()
	for _, e := range []error{mailmap.ErrBusy, mailmap.ErrDisabled, mailmap.ErrBusy} {
		_, err := g.Login(ctx, "smtp", "192.0.2.1", "alice", func(context.Context) (mailmap.User, error) { return mailmap.User{}, e })
		if !errors.Is(err, e) {
			t.Fatalf("Login = %v, want %v", err, e)
		}
	}
	entries, err := g.store.(mailmap.Store).LoginGuardEntries(ctx, 0)
	if err != nil || len(entries) != 0 {
		t.Fatalf("entries %+v, %v", entries, err)
	}
	st := g.Stats().Attempts["smtp"]
	if st[OutcomeBusy] != 2 || st[OutcomeDisabled] != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestKeys(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":          "192.0.2.1",
		"::ffff:192.0.2.1":   "192.0.2.1",
		"2001:db8:1:2:3::4":  "2001:db8:1:2::/64",
		"local":              "local",
		"bad\x00":            textKey("bad\x00"),
		"2001:db8::1%eth0":   "2001:db8::/64",
		"fe80::1":            "fe80::/64",
		"[::1]":              "[::1]",
		"not an ip address ": "not an ip address ",
	} {
		if got := IPKey(in); got != want {
			t.Errorf("IPKey(%q) = %q, want %q", in, got, want)
		}
	}
	if NameKey("Alice") != "alice" || NameKey("\xff") == "\xff" || len(NameKey(string(make([]byte, 300)))) > 64 {
		t.Error("NameKey")
	}
}

// TestAddressLoginsCountForTheAccount: a user logs in with the user name or
// an own address (any case of domain, or none); failures in every form
// count against the one account, so writing the address another way does
// not buy another series of guesses. An unknown address counts as itself,
// whatever domain follows it.
func TestAddressLoginsCountForTheAccount(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	u, err := st.CreateUser(ctx, "alice", "right")
	if err != nil {
		t.Fatal(err)
	}
	const addr = "BM-2cWzSnwjJ7yRP3nLEWUV5LisTZyREWSzUK"
	if _, err := st.AddIdentity(ctx, mailmap.Identity{UserID: u.ID, Address: addr, Kind: mailmap.KindNormal,
		SigningKey: bytes.Repeat([]byte{1}, 32), EncryptionKey: bytes.Repeat([]byte{2}, 32), NonceTrialsPerByte: 1000, ExtraBytes: 1000}); err != nil {
		t.Fatal(err)
	}
	g, clock, fv := newGuard(t, Config{Store: st})
	ips := []string{"192.0.2.1", "198.51.100.1", "203.0.113.1", "192.0.2.99", "198.51.100.99", "203.0.113.99"}
	names := []string{"alice", addr, addr + "@bmaddr.lan", addr + "@other.example", "BM-2cTux3PGRqHTEH6wyUP2sWeT4LrsGgy63z@a", "BM-2cTux3PGRqHTEH6wyUP2sWeT4LrsGgy63z@b"}
	for i, name := range names {
		clock.Advance(time.Hour / 2) // past any lock, within the window
		if _, err := g.Login(ctx, "imap", ips[i], name, fv.check(name, "wrong")); !errors.Is(err, mailmap.ErrAuthFailed) {
			t.Fatalf("login %d as %s: %v", i, name, err)
		}
	}
	entries, err := st.LoginGuardEntries(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, e := range entries {
		if e.Kind == mailmap.GuardUser {
			got[e.Name] = e.Failures
		}
	}
	other := NameKey("BM-2cTux3PGRqHTEH6wyUP2sWeT4LrsGgy63z")
	want := map[string]int{"alice": 4, other: 2}
	if len(got) != len(want) || got["alice"] != want["alice"] || got[other] != want[other] {
		t.Fatalf("account entries %v, want %v", got, want)
	}
}
