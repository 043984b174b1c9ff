package smtpd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bmgate/bmgate/gateway"
	"github.com/bmgate/bmgate/mailmap"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

func TestEHLOCapabilities(t *testing.T) {
	h := start(t, "starttls", nil)
	c := dial(t, h, false)
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	for ext, want := range map[string]string{"STARTTLS": "", "DSN": "", "SIZE": strconv.Itoa(gateway.MaxSubmissionBytes), "LIMITS": "RCPTMAX=50", "PIPELINING": "", "ENHANCEDSTATUSCODES": ""} {
		if ok, param := c.Extension(ext); !ok || param != want {
			t.Errorf("before TLS: %s = %v %q, want %q", ext, ok, param, want)
		}
	}
	if ok, _ := c.Extension("AUTH"); ok {
		t.Error("AUTH offered before STARTTLS")
	}
	if ok, _ := c.Extension("SMTPUTF8"); ok {
		t.Error("SMTPUTF8 offered")
	}
	// AUTH before TLS is refused even if the client tries.
	err := c.Auth(sasl.NewPlainClient("", alice.Name, alicePass))
	wantCode(t, err, 523, smtp.EnhancedCode{5, 7, 10})
	h.auth.mu.Lock()
	calls := h.auth.calls
	h.auth.mu.Unlock()
	if calls != 0 {
		t.Error("credentials checked over plain text")
	}

	c = dial(t, h, true)
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if ok, param := c.Extension("AUTH"); !ok || param != "PLAIN LOGIN" {
		t.Errorf("after STARTTLS: AUTH = %v %q", ok, param)
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		t.Error("STARTTLS offered again inside TLS")
	}
}

