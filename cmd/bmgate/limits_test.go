package main

// Load tests of the connection and login limits against an in-process
// `bmgate serve` on loopback ports: bounded in count and time, sources
// spread over 127.0.0.x addresses (Linux routes all of 127/8 to lo).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/bmgate/bmgate/bmcore/node"
	"github.com/bmgate/bmgate/bmcore/params"
	"github.com/bmgate/bmgate/mailmap"
	"github.com/bmgate/bmgate/mailmap/loginguard"
)

// TestLoginFloodMemory: 250 failed logins at once, half SMTP AUTH and half
// IMAP LOGIN, from 10 addresses, each for another account (so no lock
// holds them back). At most password_hash_concurrency argon2id checks
// (19 MiB each) run at once, the process's memory stays within a bound
// far below 250 × 19 MiB, and a legitimate user logs in to IMAP and sends
// mail over SMTP during the flood (retrying a temporary refusal, as mail
// clients do).
func TestLoginFloodMemory(t *testing.T) {
	const slots, flood = 2, 250
	ls := startLive(t, map[string]string{"BMGATE_PASSWORD_HASH_CONCURRENCY": fmt.Sprint(slots)}, nil)
	mailmap.SetPasswordHashLimit(slots, time.Second) // a short wait for slots keeps the test short

	runtime.GC()
	base := memoryInUse()
	var peak atomic.Uint64
	stopMonitor := make(chan struct{})
	monitorDone := make(chan struct{})
	go func() {
		defer close(monitorDone)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			if m := memoryInUse(); m > peak.Load() {
				peak.Store(m)
			}
			select {
			case <-tick.C:
			case <-stopMonitor:
				return
			}
		}
	}()
	mailmap.ResetPasswordHashPeak()
	before := mailmap.PasswordHashStatus()

	began := time.Now()
	start := make(chan struct{})
	var wg sync.WaitGroup
	var failed, refused, unanswered atomic.Int64
	for i := range flood {
		wg.Go(func() {
			src := fmt.Sprintf("127.0.0.%d", 10+(i/2)%10) // each protocol's half from all ten
			user, pass := fmt.Sprintf("guess%d", i), fmt.Sprintf("wrong-%d", i)
			var err error
			if i%2 == 0 {
				c, cerr := ls.smtpClient(src)
				if cerr != nil {
					unanswered.Add(1)
					t.Errorf("SMTP connection %d: %v", i, cerr)
					return
				}
				defer c.Close()
				<-start
				err = c.Auth(sasl.NewPlainClient("", user, pass))
			} else {
				c, cerr := ls.imapClient(src)
				if cerr != nil {
					unanswered.Add(1)
					t.Errorf("IMAP connection %d: %v", i, cerr)
					return
				}
				defer c.Close()
				<-start
				err = c.Login(user, pass).Wait()
			}
			var se *smtp.SMTPError
			var ie *imap.Error
			switch {
			case temporary(err):
				refused.Add(1)
			case errors.As(err, &se) && se.Code == 535, errors.As(err, &ie) && ie.Code == imap.ResponseCodeAuthenticationFailed:
				failed.Add(1)
			default:
				unanswered.Add(1)
				t.Errorf("login %d: %v", i, err)
			}
		})
	}
	legit := make(chan error, 1)
	go func() {
		<-start
		legit <- ls.legitimateSession("127.0.0.2")
	}()
	close(start)
	if err := <-legit; err != nil {
		t.Errorf("legitimate user during the flood: %v", err)
	}
	legitTook := time.Since(began)
	wg.Wait()
	took := time.Since(began)
	close(stopMonitor)
	<-monitorDone

	after := mailmap.PasswordHashStatus()
	growth := int64(peak.Load()) - int64(base)
	t.Logf("%d logins in %v: %d failed, %d refused as temporary; legitimate session done after %v; "+
		"hashes: %d run, at most %d at once (slots %d), %d waited, %d refused; memory in use %d MiB before, peak +%d MiB",
		flood, took.Round(time.Millisecond), failed.Load(), refused.Load(), legitTook.Round(time.Millisecond),
		after.Total-before.Total, after.Peak, after.Slots, after.Waited-before.Waited, after.Refused-before.Refused,
		base>>20, growth>>20)
	if after.Peak > slots {
		t.Errorf("%d password hashes ran at once, want at most %d", after.Peak, slots)
	}
	// Hash memory is bounded by the slots (2 × 19 MiB live, twice that
	// before the collector catches up); the rest is 250 connections.
	if bound := int64(160 << 20); growth > bound {
		t.Errorf("memory grew by %d MiB during the flood, want under %d MiB", growth>>20, bound>>20)
	}
	if unanswered.Load() > 0 || failed.Load()+refused.Load() != flood {
		t.Errorf("%d failed + %d refused of %d, %d unanswered", failed.Load(), refused.Load(), flood, unanswered.Load())
	}
}

