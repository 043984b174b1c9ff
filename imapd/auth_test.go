package imapd

import (
	"bufio"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"

	"github.com/bmgate/bmgate/mailmap/loginguard"
)

// TestPlainTCPAuthRefused: without TLS and without AllowInsecureAuth, the
// server advertises LOGINDISABLED and refuses LOGIN and AUTHENTICATE.
func TestPlainTCPAuthRefused(t *testing.T) {
	st, u := openStore(t)
	e := serveStore(t, st, u, Config{AllowInsecureAuth: false}, false)
	c := e.dial(nil)
	caps, err := c.Capability().Wait()
	if err != nil {
		t.Fatal(err)
	}
	if !caps.Has(imap.CapLoginDisabled) || caps.Has("AUTH=PLAIN") || caps.Has(imap.CapStartTLS) {
		t.Errorf("CAPABILITY over plain TCP without TLS config: %v", caps)
	}
	wantCode(t, "LOGIN over plain TCP", c.Login(testUser, testPass).Wait(), imap.ResponseCodePrivacyRequired)
	wantCode(t, "AUTHENTICATE PLAIN over plain TCP", c.Authenticate(sasl.NewPlainClient("", testUser, testPass)), imap.ResponseCodePrivacyRequired)
}

// TestStartTLS: STARTTLS with a self-signed certificate, then login; the
// same server refuses login before STARTTLS.
func TestStartTLS(t *testing.T) {
	serverTLS, clientTLS := selfSignedTLS(t)
	st, u := openStore(t)
	e := serveStore(t, st, u, Config{TLSConfig: serverTLS}, false)

	plain := e.dial(nil)
	caps, err := plain.Capability().Wait()
	if err != nil {
		t.Fatal(err)
	}
	if !caps.Has(imap.CapStartTLS) || !caps.Has(imap.CapLoginDisabled) {
		t.Errorf("plain CAPABILITY %v, want STARTTLS and LOGINDISABLED", caps)
	}
	wantCode(t, "LOGIN before STARTTLS", plain.Login(testUser, testPass).Wait(), imap.ResponseCodePrivacyRequired)

	c, err := imapclient.DialStartTLS(e.addr, &imapclient.Options{TLSConfig: clientTLS})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	caps, err = c.Capability().Wait()
	if err != nil {
		t.Fatal(err)
	}
	if caps.Has(imap.CapStartTLS) || caps.Has(imap.CapLoginDisabled) || !caps.Has("AUTH=PLAIN") {
		t.Errorf("CAPABILITY after STARTTLS %v", caps)
	}
	if err := c.Authenticate(sasl.NewPlainClient("", testUser, testPass)); err != nil {
		t.Fatalf("AUTHENTICATE PLAIN after STARTTLS: %v", err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Logout().Wait(); err != nil {
		t.Fatal(err)
	}
}

// TestImplicitTLS: ServeTLS (port 993 style), LOGIN allowed at once.
func TestImplicitTLS(t *testing.T) {
	serverTLS, clientTLS := selfSignedTLS(t)
	st, u := openStore(t)
	e := serveStore(t, st, u, Config{TLSConfig: serverTLS, MaxConnsPerIP: 1}, true)
	c, err := imapclient.DialTLS(e.addr, &imapclient.Options{TLSConfig: clientTLS})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(testUser, testPass).Wait(); err != nil {
		t.Fatalf("LOGIN over implicit TLS: %v", err)
	}
	// The per-IP limit works under TLS too: the second connection is
	// greeted with BYE, over TLS.
	conn, err := tls.Dial("tcp", e.addr, clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	line, _ := bufio.NewReader(conn).ReadString('\n')
	if !strings.HasPrefix(line, "* BYE [UNAVAILABLE]") {
		t.Errorf("second TLS connection greeted with %q", line)
	}
}

// TestLoginFailures: wrong passwords get [AUTHENTICATIONFAILED]; each
// failure makes the next attempt from the address wait longer (before the
// password is checked); a disabled account gets [CONTACTADMIN].
func TestLoginFailures(t *testing.T) {
	st, u := openStore(t)
	g := loginguard.New(loginguard.Config{Store: st.(loginguard.Store), BaseDelay: 40 * time.Millisecond})
	e := serveStore(t, st, u, Config{AllowInsecureAuth: true, Guard: g}, false)
	c := e.dial(nil)
	// A failure's lock runs from when the guard recorded it: after the
	// attempt began, before its answer arrived. So attempt i's answer comes
	// at least Delay(i-1) after attempt i-1 began (from attempt i's own
	// start it may fall short by the answer's travel time).
	var prev time.Time
	for i := 1; i <= 3; i++ {
		start := time.Now()
		err := c.Login(testUser, "wrong").Wait()
		wantCode(t, "LOGIN with a wrong password", err, imap.ResponseCodeAuthenticationFailed)
		if took, min := time.Since(prev), g.Delay(i-1); i > 1 && took < min {
			t.Errorf("attempt %d answered %v after attempt %d began, want at least %v", i, took, i-1, min)
		}
		prev = start
	}
	if w := g.Stats().Waited; w < 2 {
		t.Errorf("%d attempts waited for their turn, want attempts 2 and 3", w)
	}
	wantCode(t, "LOGIN of an unknown user", c.Login("nobody", "x").Wait(), imap.ResponseCodeAuthenticationFailed)
	wantCode(t, "AUTHENTICATE PLAIN with a wrong password", c.Authenticate(sasl.NewPlainClient("", testUser, "wrong")), imap.ResponseCodeAuthenticationFailed)
	wantCode(t, "AUTHENTICATE PLAIN as another user", c.Authenticate(sasl.NewPlainClient("admin", testUser, testPass)), imap.ResponseCodeAuthorizationFailed)

	if err := e.store.SetDisabled(t.Context(), e.user.ID, true); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "LOGIN of a disabled account", e.dial(nil).Login(testUser, testPass).Wait(), imap.ResponseCodeContactAdmin)
	if st := g.Stats().Attempts["imap"]; st[loginguard.OutcomeFailed] != 5 || st[loginguard.OutcomeDisabled] != 1 {
		t.Errorf("guard stats %+v", st)
	}
}

// TestConnectionLimits: MaxConnsPerIP turns extra connections away with
// BYE; MaxConnsPerUser refuses extra logins; slots free up on logout.
func TestConnectionLimits(t *testing.T) {
	e := newEnv(t, Config{MaxConnsPerIP: 3, MaxConnsPerUser: 2})
	a := e.login(nil)
	b := e.login(nil)
	third := e.dial(nil)
	wantCode(t, "third login of the user", third.Login(testUser, testPass).Wait(), imap.ResponseCodeUnavailable)

	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	line, _ := bufio.NewReader(conn).ReadString('\n')
	if !strings.HasPrefix(line, "* BYE [UNAVAILABLE]") {
		t.Errorf("fourth connection from the IP greeted with %q", line)
	}
	conn.Close()

	if n := e.srv.Sessions(); n != 3 {
		t.Errorf("Sessions() = %d, want 3", n)
	}
	if err := a.Logout().Wait(); err != nil {
		t.Fatal(err)
	}
	a.Close()
	waitUntil(t, func() bool { return e.srv.Sessions() == 2 })
	if err := third.Login(testUser, testPass).Wait(); err != nil {
		t.Errorf("login after a logout freed a slot: %v", err)
	}
	_ = b
}

func waitUntil(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
