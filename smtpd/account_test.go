package smtpd

import (
	"bytes"
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/bmgate/bmgate/mailmap"
	"github.com/bmgate/bmgate/mailmap/storetest"
)

// wantHungUp checks that the server closed the connection: the next
// command gets no reply at all.
func wantHungUp(t *testing.T, h *harness, c *smtp.Client) {
	t.Helper()
	err := c.Noop()
	var se *smtp.SMTPError
	if err == nil || errors.As(err, &se) {
		t.Fatalf("NOOP after the account was disabled: %v, want the connection closed", err)
	}
	if n := h.s.Sessions(); n != 0 {
		t.Errorf("%d sessions still open", n)
	}
}

// TestDisabledAccountEndsSession: a session logged in before its account
// was disabled (or deleted) is refused at its next MAIL, RCPT or DATA with a
// 421 that says why, and the connection is closed.
func TestDisabledAccountEndsSession(t *testing.T) {
	for _, mode := range []string{"starttls", "tls"} {
		for _, next := range []string{"MAIL", "RCPT", "DATA"} {
			for _, state := range []error{mailmap.ErrDisabled, mailmap.ErrNotFound} {
				t.Run(mode+"/"+next+"/"+state.Error(), func(t *testing.T) {
					h := start(t, mode, nil)
					var c *smtp.Client
					if mode == "tls" {
						var err error
						if c, err = smtp.DialTLS(h.addr, h.client); err != nil {
							t.Fatal(err)
						}
						c.CommandTimeout, c.SubmissionTimeout = 10*time.Second, 10*time.Second
						t.Cleanup(func() { c.Close() })
					} else {
						c = dial(t, h, true)
					}
					login(t, c)
					if next != "MAIL" {
						if err := c.Mail(aliceBM+"@"+domain, nil); err != nil {
							t.Fatal(err)
						}
					}
					if next == "DATA" {
						if err := c.Rcpt(bobBM+"@"+domain, nil); err != nil {
							t.Fatal(err)
						}
					}
					h.auth.setState(alice.ID, state)
					var err error
					switch next {
					case "MAIL":
						err = c.Mail(aliceBM+"@"+domain, nil)
					case "RCPT":
						err = c.Rcpt(bobBM+"@"+domain, nil)
					case "DATA":
						err = send(c, testMessage(""))
					}
					se := wantCode(t, err, 421, smtp.EnhancedCode{4, 7, 0})
					want := "disabled"
					if state == mailmap.ErrNotFound {
						want = "no longer exists"
					}
					if !strings.Contains(se.Message, want) {
						t.Errorf("reply %q does not say %q", se.Message, want)
					}
					wantHungUp(t, h, c)
					h.sub.mu.Lock()
					n := len(h.sub.submissions)
					h.sub.mu.Unlock()
					if n != 0 {
						t.Errorf("%d messages submitted", n)
					}
				})
			}
		}
	}
}

// TestAccountCheckFailureIsTemporary: when the account check itself fails
// (the database is down), the command gets a temporary error and the
// session goes on.
func TestAccountCheckFailureIsTemporary(t *testing.T) {
	h := start(t, "starttls", nil)
	c := dial(t, h, true)
	login(t, c)
	h.auth.setState(alice.ID, errors.New("database at 10.0.0.5 is down"))
	wantCode(t, c.Mail(aliceBM+"@"+domain, nil), 451, smtp.EnhancedCode{4, 3, 0})
	h.auth.setState(alice.ID, nil)
	if err := c.Mail(aliceBM+"@"+domain, nil); err != nil {
		t.Fatalf("MAIL once the check works again: %v", err)
	}
	if !strings.Contains(h.logs.String(), "10.0.0.5") {
		t.Error("the cause of the failed check was not logged")
	}
}

// TestDisabledAccountEndsSessionStore: with the real store as the
// Authenticator, disabling the account through a second Store on the same
// database (the CLI, another process) refuses the open session's next
// command, on SQLite and on PostgreSQL.
func TestDisabledAccountEndsSessionStore(t *testing.T) {
	backends := map[string]func(t *testing.T) string{
		"sqlite":   func(t *testing.T) string { return filepath.Join(t.TempDir(), "mail.db") },
		"postgres": func(t *testing.T) string { return storetest.PostgresDSN(t) },
	}
	for name, dsn := range backends {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			d := dsn(t)
			open := func() mailmap.Store {
				st, err := mailmap.Open(ctx, d, mailmap.Options{SecretKey: bytes.Repeat([]byte{9}, 32)})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { st.Close() })
				return st
			}
			served, cli := open(), open()
			u, err := cli.CreateUser(ctx, alice.Name, alicePass)
			if err != nil {
				t.Fatal(err)
			}
			h := startAuth(t, "starttls", nil, served)
			c := dial(t, h, true)
			if err := c.Auth(sasl.NewPlainClient("", alice.Name, alicePass)); err != nil {
				t.Fatalf("AUTH PLAIN: %v", err)
			}
			if err := c.Noop(); err != nil {
				t.Fatal(err)
			}
			gen, err := served.AccountsGeneration(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := cli.SetDisabled(ctx, u.ID, true); err != nil {
				t.Fatal(err)
			}
			// PostgreSQL: the change reaches the serving store with its
			// notification.
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
				g, err := served.AccountsGeneration(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if g != gen {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the serving store never saw the change")
				}
			}
			wantCode(t, c.Mail(aliceBM+"@"+domain, nil), 421, smtp.EnhancedCode{4, 7, 0})
			wantHungUp(t, h, c)
		})
	}
}

// TestDisabledTrustedUserEndsSession: the trusted local listener (no TLS,
// no AUTH) ends the session the same way when its user is disabled.
func TestDisabledTrustedUserEndsSession(t *testing.T) {
	auth := &fakeAuth{}
	s := New(auth, &fakeSubmitter{}, Config{Domain: domain, Trusted: &TrustedLocal{User: scripts}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.ServeTrusted(ln) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		if err := <-served; err != nil {
			t.Errorf("ServeTrusted = %v", err)
		}
	}()
	c, err := smtp.Dial(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.CommandTimeout = 10 * time.Second
	if err := c.Mail(carolBM+"@"+domain, nil); err != nil {
		t.Fatalf("MAIL: %v", err)
	}
	auth.setState(scripts.ID, mailmap.ErrDisabled)
	wantCode(t, c.Rcpt(bobBM+"@"+domain, nil), 421, smtp.EnhancedCode{4, 7, 0})
	if err := c.Noop(); err == nil {
		t.Fatal("NOOP answered after the trusted user was disabled; want the connection closed")
	}
	if n := s.Sessions(); n != 0 {
		t.Errorf("%d sessions still open", n)
	}
}