// TestGuessRateOneAccount: clients guess alice's password as fast as they
// are let, over SMTP and IMAP at once, (1) from one address that also keeps
// logging in to bob's account, (2) from ten addresses. The login guard's
// clock is a manual one, moved on 200 ms whenever every guesser is waiting
// for its turn, over 10 s; login_delay is 1 s and does not grow
// (login_max_delay 1 s), the worst case. Guesses against alice (checked
// passwords) stay at one per second in total; bob's logins are never held up.
func TestGuessRateOneAccount(t *testing.T) {
	for _, tc := range []struct {
		name     string
		sources  int
		guessers int
	}{
		{"one address with valid logins to another account", 1, 4},
		{"ten addresses", 10, 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := loginguard.NewManualClock(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
			ls := startLive(t, map[string]string{"BMGATE_LOGIN_DELAY": "1s", "BMGATE_LOGIN_MAX_DELAY": "1s"}, clock)
			start := clock.Now()
			const span = 10 * time.Second

			// bob logs in from the first guessing address before the
			// attack: that address is known for bob.
			bobSrc := "127.0.0.20"
			if c, err := ls.smtpClient(bobSrc); err != nil {
				t.Fatal(err)
			} else if err := c.Auth(sasl.NewPlainClient("", "bob", bobPassword)); err != nil {
				t.Fatalf("bob's first login: %v", err)
			} else {
				c.Close()
			}
			// The guard's pruner waits on the clock too.
			clock.WaitForWaiters(1, nil)

			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			var closers []io.Closer
			var closersMu sync.Mutex
			keep := func(c io.Closer) {
				closersMu.Lock()
				closers = append(closers, c)
				closersMu.Unlock()
			}
			for i := range tc.guessers {
				src := fmt.Sprintf("127.0.0.%d", 20+i%tc.sources)
				wg.Go(func() {
					n := 0
					next := func() string { n++; return fmt.Sprintf("guess-%d-%d", i, n) }
					if i%2 == 0 {
						// go-smtp's client answers a failed AUTH with "*",
						// which its server counts as a protocol error (it
						// hangs up after three): a new connection every
						// three guesses.
						for ctx.Err() == nil {
							c, err := ls.smtpClient(src)
							if err != nil {
								t.Error(err)
								return
							}
							keep(c)
							for range 3 {
								if ctx.Err() != nil {
									break
								}
								if err := c.Auth(sasl.NewPlainClient("", "alice", next())); err == nil {
									t.Error("a guess got in")
								}
							}
							c.Close()
						}
						return
					}
					c, err := ls.imapClient(src)
					if err != nil {
						t.Error(err)
						return
					}
					keep(c)
					for ctx.Err() == nil {
						if err := c.Login("alice", next()).Wait(); err == nil {
							t.Error("a guess got in")
						}
					}
				})
			}
			var bobLogins, bobRefused atomic.Int64
			bobDone := make(chan struct{})
			go func() {
				defer close(bobDone)
				if tc.sources != 1 {
					return
				}
				for ctx.Err() == nil {
					c, err := ls.smtpClient(bobSrc)
					if err != nil {
						t.Error(err)
						return
					}
					if err := c.Auth(sasl.NewPlainClient("", "bob", bobPassword)); err != nil {
						bobRefused.Add(1)
					} else {
						bobLogins.Add(1)
					}
					c.Close()
				}
			}()
			for clock.Now().Sub(start) < span {
				// Every guesser is waiting for its turn (plus the pruner).
				clock.WaitForWaiters(tc.guessers+1, nil)
				clock.Advance(200 * time.Millisecond)
			}
			st := ls.s.guard.Stats()
			cancel()
			clock.Free() // let the waiting attempts go
			wg.Wait()
			<-bobDone
			for _, c := range closers {
				c.Close()
			}

			var guesses, locked uint64
			for _, byOutcome := range st.Attempts {
				guesses += byOutcome[loginguard.OutcomeFailed]
				locked += byOutcome[loginguard.OutcomeLocked]
			}
			t.Logf("%d guesses checked in %v (fake), %d attempts refused unchecked; bob %d logins, %d refused",
				guesses, span, locked, bobLogins.Load(), bobRefused.Load())
			if max := uint64(span/time.Second) + 1; guesses > max {
				t.Errorf("%d guesses in %v, want at most %d (one per second)", guesses, span, max)
			}
			if guesses < 5 {
				t.Errorf("only %d guesses: the test, not the guard, held them back", guesses)
			}
			if locked == 0 {
				t.Error("no attempt was refused: the guessers did not press")
			}
			if tc.sources == 1 && (bobLogins.Load() < 3 || bobRefused.Load() > 0) {
				t.Errorf("bob: %d logins, %d refused", bobLogins.Load(), bobRefused.Load())
			}
		})
	}
}

