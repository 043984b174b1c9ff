package storetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/bmgate/bmgate/mailmap"
)

// guardPolicy: 1 s after the first failure, doubling.
var guardPolicy = mailmap.GuardPolicy{
	Window: time.Hour,
	Delay:  func(n int) time.Duration { return time.Second << min(n-1, 10) },
}

func guardAttempt(ip, name string, now time.Time) mailmap.GuardAttempt {
	return mailmap.GuardAttempt{IP: ip, Name: name, Now: now, Hold: 10 * time.Second, KnownFor: 24 * time.Hour}
}

// admit asks for admission and checks the answer.
func admit(t *testing.T, s mailmap.Store, a mailmap.GuardAttempt, want bool, what string) mailmap.GuardVerdict {
	t.Helper()
	v, err := s.LoginGuardAdmit(context.Background(), a)
	noErr(t, err, what)
	if v.Admitted != want {
		t.Fatalf("%s: admitted = %v, want %v (verdict %+v)", what, v.Admitted, want, v)
	}
	return v
}

func done(t *testing.T, s mailmap.Store, a mailmap.GuardAttempt, v mailmap.GuardVerdict, r mailmap.GuardResult) mailmap.GuardOutcome {
	t.Helper()
	out, err := s.LoginGuardDone(context.Background(), a, v, r, guardPolicy)
	noErr(t, err, "LoginGuardDone")
	return out
}

