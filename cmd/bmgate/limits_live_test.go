package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/metrics"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/bmgate/bmgate/mailmap"
	"github.com/bmgate/bmgate/mailmap/loginguard"
)

const (
	alicePassword = "alice's long password"
	bobPassword   = "bob's long password"
)

// liveServer is `bmgate serve` running in the test's process.
type liveServer struct {
	t                      *testing.T
	s                      *server
	smtp, imap, admin, p2p string
	aliceBM, bobBM         string
}

// startLive sets up alice and bob (an address each) with the CLI and runs
// serve with env's settings added, and clock as the login guard's clock
// (nil: the real one). It returns once every listener accepts.
func startLive(t *testing.T, extra map[string]string, clock loginguard.Clock) *liveServer {
	t.Helper()
	env := testEnv(t)
	ls := &liveServer{t: t, smtp: freePort(t), imap: freePort(t), admin: freePort(t), p2p: freePort(t)}
	for k, v := range map[string]string{
		"BMGATE_SMTP": ls.smtp, "BMGATE_IMAP": ls.imap, "BMGATE_ADMIN": ls.admin, "BMGATE_P2P": ls.p2p,
		"BMGATE_DOMAIN": "bm.test", "BMGATE_HOSTNAME": "localhost", "BMGATE_BOOTSTRAP": "false",
		"BMGATE_MAX_OUTBOUND": "0", "BMGATE_LOG_LEVEL": "warn",
	} {
		env[k] = v
	}
	for k, v := range extra {
		env[k] = v
	}
	mustRun(t, env, alicePassword+"\n", "user", "add", "alice")
	mustRun(t, env, bobPassword+"\n", "user", "add", "bob")
	ls.aliceBM = strings.TrimSpace(mustRun(t, env, "", "address", "new", "--user", "alice"))
	ls.bobBM = strings.TrimSpace(mustRun(t, env, "", "address", "new", "--user", "bob"))

	cfg, err := (&configFlags{set: configSource{}}).load(envMap(env))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		log = cfg.NewLogger(t.Output())
	}
	ctx, cancel := context.WithCancel(context.Background())
	store, err := cfg.OpenStore(ctx, log)
	if err != nil {
		t.Fatal(err)
	}
	ls.s = &server{cfg: cfg, log: log, store: store, started: time.Now(), clock: clock}
	if err := ls.s.build(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	inv := &invocation{cli: &cli{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard}}
	go func() { done <- ls.s.run(ctx, inv) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		store.Close()
		mailmap.SetPasswordHashLimit(0, 0)
	})
	for _, addr := range []string{ls.smtp, ls.imap, ls.admin, ls.p2p} {
		waitUntil(t, 20*time.Second, func() bool {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
			}
			return err == nil
		})
	}
	return ls
}

// waitUntil polls a condition that a server-side event makes true.
func waitUntil(t *testing.T, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not reached within %v", limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// dialFrom connects to addr from the loopback address src.
func dialFrom(src, addr string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err == nil {
		c.SetDeadline(time.Now().Add(60 * time.Second))
	}
	return c, err
}

func (ls *liveServer) smtpClient(src string) (*smtp.Client, error) {
	conn, err := dialFrom(src, ls.smtp)
	if err != nil {
		return nil, err
	}
	c := smtp.NewClient(conn)
	c.CommandTimeout, c.SubmissionTimeout = 60*time.Second, 60*time.Second
	if err := c.Hello("client.test"); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (ls *liveServer) imapClient(src string) (*imapclient.Client, error) {
	conn, err := dialFrom(src, ls.imap)
	if err != nil {
		return nil, err
	}
	c := imapclient.New(conn, nil)
	if err := c.WaitGreeting(); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// temporary reports a temporary refusal of a login (password hashing
// busy, or locked): a real client tries again later.
func temporary(err error) bool {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code/100 == 4
	}
	var ie *imap.Error
	return errors.As(err, &ie) && ie.Code == imap.ResponseCodeUnavailable
}

// memoryInUse is the memory the Go runtime holds from the OS (what RSS
// mostly is): mapped, less what it returned.
func memoryInUse() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64() - s[1].Value.Uint64()
}

// legitimateSession logs alice in over IMAP and sends a message over SMTP,
// retrying temporary refusals for up to a minute.
func (ls *liveServer) legitimateSession(src string) error {
	deadline := time.Now().Add(time.Minute)
	retry := func(what string, f func() error) error {
		for {
			err := f()
			if err == nil || !temporary(err) || time.Now().After(deadline) {
				if err != nil {
					return fmt.Errorf("%s: %w", what, err)
				}
				return nil
			}
		}
	}
	ic, err := ls.imapClient(src)
	if err != nil {
		return err
	}
	defer ic.Close()
	if err := retry("IMAP LOGIN", func() error { return ic.Login("alice", alicePassword).Wait() }); err != nil {
		return err
	}
	if _, err := ic.Select("INBOX", nil).Wait(); err != nil {
		return fmt.Errorf("SELECT: %w", err)
	}
	// A new connection for each try: go-smtp hangs up on a client after
	// three failed AUTH exchanges.
	var sc *smtp.Client
	defer func() {
		if sc != nil {
			sc.Close()
		}
	}()
	if err := retry("SMTP AUTH", func() error {
		if sc != nil {
			sc.Close()
		}
		var err error
		if sc, err = ls.smtpClient(src); err != nil {
			return err
		}
		return sc.Auth(sasl.NewPlainClient("", "alice", alicePassword))
	}); err != nil {
		return err
	}
	from, to := ls.aliceBM+"@bm.test", ls.bobBM+"@bm.test"
	msg := "From: " + from + "\r\nTo: " + to + "\r\nSubject: during the flood\r\n\r\nstill here\r\n"
	if err := sc.SendMail(from, []string{to}, strings.NewReader(msg)); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	return nil
}
