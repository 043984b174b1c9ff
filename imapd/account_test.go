package imapd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bmgate/bmgate/mailmap"
	"github.com/bmgate/bmgate/mailmap/storetest"
)

// wantBye sends one command and checks that the server answers with an
// untagged BYE that says why (after IDLE's continuation, if any), then
// closes the connection without a tagged reply.
func wantBye(t *testing.T, r *rawClient, why, command string) {
	t.Helper()
	r.n++
	tag := fmt.Sprintf("R%d", r.n)
	if _, err := fmt.Fprintf(r.conn, "%s %s\r\n", tag, command); err != nil {
		t.Fatal(err)
	}
	l := r.line()
	if strings.HasPrefix(l, "+ ") && strings.HasPrefix(command, "IDLE") {
		l = r.line()
	}
	if !strings.HasPrefix(l, "* BYE ") || !strings.Contains(l, why) {
		t.Fatalf("%s after the account changed: %q, want * BYE %s", command, l, why)
	}
	rest, err := r.r.ReadString('\n')
	if !errors.Is(err, io.EOF) {
		t.Fatalf("after BYE: %q, %v; want the connection closed", rest, err)
	}
}

// waitSessions waits until the server has no session left.
func waitSessions(t *testing.T, srv *Server) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); srv.Sessions() != 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions still open", srv.Sessions())
		}
	}
}

// TestDisabledAccountEndsSession: a session logged in before its account
// was disabled or deleted through another Store on the same database (the
// CLI, another process) gets BYE at its next command, whichever it is, and
// is closed. SQLite runs every command; PostgreSQL, where the change
// arrives by notification, a few.
func TestDisabledAccountEndsSession(t *testing.T) {
	type step struct {
		name   string
		setup  []string // commands that must succeed first
		cmd    string
		delete bool // delete the user instead of disabling it
	}
	sel := []string{"SELECT INBOX"}
	steps := []step{
		{name: "NOOP", cmd: "NOOP"},
		{name: "NOOPSelected", setup: sel, cmd: "NOOP"},
		{name: "SELECT", cmd: "SELECT INBOX"},
		{name: "EXAMINE", cmd: "EXAMINE INBOX"},
		{name: "LIST", cmd: `LIST "" "*"`},
		{name: "STATUS", cmd: "STATUS INBOX (MESSAGES)"},
		{name: "CREATE", cmd: "CREATE Projects"},
		{name: "DELETE", cmd: "DELETE Archive"},
		{name: "RENAME", cmd: "RENAME Archive Old"},
		{name: "SUBSCRIBE", cmd: "SUBSCRIBE INBOX"},
		{name: "NAMESPACE", cmd: "NAMESPACE"},
		{name: "APPEND", cmd: "APPEND INBOX {3+}\r\nx\r\n"},
		{name: "FETCH", setup: sel, cmd: "FETCH 1:* (FLAGS)"},
		{name: "UIDSEARCH", setup: sel, cmd: "UID SEARCH ALL"},
		{name: "STORE", setup: sel, cmd: `STORE 1 +FLAGS (\Seen)`},
		{name: "COPY", setup: sel, cmd: "COPY 1 Archive"},
		{name: "MOVE", setup: sel, cmd: "MOVE 1 Archive"},
		{name: "EXPUNGE", setup: sel, cmd: "EXPUNGE"},
		{name: "CLOSE", setup: sel, cmd: "CLOSE"},
		{name: "UNSELECT", setup: sel, cmd: "UNSELECT"},
		{name: "IDLE", setup: sel, cmd: "IDLE"},
		{name: "Deleted", setup: sel, cmd: "FETCH 1 (FLAGS)", delete: true},
	}
	backends := []struct {
		name  string
		dsn   func(t *testing.T) string
		steps map[string]bool // nil: all
	}{
		{"sqlite", func(t *testing.T) string { return filepath.Join(t.TempDir(), "mail.db") }, nil},
		{"postgres", func(t *testing.T) string { return storetest.PostgresDSN(t) },
			map[string]bool{"NOOP": true, "FETCH": true, "IDLE": true, "Deleted": true}},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			for _, st := range steps {
				if b.steps != nil && !b.steps[st.name] {
					continue
				}
				t.Run(st.name, func(t *testing.T) {
					ctx := context.Background()
					dsn := b.dsn(t)
					open := func() mailmap.Store {
						s, err := mailmap.Open(ctx, dsn, mailmap.Options{SecretKey: bytes.Repeat([]byte{7}, 32)})
						if err != nil {
							t.Fatal(err)
						}
						t.Cleanup(func() { s.Close() })
						return s
					}
					served, cli := open(), open()
					u, err := cli.CreateUser(ctx, testUser, testPass)
					if err != nil {
						t.Fatal(err)
					}
					e := serveStore(t, served, u, Config{AllowInsecureAuth: true}, false)
					e.deliver("INBOX", mkMail("bob@example.test", "alice@example.test", "Hello", "x"))
					r := e.rawLogin()
					r.ok("LIST \"\" INBOX") // the account check has an answer cached
					for _, c := range st.setup {
						r.ok("%s", c)
					}
					gen, err := served.AccountsGeneration(ctx)
					if err != nil {
						t.Fatal(err)
					}
					why := "Account disabled"
					if st.delete {
						why = "Account no longer exists"
						err = cli.DeleteUser(ctx, u.ID)
					} else {
						err = cli.SetDisabled(ctx, u.ID, true)
					}
					if err != nil {
						t.Fatal(err)
					}
					waitGeneration(t, served, gen)
					wantBye(t, r, why, st.cmd)
					waitSessions(t, e.srv)
				})
			}
		})
	}
}

