package imapd

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// wire is a line-level IMAP client that sends exactly what it is told.
type wire struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func newWire(t *testing.T, conn net.Conn) *wire {
	t.Helper()
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	w := &wire{t: t, conn: conn, r: bufio.NewReader(conn)}
	if g := w.line(); !strings.HasPrefix(g, "* OK") {
		t.Fatalf("greeting %q", g)
	}
	return w
}

func (w *wire) send(s string) {
	w.t.Helper()
	if _, err := io.WriteString(w.conn, s); err != nil {
		w.t.Fatal(err)
	}
}

func (w *wire) line() string {
	w.t.Helper()
	l, err := w.r.ReadString('\n')
	if err != nil {
		w.t.Fatalf("read: %v (got %q)", err, l)
	}
	return strings.TrimRight(l, "\r\n")
}

// until reads lines up to the one starting with prefix and returns it.
func (w *wire) until(prefix string) string {
	w.t.Helper()
	for {
		if l := w.line(); strings.HasPrefix(l, prefix) {
			return l
		}
	}
}

// closed checks that the server hung up.
func (w *wire) closed() {
	w.t.Helper()
	for {
		l, err := w.r.ReadString('\n')
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "reset") {
				return
			}
			w.t.Fatalf("waiting for the close: %v", err)
		}
		if !strings.HasPrefix(l, "* ") {
			w.t.Fatalf("after the hang-up: %q", l)
		}
	}
}

// frontModes serves the test store plain (insecure auth), over implicit TLS
// and over STARTTLS, and returns a function that connects and, for
// STARTTLS, upgrades.
func frontModes(t *testing.T, cfg Config) map[string]func() *wire {
	serverTLS, clientTLS := selfSignedTLS(t)
	st, u := openStore(t)
	plainCfg := cfg
	plainCfg.AllowInsecureAuth = true
	plain := serveStore(t, st, u, plainCfg, false)
	tlsCfg := cfg
	tlsCfg.TLSConfig = serverTLS
	implicit := serveStore(t, st, u, tlsCfg, true)
	starttls := serveStore(t, st, u, tlsCfg, false)
	dial := func(addr string) net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	return map[string]func() *wire{
		"plain": func() *wire { return newWire(t, dial(plain.addr)) },
		"tls":   func() *wire { return newWire(t, tls.Client(dial(implicit.addr), clientTLS)) },
		"starttls": func() *wire {
			w := newWire(t, dial(starttls.addr))
			w.send("s STARTTLS\r\n")
			if l := w.until("s "); !strings.HasPrefix(l, "s OK") {
				t.Fatalf("STARTTLS: %q", l)
			}
			tc := tls.Client(w.conn, clientTLS)
			tc.SetDeadline(time.Now().Add(20 * time.Second))
			return &wire{t: t, conn: tc, r: bufio.NewReader(tc)}
		},
	}
}

// TestLiteralTooBig: a literal over imapserver's limit for buffered
// literals is answered NO [TOOBIG] at once, never left unanswered; when
// imapserver already read part of the command (or the client sends the
// data without waiting), the answer is followed by BYE.
func TestLiteralTooBig(t *testing.T) {
	for mode, connect := range frontModes(t, Config{}) {
		t.Run(mode, func(t *testing.T) {
			w := connect()
			w.send("a LOGIN {5000}\r\n")
			if l := w.until("a "); !strings.HasPrefix(l, "a NO [TOOBIG]") {
				t.Fatalf("LOGIN {5000}: %q", l)
			}
			// The connection goes on: the client sent no data.
			w.send(fmt.Sprintf("b LOGIN {%d}\r\n", len(testUser)))
			if l := w.line(); !strings.HasPrefix(l, "+") {
				t.Fatalf("LOGIN {%d}: %q", len(testUser), l)
			}
			w.send(fmt.Sprintf("%s {%d}\r\n", testUser, len(testPass)))
			if l := w.line(); !strings.HasPrefix(l, "+") {
				t.Fatalf("password literal: %q", l)
			}
			w.send(testPass + "\r\n")
			if l := w.until("b "); !strings.HasPrefix(l, "b OK") {
				t.Fatalf("LOGIN with literals: %q", l)
			}
			// Logged in: SELECT with a huge mailbox name.
			w.send("c SELECT {100000}\r\n")
			if l := w.until("c "); !strings.HasPrefix(l, "c NO [TOOBIG]") {
				t.Fatalf("SELECT {100000}: %q", l)
			}
			// APPEND: the mailbox name is buffered, the message is not.
			w.send("d APPEND {5000}\r\n")
			if l := w.until("d "); !strings.HasPrefix(l, "d NO [TOOBIG]") {
				t.Fatalf("APPEND {5000} (mailbox): %q", l)
			}
			msg := "Subject: big\r\n\r\n" + strings.Repeat("0123456789abcde\r\n", 600) // 10 KiB
			w.send(fmt.Sprintf("e APPEND INBOX {%d}\r\n", len(msg)))
			if l := w.line(); !strings.HasPrefix(l, "+") {
				t.Fatalf("APPEND of 10 KiB: %q", l)
			}
			w.send(msg + "\r\n")
			if l := w.until("e "); !strings.HasPrefix(l, "e OK") {
				t.Fatalf("APPEND of 10 KiB: %q", l)
			}
			w.send("f APPEND INBOX {20000000}\r\n") // over APPENDLIMIT: imapserver's answer
			if l := w.until("f "); !strings.HasPrefix(l, "f NO [TOOBIG]") {
				t.Fatalf("APPEND over the limit: %q", l)
			}
			w.send("g NOOP\r\n")
			if l := w.until("g "); !strings.HasPrefix(l, "g OK") {
				t.Fatalf("NOOP after the refusals: %q", l)
			}
			// A second literal of a command over the limit: imapserver has
			// read the first part, so the answer ends the connection.
			w.send("h RENAME {3}\r\n")
			w.line()
			w.send("abc {9000}\r\n")
			if l := w.until("h "); !strings.HasPrefix(l, "h NO [TOOBIG]") {
				t.Fatalf("second literal: %q", l)
			}
			if l := w.line(); !strings.HasPrefix(l, "* BYE") {
				t.Fatalf("after the second literal: %q", l)
			}
			w.closed()
		})
	}
}