// testLoginGuard: reservations are exclusive per account; failures lock the
// address and the account for the policy's delay; a success makes the
// address known for the account (skipping the account's lock) and clears
// nothing else; windows, Clear, Entries and Prune.
func testLoginGuard(t *testing.T, s mailmap.Store) {
	ctx := context.Background()
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

	// One check at a time per account.
	a := guardAttempt("192.0.2.1", "alice", t0)
	v := admit(t, s, a, true, "first attempt")
	busy := admit(t, s, guardAttempt("192.0.2.2", "alice", t0), false, "second attempt while the first is checked")
	if !busy.Busy || busy.Blocker != mailmap.GuardUser || !busy.Until.Equal(t0.Add(10*time.Second)) {
		t.Fatalf("busy verdict %+v", busy)
	}
	admit(t, s, guardAttempt("192.0.2.2", "bob", t0), true, "another account meanwhile")
	out := done(t, s, a, v, mailmap.GuardFailed)
	if out.IPFailures != 1 || out.UserFailures != 1 || out.PairFailures != 0 || !out.NextAt.Equal(t0.Add(time.Second)) {
		t.Fatalf("outcome of the first failure %+v", out)
	}

	// The account is locked for everyone for 1 s; the address too.
	lock := admit(t, s, guardAttempt("192.0.2.3", "alice", t0.Add(500*time.Millisecond)), false, "account locked")
	if lock.Busy || lock.Blocker != mailmap.GuardUser || lock.Failures != 1 || !lock.Until.Equal(t0.Add(time.Second)) {
		t.Fatalf("lock verdict %+v", lock)
	}
	ipLock := admit(t, s, guardAttempt("192.0.2.1", "carol", t0.Add(500*time.Millisecond)), false, "address locked")
	if ipLock.Blocker != mailmap.GuardIP || !ipLock.Until.Equal(t0.Add(time.Second)) {
		t.Fatalf("address lock verdict %+v", ipLock)
	}

	// A second failure doubles the delay.
	t1 := t0.Add(time.Second)
	a = guardAttempt("192.0.2.3", "alice", t1)
	v = admit(t, s, a, true, "after the delay")
	if out := done(t, s, a, v, mailmap.GuardFailed); out.UserFailures != 2 || !out.NextAt.Equal(t1.Add(2*time.Second)) {
		t.Fatalf("outcome of the second failure %+v", out)
	}

	// The owner logs in from her address (after the lock): it becomes known.
	t2 := t1.Add(2 * time.Second)
	home := guardAttempt("198.51.100.7", "alice", t2)
	v = admit(t, s, home, true, "owner after the lock")
	done(t, s, home, v, mailmap.GuardOK)

	// More failures from elsewhere lock the account again...
	t3 := t2.Add(time.Millisecond)
	a = guardAttempt("192.0.2.4", "alice", t3)
	v = admit(t, s, a, true, "attacker")
	if out := done(t, s, a, v, mailmap.GuardFailed); out.UserFailures != 3 {
		t.Fatalf("a success cleared the account's count: %+v", out)
	}
	admit(t, s, guardAttempt("192.0.2.5", "alice", t3.Add(time.Second)), false, "account locked after the owner's success")
	// ...but not for the owner's known address.
	home = guardAttempt("198.51.100.7", "alice", t3.Add(time.Second))
	v = admit(t, s, home, true, "owner's known address while the account is locked")
	if !v.Known {
		t.Fatalf("owner's address not known: %+v", v)
	}
	// The owner's failure counts on the pair (and the account), and locks the pair.
	out = done(t, s, home, v, mailmap.GuardFailed)
	if out.PairFailures != 1 || out.UserFailures != 4 {
		t.Fatalf("owner's failure: %+v", out)
	}
	pl := admit(t, s, guardAttempt("198.51.100.7", "alice", t3.Add(1500*time.Millisecond)), false, "pair locked")
	if pl.Blocker != mailmap.GuardPair || !pl.Known {
		t.Fatalf("pair lock verdict %+v", pl)
	}
	// A known address is exempt from its own lock for that account only.
	admit(t, s, guardAttempt("198.51.100.7", "alice", t3.Add(2*time.Second+time.Millisecond)), true, "pair lock over")

	// Another account's success from the attacker's address clears nothing.
	bobAt := guardAttempt("192.0.2.4", "bob", t3.Add(time.Hour/2))
	// bob is still reserved from the start (an attempt that never ended): its hold ran out.
	v = admit(t, s, bobAt, true, "bob from the attacker's address")
	done(t, s, bobAt, v, mailmap.GuardOK)
	entries, err := s.LoginGuardEntries(ctx, 0)
	noErr(t, err, "LoginGuardEntries")
	find := func(kind mailmap.GuardKind, name, ip string) *mailmap.GuardEntry {
		for i, e := range entries {
			if e.Kind == kind && e.Name == name && e.IP == ip {
				return &entries[i]
			}
		}
		return nil
	}
	if e := find(mailmap.GuardIP, "", "192.0.2.4"); e == nil || e.Failures != 1 {
		t.Fatalf("address count after another account's success: %+v (entries %+v)", e, entries)
	}
	if e := find(mailmap.GuardUser, "alice", ""); e == nil || e.Failures != 4 {
		t.Fatalf("alice's count: %+v", e)
	}
	if e := find(mailmap.GuardPair, "alice", "198.51.100.7"); e == nil || e.OKAt.IsZero() {
		t.Fatalf("alice's known address: %+v", e)
	}

	// After the window without failures, counts start over.
	late := t3.Add(2 * time.Hour)
	a = guardAttempt("192.0.2.1", "alice", late)
	v = admit(t, s, a, true, "after the window")
	if out := done(t, s, a, v, mailmap.GuardFailed); out.UserFailures != 1 || out.IPFailures != 1 {
		t.Fatalf("counts after the window: %+v", out)
	}

	// Aborted attempts release the account and count nothing.
	a = guardAttempt("192.0.2.9", "dave", late)
	v = admit(t, s, a, true, "dave")
	done(t, s, a, v, mailmap.GuardAborted)
	v = admit(t, s, a, true, "dave again after an aborted attempt")
	done(t, s, a, v, mailmap.GuardAborted)

	// Clear by address, by account, everything.
	n, err := s.LoginGuardClear(ctx, "192.0.2.1", "")
	noErr(t, err, "LoginGuardClear ip")
	if n == 0 {
		t.Fatal("LoginGuardClear ip changed nothing")
	}
	admit(t, s, guardAttempt("192.0.2.1", "erin", late.Add(time.Millisecond)), true, "cleared address")
	admit(t, s, guardAttempt("192.0.2.8", "alice", late.Add(time.Millisecond)), false, "account still locked")
	_, err = s.LoginGuardClear(ctx, "", "alice")
	noErr(t, err, "LoginGuardClear user")
	admit(t, s, guardAttempt("192.0.2.8", "alice", late.Add(2*time.Millisecond)), true, "cleared account")
	_, err = s.LoginGuardClear(ctx, "", "")
	noErr(t, err, "LoginGuardClear all")
	entries, err = s.LoginGuardEntries(ctx, 0)
	noErr(t, err, "LoginGuardEntries")
	for _, e := range entries {
		if e.Kind != mailmap.GuardPair || e.Failures != 0 {
			t.Fatalf("entry left after clearing everything: %+v", e)
		}
	}
	wantErr(t, func() error { _, err := s.LoginGuardClear(ctx, "a\x00b", ""); return err }(), mailmap.ErrInvalidName, "LoginGuardClear with NUL")

	// Prune: old counts and unused pairs go; then the table is bounded.
	for i := range 20 {
		a := guardAttempt(fmt.Sprintf("203.0.113.%d", i), fmt.Sprintf("user%d", i), late.Add(time.Duration(i)*time.Second))
		v := admit(t, s, a, true, "filler")
		done(t, s, a, v, mailmap.GuardFailed)
	}
	pruneAt := late.Add(time.Hour + 10*time.Second) // fillers 0..9 are past the window, 10..19 are not
	n, err = s.LoginGuardPrune(ctx, pruneAt, time.Hour, 24*time.Hour, 0)
	noErr(t, err, "LoginGuardPrune")
	if n == 0 {
		t.Fatal("LoginGuardPrune deleted nothing")
	}
	_, err = s.LoginGuardPrune(ctx, pruneAt, time.Hour, 24*time.Hour, 5)
	noErr(t, err, "LoginGuardPrune bounded")
	entries, err = s.LoginGuardEntries(ctx, 0)
	noErr(t, err, "LoginGuardEntries")
	if len(entries) > 5 {
		t.Fatalf("%d entries after pruning to 5", len(entries))
	}
}

// testLoginGuardConcurrent: of many simultaneous attempts on one account,
// from different addresses, exactly one is admitted.
func testLoginGuardConcurrent(t *testing.T, s mailmap.Store) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	const n = 16
	var wg sync.WaitGroup
	var mu sync.Mutex
	admitted := 0
	for i := range n {
		wg.Go(func() {
			v, err := s.LoginGuardAdmit(context.Background(), guardAttempt(fmt.Sprintf("192.0.2.%d", i), "alice", now))
			if err != nil {
				t.Error(err)
				return
			}
			if v.Admitted {
				mu.Lock()
				admitted++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if admitted != 1 {
		t.Fatalf("%d of %d simultaneous attempts on one account admitted, want 1", admitted, n)
	}
}