// waitGeneration waits until the store has seen an accounts change
// (PostgreSQL: its notification arrived).
func waitGeneration(t *testing.T, s mailmap.Store, from uint64) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		g, err := s.AccountsGeneration(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if g != from {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the serving store never saw the accounts change")
		}
	}
}

// TestEnabledAccountKeepsSession: changes to other accounts, or to this
// one that leave it enabled, do not end a session.
func TestEnabledAccountKeepsSession(t *testing.T) {
	e := newEnv(t, Config{})
	r := e.rawLogin()
	r.ok("SELECT INBOX")
	ctx := context.Background()
	if _, err := e.store.CreateUser(ctx, "bob", "bob's password"); err != nil {
		t.Fatal(err)
	}
	if err := e.store.SetQuota(ctx, e.user.ID, 1<<30); err != nil {
		t.Fatal(err)
	}
	r.ok("NOOP")
	r.ok("FETCH 1:* (FLAGS)")
	r.ok("LOGOUT")
}

// TestDisabledAccountEndsRunningIdle: an IDLE that started while the
// account was enabled (selected or not) ends with BYE when the account is
// disabled, without waiting for a command that never comes.
func TestDisabledAccountEndsRunningIdle(t *testing.T) {
	defer func(d time.Duration) { idleAccountCheck = d }(idleAccountCheck)
	idleAccountCheck = 20 * time.Millisecond
	for _, selectFirst := range []bool{true, false} {
		t.Run(fmt.Sprintf("selected=%v", selectFirst), func(t *testing.T) {
			e := newEnv(t, Config{})
			r := e.rawLogin()
			if selectFirst {
				r.ok("SELECT INBOX")
			}
			r.n++
			if _, err := fmt.Fprintf(r.conn, "R%d IDLE\r\n", r.n); err != nil {
				t.Fatal(err)
			}
			if l := r.line(); !strings.HasPrefix(l, "+ ") {
				t.Fatalf("IDLE answered %q", l)
			}
			if err := e.store.SetDisabled(context.Background(), e.user.ID, true); err != nil {
				t.Fatal(err)
			}
			if l := r.line(); !strings.HasPrefix(l, "* BYE ") || !strings.Contains(l, "Account disabled") {
				t.Fatalf("idling session got %q, want * BYE Account disabled", l)
			}
			waitSessions(t, e.srv)
		})
	}
}