// TestLiteralTooBigUnauthenticated: the cases of an attacker who has not
// logged in: a non-synchronising literal (its data follows at once), a
// line longer than the front holds, and an absurd size.
func TestLiteralTooBigUnauthenticated(t *testing.T) {
	e := newEnv(t, Config{})
	for name, c := range map[string]struct {
		send string
		bye  bool
	}{
		"non-synchronising": {"a LOGIN {5000+}\r\n" + strings.Repeat("x", 5000) + " y\r\n", true},
		"long line":         {"a LOGIN " + strings.Repeat("x", 3*maxLine) + " {5000}\r\n", true},
		"absurd size":       {"a LOGIN {99999999999999999999999}\r\n", false},
		"literal8":          {"a LOGIN ~{5000}\r\n", false},
	} {
		t.Run(name, func(t *testing.T) {
			conn, err := net.Dial("tcp", e.addr)
			if err != nil {
				t.Fatal(err)
			}
			w := newWire(t, conn)
			w.send(c.send)
			if l := w.until("a "); !strings.HasPrefix(l, "a NO [TOOBIG]") {
				t.Fatalf("answer %q", l)
			}
			if c.bye {
				if l := w.line(); !strings.HasPrefix(l, "* BYE") {
					t.Fatalf("after the refusal: %q", l)
				}
				w.closed()
				return
			}
			w.send("b CAPABILITY\r\n")
			if l := w.until("b "); !strings.HasPrefix(l, "b OK") {
				t.Fatalf("CAPABILITY after the refusal: %q", l)
			}
		})
	}
	if n := e.srv.Stats().LiteralRefusals; n != 4 {
		t.Errorf("%d literal refusals counted, want 4", n)
	}
}

// TestAuthenticateMalformed: AUTHENTICATE data that is not base64 gets a
// tagged BAD (RFC 9051 §6.2.2), a PLAIN message without its separators an
// authentication failure; neither is a server bug, and the connection
// stays usable.
func TestAuthenticateMalformed(t *testing.T) {
	for mode, connect := range frontModes(t, Config{}) {
		t.Run(mode, func(t *testing.T) {
			w := connect()
			w.send("a AUTHENTICATE PLAIN !!!not-base64\r\n")
			if l := w.until("a "); !strings.HasPrefix(l, "a BAD") {
				t.Errorf("initial response not base64: %q", l)
			}
			w.send("b AUTHENTICATE PLAIN\r\n")
			if l := w.line(); !strings.HasPrefix(l, "+") {
				t.Fatalf("AUTHENTICATE PLAIN: %q", l)
			}
			w.send("!!!\r\n")
			if l := w.until("b "); !strings.HasPrefix(l, "b BAD") {
				t.Errorf("response not base64: %q", l)
			}
			w.send("c AUTHENTICATE PLAIN " + base64.StdEncoding.EncodeToString([]byte("no separators")) + "\r\n")
			if l := w.until("c "); !strings.HasPrefix(l, "c NO [AUTHENTICATIONFAILED]") {
				t.Errorf("malformed PLAIN message: %q", l)
			}
			w.send("d AUTHENTICATE PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00"+testUser+"\x00"+testPass)) + "\r\n")
			if l := w.until("d "); !strings.HasPrefix(l, "d OK") {
				t.Errorf("AUTHENTICATE PLAIN after the failures: %q", l)
			}
		})
	}
}

