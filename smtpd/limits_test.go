package smtpd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/bmgate/bmgate/mailmap"
	"github.com/bmgate/bmgate/mailmap/loginguard"
)

// guardStore opens a SQLite store for a login guard, closed when t ends.
func guardStore(t *testing.T) mailmap.Store {
	t.Helper()
	st, err := mailmap.Open(context.Background(), filepath.Join(t.TempDir(), "guard.db"), mailmap.Options{SecretKey: bytes.Repeat([]byte{5}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// TestLoginGuarded: each failure makes the next attempt from the address,
// or on the account, wait longer (before the password is checked, holding
// no hash memory); a success clears neither; acting as another user is a
// failure.
func TestLoginGuarded(t *testing.T) {
	const base = 60 * time.Millisecond
	g := loginguard.New(loginguard.Config{Store: guardStore(t), BaseDelay: base})
	h := start(t, "starttls", func(c *Config) { c.Guard = g })
	c := dial(t, h, true)
	// A failure's lock runs from when the guard recorded it, which is
	// after the client sent that attempt and before it read the answer.
	// So the bound that always holds for attempt i is measured from the
	// start of attempt i-1 (measured from attempt i's own start it may
	// fall short by the time the answer took to travel).
	var prev time.Time
	for i := 1; i <= 3; i++ {
		began := time.Now()
		err := c.Auth(sasl.NewPlainClient("", alice.Name, "wrong-password"))
		wantCode(t, err, 535, smtp.EnhancedCode{5, 7, 8})
		// Attempt i waits out the lock of failure i-1: base·2^(i-2).
		if want := g.Delay(i - 1); i > 1 && time.Since(prev) < want {
			t.Errorf("attempt %d answered %v after attempt %d began, want at least %v", i, time.Since(prev), i-1, want)
		}
		prev = began
	}
	if w := g.Stats().Waited; w < 2 {
		t.Errorf("%d attempts waited for their turn, want attempts 2 and 3", w)
	}
	// Another connection, another account, same address: the address's lock.
	c2 := dial(t, h, true)
	err := c2.Auth(sasl.NewPlainClient("", "nobody", "wrong-password"))
	wantCode(t, err, 535, smtp.EnhancedCode{5, 7, 8})
	if took := time.Since(prev); took < g.Delay(3) {
		t.Errorf("failure from a new connection answered %v after the third began, want at least %v", took, g.Delay(3))
	}
	// The right password still gets in once its turn comes.
	login(t, c)
	// Acting as another user is a failed login, and alice's success
	// cleared nothing: the address waits for its fifth failure's lock.
	c4 := dial(t, h, true)
	began := time.Now()
	err = c4.Auth(sasl.NewPlainClient("admin", "bob", alicePass))
	wantCode(t, err, 535, smtp.EnhancedCode{5, 7, 8})
	c5 := dial(t, h, true)
	err = c5.Auth(sasl.NewPlainClient("", "carol", "wrong-password"))
	wantCode(t, err, 535, smtp.EnhancedCode{5, 7, 8})
	if took := time.Since(began); took < g.Delay(5) {
		t.Errorf("after a success the address waited %v from the fifth failure's start, want its count kept (%v)", took, g.Delay(5))
	}
	st := g.Stats().Attempts["smtp"]
	if st[loginguard.OutcomeFailed] != 6 || st[loginguard.OutcomeOK] != 1 {
		t.Errorf("guard stats %+v", st)
	}
}

// TestLoginLocked: an attempt whose turn does not come within the guard's
// wait is refused with a temporary 454, and the password is not checked.
func TestLoginLocked(t *testing.T) {
	g := loginguard.New(loginguard.Config{Store: guardStore(t), BaseDelay: time.Hour, MaxWait: 20 * time.Millisecond})
	h := start(t, "starttls", func(c *Config) { c.Guard = g })
	c := dial(t, h, true)
	wantCode(t, c.Auth(sasl.NewPlainClient("", alice.Name, "wrong-password")), 535, smtp.EnhancedCode{5, 7, 8})
	h.auth.mu.Lock()
	calls := h.auth.calls
	h.auth.mu.Unlock()
	se := wantCode(t, c.Auth(sasl.NewPlainClient("", alice.Name, alicePass)), 454, smtp.EnhancedCode{4, 7, 0})
	if !strings.Contains(se.Message, "Too many failed logins") {
		t.Errorf("reply %q", se.Message)
	}
	h.auth.mu.Lock()
	defer h.auth.mu.Unlock()
	if h.auth.calls != calls {
		t.Error("password checked for a locked attempt")
	}
}

// rawSMTP is a line-level client for what smtp.Client will not send.
type rawSMTP struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dialRaw(t *testing.T, h *harness) *rawSMTP {
	t.Helper()
	conn, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	c := &rawSMTP{t: t, conn: conn, r: bufio.NewReader(conn)}
	c.reply() // greeting
	return c
}

// reply reads one (possibly multi-line) reply and returns its last line.
func (c *rawSMTP) reply() string {
	c.t.Helper()
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("reading reply: %v (got %q)", err, line)
		}
		if len(line) < 4 || line[3] != '-' {
			return strings.TrimRight(line, "\r\n")
		}
	}
}

func (c *rawSMTP) cmd(line string) string {
	c.t.Helper()
	if _, err := c.conn.Write([]byte(line + "\r\n")); err != nil {
		c.t.Fatal(err)
	}
	return c.reply()
}

// TestBadSASL: a malformed SASL message is an authentication failure
// (535 5.7.8), not a temporary error.
func TestBadSASL(t *testing.T) {
	h := start(t, "plain", func(c *Config) { c.AllowInsecureAuth = true })
	c := dialRaw(t, h)
	c.cmd("EHLO client.test")
	for _, ir := range []string{
		base64.StdEncoding.EncodeToString([]byte("no separators at all")),
		base64.StdEncoding.EncodeToString([]byte("a\x00b\x00c\x00d")),
	} {
		if got := c.cmd("AUTH PLAIN " + ir); !strings.HasPrefix(got, "535 5.7.8") {
			t.Errorf("AUTH PLAIN with a malformed message: %q, want 535 5.7.8", got)
		}
	}
	if got := c.cmd("AUTH LOGIN"); !strings.HasPrefix(got, "334 ") {
		t.Fatalf("AUTH LOGIN: %q", got)
	}
	if got := c.cmd("*"); !strings.HasPrefix(got, "501") {
		t.Errorf("cancelled AUTH: %q", got)
	}
}

// TestLongLineInData: a line over the limit inside DATA gets a permanent
// 500 5.5.2 (a retry would send the same line) and the connection ends.
func TestLongLineInData(t *testing.T) {
	h := start(t, "plain", func(c *Config) { c.AllowInsecureAuth = true })
	c := dialRaw(t, h)
	c.cmd("EHLO client.test")
	ir := base64.StdEncoding.EncodeToString([]byte("\x00" + alice.Name + "\x00" + alicePass))
	if got := c.cmd("AUTH PLAIN " + ir); !strings.HasPrefix(got, "235") {
		t.Fatalf("AUTH: %q", got)
	}
	c.cmd("MAIL FROM:<" + aliceBM + "@" + domain + ">")
	c.cmd("RCPT TO:<" + bobBM + "@" + domain + ">")
	if got := c.cmd("DATA"); !strings.HasPrefix(got, "354") {
		t.Fatalf("DATA: %q", got)
	}
	go c.conn.Write([]byte("Subject: x\r\n\r\n" + strings.Repeat("y", 200<<10) + "\r\n.\r\n"))
	if got := c.reply(); !strings.HasPrefix(got, "500 5.5.2") {
		t.Errorf("a 200 KB line: %q, want 500 5.5.2", got)
	}
	if line, err := c.r.ReadString('\n'); err == nil {
		t.Errorf("connection still open, got %q", line)
	}
}

// TestConnectionCap: a listener at its cap answers new connections 421 at
// once; a closed connection frees its slot.
func TestConnectionCap(t *testing.T) {
	h := start(t, "plain", func(c *Config) { c.MaxConns = 2 })
	a := dialRaw(t, h)
	dialRaw(t, h)
	conn, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	line, _ := bufio.NewReader(conn).ReadString('\n')
	if !strings.HasPrefix(line, "421 4.7.0 Too many connections") {
		t.Fatalf("over the cap: %q", line)
	}
	a.cmd("QUIT")
	waitSessions(t, h.s, 1)
	dialRaw(t, h) // greeted with 220
	st := h.s.Stats().Listeners
	if len(st) != 1 || st[0].Name != "smtp" || st[0].Max != 2 || st[0].Open != 2 || st[0].RefusedCap != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestLoginTimeout: a connection that does not log in is closed after
// LoginTimeout, however it keeps talking; a logged-in one is not.
func TestLoginTimeout(t *testing.T) {
	h := start(t, "plain", func(c *Config) {
		c.AllowInsecureAuth = true
		c.LoginTimeout = 300 * time.Millisecond
	})
	idle := dialRaw(t, h)
	idle.cmd("EHLO client.test")
	busy := dialRaw(t, h)
	authed := dialRaw(t, h)
	authed.cmd("EHLO client.test")
	ir := base64.StdEncoding.EncodeToString([]byte("\x00" + alice.Name + "\x00" + alicePass))
	if got := authed.cmd("AUTH PLAIN " + ir); !strings.HasPrefix(got, "235") {
		t.Fatalf("AUTH: %q", got)
	}
	began := time.Now()
	if got := idle.reply(); !strings.HasPrefix(got, "421 4.4.2") {
		t.Errorf("idle unauthenticated connection: %q", got)
	}
	// NOOPs do not keep an unauthenticated connection alive.
	for {
		busy.conn.Write([]byte("NOOP\r\n"))
		line, err := busy.r.ReadString('\n')
		if err != nil || strings.HasPrefix(line, "421") {
			break
		}
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("closed after %v", took)
	}
	if got := authed.cmd("NOOP"); !strings.HasPrefix(got, "250") {
		t.Errorf("logged-in connection after the login timeout: %q", got)
	}
	var timeouts uint64
	for _, l := range h.s.Stats().Listeners {
		timeouts += l.LoginTimeouts
	}
	if timeouts != 2 {
		t.Errorf("%d login timeouts counted, want 2", timeouts)
	}
}