// TestCapsKeepOtherServicesUp: with the SMTP and IMAP listeners at their
// caps (idle connections from several addresses), new SMTP and IMAP
// connections are refused at once (421, BYE), while /healthz, the
// peer-to-peer listener and an IMAP session logged in before keep working.
func TestCapsKeepOtherServicesUp(t *testing.T) {
	const capN = 20
	ls := startLive(t, map[string]string{
		"BMGATE_SMTP_MAX_CONNECTIONS": fmt.Sprint(capN), "BMGATE_IMAP_MAX_CONNECTIONS": fmt.Sprint(capN),
	}, nil)
	session, err := ls.imapClient("127.0.0.2")
	if err != nil {
		t.Fatal(err)
	}
	defer session.Close()
	if err := session.Login("alice", alicePassword).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := session.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	// Fill both listeners with idle connections from 127.0.0.40-43.
	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	for i := range 2*capN - 1 {
		addr := ls.smtp
		if i >= capN {
			addr = ls.imap
		}
		c, err := dialFrom(fmt.Sprintf("127.0.0.%d", 40+i%4), addr)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 512)
		if n, err := c.Read(buf); err != nil || !(strings.HasPrefix(string(buf[:n]), "220") || strings.HasPrefix(string(buf[:n]), "* OK")) {
			t.Fatalf("idle connection %d greeted %q, %v", i, buf[:n], err)
		}
		idle = append(idle, c)
	}
	for _, l := range ls.s.smtp.Stats().Listeners {
		if l.Open != capN {
			t.Fatalf("SMTP listener %s: %d open", l.Name, l.Open)
		}
	}
	// Full: refused at once, with a word.
	for addr, want := range map[string]string{ls.smtp: "421 4.7.0 Too many connections", ls.imap: "* BYE [UNAVAILABLE] Too many connections"} {
		c, err := dialFrom("127.0.0.50", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 512)
		n, _ := io.ReadAtLeast(c, buf, len(want))
		c.Close()
		if !strings.HasPrefix(string(buf[:n]), want) {
			t.Errorf("over the cap: %q, want %q", buf[:n], want)
		}
	}

	// The admin listener answers.
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + ls.admin + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok\n" {
		t.Errorf("/healthz: %d %q", resp.StatusCode, body)
	}
	resp, err = client.Get("http://" + ls.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`bmgate_listener_connections{listener="smtp"} 20`, `bmgate_listener_refused_total{listener="imap",reason="cap"} 1`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// A peer connects and completes the handshake.
	peerStore := openTestStore(t, testEnv(t))
	peer, err := node.New(node.Config{Network: params.Testnet, Peers: []string{ls.p2p}, MaxOutbound: -1,
		Inventory: peerStore, KnownNodes: peerStore, AllowPrivateAddrs: true})
	if err != nil {
		t.Fatal(err)
	}
	pctx, pcancel := context.WithCancel(context.Background())
	defer pcancel()
	if err := peer.Start(pctx); err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	waitUntil(t, 30*time.Second, func() bool {
		for _, p := range ls.s.node.Peers() {
			if p.Inbound && p.Established {
				return true
			}
		}
		return false
	})

	// The session logged in before the flood works.
	if err := session.Noop().Wait(); err != nil {
		t.Errorf("NOOP of the logged-in session: %v", err)
	}
	if _, err := session.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait(); err != nil {
		t.Errorf("STATUS of the logged-in session: %v", err)
	}
}