// TestStartTLSDiscardsPipelined: commands sent in the clear right after
// STARTTLS are not executed over TLS (CVE-2011-0411), and the TLS side
// does not greet a second time.
func TestStartTLSDiscardsPipelined(t *testing.T) {
	serverTLS, clientTLS := selfSignedTLS(t)
	st, u := openStore(t)
	e := serveStore(t, st, u, Config{TLSConfig: serverTLS}, false)
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	w := newWire(t, conn)
	w.send("a CAPABILITY\r\n")
	if l := w.until("* CAPABILITY"); !strings.Contains(l, "STARTTLS") || !strings.Contains(l, "LOGINDISABLED") {
		t.Fatalf("plain CAPABILITY %q", l)
	}
	w.until("a OK")
	w.send("s STARTTLS\r\nx LOGIN " + testUser + " \"" + testPass + "\"\r\n")
	if l := w.until("s "); !strings.HasPrefix(l, "s OK") {
		t.Fatalf("STARTTLS: %q", l)
	}
	tc := tls.Client(conn, clientTLS)
	tc.SetDeadline(time.Now().Add(20 * time.Second))
	tw := &wire{t: t, conn: tc, r: bufio.NewReader(tc)}
	tw.send("b CAPABILITY\r\n")
	l := tw.line()
	if !strings.HasPrefix(l, "* CAPABILITY") || strings.Contains(l, "STARTTLS") || strings.Contains(l, "LOGINDISABLED") || !strings.Contains(l, "AUTH=PLAIN") {
		t.Fatalf("CAPABILITY over TLS: %q (a second greeting, or the wrong server)", l)
	}
	if l := tw.line(); !strings.HasPrefix(l, "b OK") {
		t.Fatalf("after CAPABILITY: %q (the pipelined LOGIN ran?)", l)
	}
	tw.send("c NOOP\r\n")
	if l := tw.until("c "); !strings.HasPrefix(l, "c OK") {
		t.Fatal(l)
	}
	// Not logged in: the LOGIN sent in the clear was dropped.
	tw.send("d SELECT INBOX\r\n")
	if l := tw.until("d "); !strings.HasPrefix(l, "d BAD") && !strings.HasPrefix(l, "d NO") {
		t.Fatalf("SELECT before login over TLS: %q", l)
	}
	tw.send("e STARTTLS\r\n")
	if l := tw.until("e "); strings.HasPrefix(l, "e OK") {
		t.Fatalf("STARTTLS inside TLS: %q", l)
	}
	tw.send(fmt.Sprintf("f LOGIN %s %q\r\n", testUser, testPass))
	if l := tw.until("f "); !strings.HasPrefix(l, "f OK") {
		t.Fatalf("LOGIN over TLS: %q", l)
	}
}

// TestIMAPConnectionCap: a listener at its cap says BYE at once (plain) or
// closes (implicit TLS); a closed session frees its slot.
func TestIMAPConnectionCap(t *testing.T) {
	e := newEnv(t, Config{MaxConns: 2})
	a := e.raw()
	e.raw()
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if l, _ := bufio.NewReader(conn).ReadString('\n'); !strings.HasPrefix(l, "* BYE [UNAVAILABLE] Too many connections") {
		t.Fatalf("over the cap: %q", l)
	}
	a.cmd("LOGOUT")
	a.conn.Close()
	waitFor(t, func() bool { return e.srv.Stats().Listeners[0].Open == 1 })
	e.raw()
	st := e.srv.Stats().Listeners
	if len(st) != 1 || st[0].Name != "imap" || st[0].Max != 2 || st[0].Open != 2 || st[0].RefusedCap != 1 {
		t.Errorf("stats %+v", st)
	}
}

// waitFor polls a condition that an event (a connection closing on the
// server's side) makes true.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestIMAPLoginTimeout: a connection that does not log in gets a BYE after
// LoginTimeout however it keeps talking; a logged-in one stays.
func TestIMAPLoginTimeout(t *testing.T) {
	e := newEnv(t, Config{LoginTimeout: 300 * time.Millisecond})
	idle := e.raw()
	authed := e.rawLogin()
	if l := idle.line(); !strings.HasPrefix(l, "* BYE Autologout") {
		t.Fatalf("idle connection: %q", l)
	}
	busy := e.raw()
	for {
		busy.conn.Write([]byte("n NOOP\r\n"))
		l, err := busy.r.ReadString('\n')
		if err != nil || strings.HasPrefix(l, "* BYE") {
			break
		}
	}
	authed.ok("NOOP")
	if n := e.srv.Stats().Listeners[0].LoginTimeouts; n != 2 {
		t.Errorf("%d login timeouts counted, want 2", n)
	}
}