func TestSubmitWithDSN(t *testing.T) {
	h := start(t, "starttls", nil)
	c := dial(t, h, true)
	login(t, c)
	if err := c.Mail(aliceBM+"@"+domain, &smtp.MailOptions{Return: smtp.DSNReturnHeaders, EnvelopeID: "env+id=1"}); err != nil {
		t.Fatal(err)
	}
	rcpts := []struct {
		to   string
		opts *smtp.RcptOptions
	}{
		{bobBM + "@" + domain, &smtp.RcptOptions{Notify: []smtp.DSNNotify{smtp.DSNNotifySuccess, smtp.DSNNotifyFailure, smtp.DSNNotifyDelayed},
			OriginalRecipientType: smtp.DSNAddressTypeRFC822, OriginalRecipient: "bob@example.org"}},
		{carolBM + "@BMGATE.local", &smtp.RcptOptions{Notify: []smtp.DSNNotify{smtp.DSNNotifyNever}}},
		{"broadcast@" + domain, nil},
		{bobBM + "@" + domain, nil}, // again: one copy
	}
	for _, r := range rcpts {
		if err := c.Rcpt(r.to, r.opts); err != nil {
			t.Fatalf("RCPT %s: %v", r.to, err)
		}
	}
	if err := send(c, testMessage("")); err != nil {
		t.Fatalf("DATA: %v", err)
	}
	got := h.sub.last(t)
	if got.User.ID != alice.ID || got.From != aliceBM || got.Ret != "HDRS" || got.EnvID != "env+id=1" {
		t.Errorf("submission = %+v", got)
	}
	want := []gateway.Recipient{
		{Address: bobBM, Orig: "bob@example.org", Notify: mailmap.NotifySuccess | mailmap.NotifyFailure | mailmap.NotifyDelay, Kind: mailmap.OutboxMsg},
		{Address: carolBM, Orig: carolBM + "@BMGATE.local", Notify: mailmap.NotifyNever, Kind: mailmap.OutboxMsg},
		{Orig: "broadcast@" + domain, Kind: mailmap.OutboxBroadcast},
	}
	if fmt.Sprint(got.Recipients) != fmt.Sprint(want) {
		t.Errorf("recipients\n got %+v\nwant %+v", got.Recipients, want)
	}
	if string(got.Raw) != testMessage("") {
		t.Errorf("raw = %q", got.Raw)
	}

	// A second transaction on the same connection starts clean.
	if err := c.Mail(aliceBM+"@"+domain, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt(bobBM+"@"+domain, nil); err != nil {
		t.Fatal(err)
	}
	if err := send(c, testMessage("second\r\n")); err != nil {
		t.Fatal(err)
	}
	got = h.sub.last(t)
	if got.Ret != "" || got.EnvID != "" || len(got.Recipients) != 1 || got.Recipients[0].Notify != 0 {
		t.Errorf("second submission carries state of the first: %+v", got)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
}

func TestMessageTooLarge(t *testing.T) {
	h := start(t, "starttls", func(c *Config) { c.MaxMessageBytes = 1024 })
	c := dial(t, h, true)
	if ok, size := c.Extension("SIZE"); !ok || size != "1024" {
		t.Errorf("SIZE = %q", size)
	}
	login(t, c)
	err := c.Mail(aliceBM+"@"+domain, &smtp.MailOptions{Size: 5000})
	wantCode(t, err, 552, smtp.EnhancedCode{5, 3, 4})

	if err := c.Mail(aliceBM+"@"+domain, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt(bobBM+"@"+domain, nil); err != nil {
		t.Fatal(err)
	}
	err = send(c, testMessage(strings.Repeat("x", 70)+"\r\n"+strings.Repeat(strings.Repeat("y", 70)+"\r\n", 40)))
	wantCode(t, err, 552, smtp.EnhancedCode{5, 3, 4})
	h.sub.mu.Lock()
	n := len(h.sub.submissions)
	h.sub.mu.Unlock()
	if n != 0 {
		t.Error("oversized message submitted")
	}
	// The session goes on.
	if err := c.Noop(); err != nil {
		t.Fatalf("session broken after 552: %v", err)
	}
}

func TestTooManyRecipients(t *testing.T) {
	h := start(t, "starttls", func(c *Config) { c.MaxRecipients = 2 })
	c := dial(t, h, true)
	if ok, p := c.Extension("LIMITS"); !ok || p != "RCPTMAX=2" {
		t.Errorf("LIMITS = %q", p)
	}
	login(t, c)
	if err := c.Mail(aliceBM+"@"+domain, nil); err != nil {
		t.Fatal(err)
	}
	for _, to := range []string{bobBM, carolBM} {
		if err := c.Rcpt(to+"@"+domain, nil); err != nil {
			t.Fatal(err)
		}
	}
	err := c.Rcpt(aliceBM+"@"+domain, nil)
	wantCode(t, err, 452, smtp.EnhancedCode{4, 5, 3})
}

func TestRefusals(t *testing.T) {
	h := start(t, "starttls", nil)
	c := dial(t, h, true)
	login(t, c)

	err := c.Mail(bobBM+"@"+domain, nil)
	se := wantCode(t, err, 550, smtp.EnhancedCode{5, 7, 1})
	if !strings.Contains(se.Message, "not one of your Bitmessage identities") {
		t.Errorf("sender refusal text %q", se.Message)
	}

	if err := c.Mail(aliceBM+"@"+domain, nil); err != nil {
		t.Fatal(err)
	}
	err = c.Rcpt(strings.ToLower(bobBM)+"@"+domain, nil)
	se = wantCode(t, err, 550, smtp.EnhancedCode{5, 1, 1})
	if !strings.Contains(se.Message, "case") {
		t.Errorf("recipient refusal does not explain: %q", se.Message)
	}
	err = c.Rcpt("someone@example.org", nil)
	wantCode(t, err, 550, smtp.EnhancedCode{5, 1, 1})

	// Submit's refusals reach the client; unknown errors stay internal.
	if err := c.Rcpt(bobBM+"@"+domain, nil); err != nil {
		t.Fatal(err)
	}
	h.sub.failWith(gateway.MediaUnsupported("attachments cannot be carried over Bitmessage", nil))
	err = send(c, testMessage(""))
	wantCode(t, err, 554, smtp.EnhancedCode{5, 6, 1})

	if err := c.Mail(aliceBM+"@"+domain, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt(bobBM+"@"+domain, nil); err != nil {
		t.Fatal(err)
	}
	h.sub.failWith(errors.New("pq: relation outbox does not exist"))
	err = send(c, testMessage(""))
	se = wantCode(t, err, 451, smtp.EnhancedCode{4, 3, 0})
	if strings.Contains(se.Message, "outbox") {
		t.Errorf("internal error reached the client: %q", se.Message)
	}
}

func TestImplicitTLS(t *testing.T) {
	h := start(t, "tls", nil)
	c, err := smtp.DialTLS(h.addr, h.client)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if ok, p := c.Extension("AUTH"); !ok || p != "PLAIN LOGIN" {
		t.Errorf("AUTH = %v %q", ok, p)
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		t.Error("STARTTLS offered on implicit TLS")
	}
	login(t, c)
	if err := c.Mail(aliceBM+"@"+domain, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt(bobBM+"@"+domain, nil); err != nil {
		t.Fatal(err)
	}
	if err := send(c, testMessage("")); err != nil {
		t.Fatal(err)
	}
	if h.sub.last(t).From != aliceBM {
		t.Error("not submitted")
	}
}

func TestServeTLSNeedsConfig(t *testing.T) {
	s := New(&fakeAuth{}, &fakeSubmitter{}, Config{Domain: domain})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := s.ServeTLS(ln); !errors.Is(err, ErrNoTLS) {
		t.Errorf("ServeTLS without TLS config: %v", err)
	}
	if err := s.ServeTrusted(ln); !errors.Is(err, ErrNoTrusted) {
		t.Errorf("ServeTrusted without Trusted: %v", err)
	}
}

func TestMaxConnsPerIP(t *testing.T) {
	h := start(t, "plain", func(c *Config) { c.MaxConnsPerIP = 2 })
	dial(t, h, false)
	dial(t, h, false)
	waitSessions(t, h.s, 2)
	c, err := smtp.Dial(h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Hello("client.test")
	wantCode(t, err, 421, smtp.EnhancedCode{4, 7, 0})
	if n := h.s.Sessions(); n != 2 {
		t.Errorf("Sessions = %d", n)
	}
}

func waitSessions(t *testing.T, s *Server, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for s.Sessions() != n {
		if time.Now().After(deadline) {
			t.Fatalf("Sessions = %d, want %d", s.Sessions(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestShutdown(t *testing.T) {
	h := start(t, "plain", nil)
	c := dial(t, h, false)
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	waitSessions(t, h.s, 1)

	// An idle session keeps a graceful shutdown waiting until ctx ends;
	// then it is closed.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := h.s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v", err)
	}
	waitSessions(t, h.s, 0)
	if err := <-h.serveCh; err != nil {
		t.Errorf("Serve = %v", err)
	}
	h.serveCh <- nil // for the cleanup
	if err := c.Noop(); err == nil {
		t.Error("session still open after shutdown")
	}
	if err := h.s.Shutdown(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("second Shutdown = %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := h.s.Serve(ln); !errors.Is(err, ErrClosed) {
		t.Errorf("Serve after Shutdown = %v", err)
	}
}

func TestGracefulShutdown(t *testing.T) {
	h := start(t, "plain", nil)
	c := dial(t, h, false)
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	waitSessions(t, h.s, 0)
	if err := h.s.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
	if err := <-h.serveCh; err != nil {
		t.Errorf("Serve = %v", err)
	}
	h.serveCh <- nil
}

// fakeListener claims an address it does not have; ServeTrusted must look
// at the address before accepting anything.
type fakeListener struct{ addr net.Addr }

func (f fakeListener) Accept() (net.Conn, error) { return nil, errors.New("not a real listener") }
func (f fakeListener) Close() error              { return nil }
func (f fakeListener) Addr() net.Addr            { return f.addr }

func TestTrustedLocal(t *testing.T) {
	sub := &fakeSubmitter{}
	s := New(&fakeAuth{}, sub, Config{Domain: domain, Trusted: &TrustedLocal{User: scripts}})
	for _, a := range []net.Addr{
		&net.TCPAddr{IP: net.ParseIP("192.0.2.10"), Port: 2525},
		&net.TCPAddr{IP: net.IPv4zero, Port: 2525},
		&net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 2525},
	} {
		if err := s.ServeTrusted(fakeListener{a}); !errors.Is(err, ErrNotLoopback) {
			t.Errorf("ServeTrusted on %s = %v", a, err)
		}
	}

	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	unixPath := filepath.Join(t.TempDir(), "submit.sock")
	unix, err := net.Listen("unix", unixPath)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 2)
	go func() { errs <- s.ServeTrusted(tcp) }()
	go func() { errs <- s.ServeTrusted(unix) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		for range 2 {
			if err := <-errs; err != nil {
				t.Errorf("ServeTrusted = %v", err)
			}
		}
	}()

	for _, dialAddr := range [][2]string{{"tcp", tcp.Addr().String()}, {"unix", unixPath}} {
		conn, err := net.DialTimeout(dialAddr[0], dialAddr[1], 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c := smtp.NewClient(conn)
		c.CommandTimeout = 10 * time.Second
		c.SubmissionTimeout = 10 * time.Second
		if err := c.Hello("localhost"); err != nil {
			t.Fatal(err)
		}
		if ok, _ := c.Extension("AUTH"); ok {
			t.Errorf("%s: AUTH offered on the trusted listener", dialAddr[0])
		}
		if err := c.Mail(carolBM+"@"+domain, nil); err != nil {
			t.Fatalf("%s: MAIL without AUTH: %v", dialAddr[0], err)
		}
		if err := c.Rcpt(bobBM+"@"+domain, nil); err != nil {
			t.Fatal(err)
		}
		if err := send(c, testMessage("")); err != nil {
			t.Fatal(err)
		}
		if got := sub.last(t); got.User.ID != scripts.ID || got.From != carolBM {
			t.Errorf("%s: submitted as %+v from %s", dialAddr[0], got.User, got.From)
		}
		// The trusted user is still held to its own identities.
		err = c.Mail(aliceBM+"@"+domain, nil)
		wantCode(t, err, 550, smtp.EnhancedCode{5, 7, 1})
		c.Quit()
		c.Close()
	}
}

func TestNotifyBits(t *testing.T) {
	for _, tc := range []struct {
		in   []smtp.DSNNotify
		want int
	}{
		{nil, 0},
		{[]smtp.DSNNotify{smtp.DSNNotifyNever}, mailmap.NotifyNever},
		{[]smtp.DSNNotify{smtp.DSNNotifyDelayed, smtp.DSNNotifySuccess}, mailmap.NotifyDelay | mailmap.NotifySuccess},
		{[]smtp.DSNNotify{smtp.DSNNotifyFailure}, mailmap.NotifyFailure},
	} {
		if got := notifyBits(tc.in); got != tc.want {
			t.Errorf("notifyBits(%v) = %b, want %b", tc.in, got, tc.want)
		}
	}
}
