package smtpd

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bmgate/bmgate/gateway"
	"github.com/bmgate/bmgate/mailmap"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Bitmessage addresses from docs/protocol.md §7.6.
const (
	domain     = "bmgate.local"
	aliceBM    = "BM-2cWzSnwjJ7yRP3nLEWUV5LisTZyREWSzUK"
	bobBM      = "BM-2DBPTgeSawWYZceFD69AbDT5q4iUWtj1ZN"
	carolBM    = "BM-onkVu1KKL2UaUss5Upg9vXmqd3esTmV79"
	alicePass  = "correct horse battery"
	bodyMarker = "BODY-MARKER-7f3a"
)

var (
	alice   = mailmap.User{ID: 1, Name: "alice"}
	scripts = mailmap.User{ID: 7, Name: "scripts"}
)

// fakeAuth knows one user.
type fakeAuth struct {
	mu     sync.Mutex
	calls  int
	err    error           // forced error (a database that is down)
	state  map[int64]error // UserActive answers; nil: active
	checks int             // UserActive calls
}

func (a *fakeAuth) UserActive(ctx context.Context, userID int64) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.checks++
	return a.state[userID]
}

// setState makes UserActive answer err for the user from now on.
func (a *fakeAuth) setState(userID int64, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.state == nil {
		a.state = map[int64]error{}
	}
	a.state[userID] = err
}

func (a *fakeAuth) Authenticate(ctx context.Context, name, password string) (mailmap.User, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls++
	if a.err != nil {
		return mailmap.User{}, a.err
	}
	if name == alice.Name && password == alicePass {
		return alice, nil
	}
	return mailmap.User{}, mailmap.ErrAuthFailed
}

// fakeSubmitter plays the gateway: alice owns aliceBM, the trusted user owns
// carolBM; it records everything it is given.
type fakeSubmitter struct {
	mu          sync.Mutex
	senders     []string
	submissions []gateway.Submission
	submitErr   error
}

var owners = map[int64]string{alice.ID: aliceBM, scripts.ID: carolBM}

func (f *fakeSubmitter) CheckSender(ctx context.Context, u mailmap.User, from string) (string, error) {
	f.mu.Lock()
	f.senders = append(f.senders, from)
	f.mu.Unlock()
	bm, err := gateway.MailToBM(from, domain)
	if err != nil || owners[u.ID] != bm {
		return "", gateway.BadSender(fmt.Sprintf("sender %s is not one of your Bitmessage identities", from), err)
	}
	return bm, nil
}

func (f *fakeSubmitter) CheckRecipient(ctx context.Context, u mailmap.User, rcpt string) (gateway.Recipient, error) {
	if gateway.IsBroadcastAddress(rcpt, domain) {
		return gateway.Recipient{Kind: mailmap.OutboxBroadcast}, nil
	}
	bm, err := gateway.MailToBM(rcpt, domain)
	if err != nil {
		return gateway.Recipient{}, gateway.BadRecipient(err.Error(), err)
	}
	return gateway.Recipient{Address: bm, Kind: mailmap.OutboxMsg}, nil
}

func (f *fakeSubmitter) Submit(ctx context.Context, s gateway.Submission) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.submitErr != nil {
		return f.submitErr
	}
	f.submissions = append(f.submissions, s)
	return nil
}

func (f *fakeSubmitter) failWith(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.submitErr = err
}

func (f *fakeSubmitter) last(t *testing.T) gateway.Submission {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.submissions) == 0 {
		t.Fatal("nothing submitted")
	}
	return f.submissions[len(f.submissions)-1]
}

// syncBuffer collects log output from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type harness struct {
	s       *Server
	addr    string
	auth    *fakeAuth
	sub     *fakeSubmitter
	logs    *syncBuffer
	client  *tls.Config
	serveCh chan error
}

var (
	certOnce sync.Once
	testCert tls.Certificate
	certErr  error
)

func serverCert(t *testing.T) tls.Certificate {
	certOnce.Do(func() {
		testCert, certErr = selfSignedCert("localhost")
	})
	if certErr != nil {
		t.Fatal(certErr)
	}
	return testCert
}

// start runs a Server on a loopback port; mode is "starttls", "tls" or
// "plain" (no TLS configured).
func start(t *testing.T, mode string, tweak func(*Config)) *harness {
	t.Helper()
	return startAuth(t, mode, tweak, nil)
}

// startAuth is start with another Authenticator than the harness's fake
// (nil: the fake).
func startAuth(t *testing.T, mode string, tweak func(*Config), auth Authenticator) *harness {
	t.Helper()
	h := &harness{auth: &fakeAuth{}, sub: &fakeSubmitter{}, logs: &syncBuffer{}, serveCh: make(chan error, 1)}
	cfg := Config{
		Domain: domain,
		Logger: slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mode != "plain" {
		cert := serverCert(t)
		cfg.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
		pool := x509.NewCertPool()
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		pool.AddCert(leaf)
		h.client = &tls.Config{RootCAs: pool, ServerName: "localhost"}
	}
	if tweak != nil {
		tweak(&cfg)
	}
	if auth == nil {
		auth = h.auth
	}
	h.s = New(auth, h.sub, cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = ln.Addr().String()
	go func() {
		if mode == "tls" {
			h.serveCh <- h.s.ServeTLS(ln)
		} else {
			h.serveCh <- h.s.Serve(ln)
		}
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		h.s.Shutdown(ctx)
		if err := <-h.serveCh; err != nil {
			t.Errorf("Serve returned %v after Shutdown", err)
		}
		logs := h.logs.String()
		if strings.Contains(logs, alicePass) || strings.Contains(logs, "wrong-password") || strings.Contains(logs, bodyMarker) {
			t.Errorf("a password or a message body reached the log:\n%s", logs)
		}
	})
	return h
}

func dial(t *testing.T, h *harness, starttls bool) *smtp.Client {
	t.Helper()
	var c *smtp.Client
	var err error
	if starttls {
		c, err = smtp.DialStartTLS(h.addr, h.client)
	} else {
		c, err = smtp.Dial(h.addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	c.CommandTimeout = 10 * time.Second
	c.SubmissionTimeout = 10 * time.Second
	t.Cleanup(func() { c.Close() })
	return c
}

func login(t *testing.T, c *smtp.Client) {
	t.Helper()
	if err := c.Auth(sasl.NewPlainClient("", alice.Name, alicePass)); err != nil {
		t.Fatalf("AUTH PLAIN: %v", err)
	}
}

func wantCode(t *testing.T, err error, code int, enhanced smtp.EnhancedCode) *smtp.SMTPError {
	t.Helper()
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		t.Fatalf("err = %v, want SMTP %d", err, code)
	}
	if se.Code != code || (enhanced != smtp.EnhancedCodeNotSet && se.EnhancedCode != enhanced) {
		t.Fatalf("reply %d %v %q, want %d %v", se.Code, se.EnhancedCode, se.Message, code, enhanced)
	}
	return se
}

func testMessage(extra string) string {
	return "From: " + aliceBM + "@" + domain + "\r\n" +
		"To: " + bobBM + "@" + domain + "\r\n" +
		"Subject: hello\r\n" +
		"\r\n" +
		"Hi Bob. " + bodyMarker + "\r\n" + extra
}

func send(c *smtp.Client, msg string) error {
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := io.WriteString(w, msg); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

func TestEHLOCapabilities(t *testing.T) {
	h := start(t, "starttls", nil)
	c := dial(t, h, false)
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	for ext, want := range map[string]string{"STARTTLS": "", "DSN": "", "SIZE": "262144", "LIMITS": "RCPTMAX=50", "PIPELINING": "", "ENHANCEDSTATUSCODES": ""} {
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

// loginNoIR is a LOGIN client that waits for the "Username:" challenge,
// as Outlook's older versions and many scripts do.
type loginNoIR struct{ user, pass string }

func (l *loginNoIR) Start() (string, []byte, error) { return "LOGIN", nil, nil }
func (l *loginNoIR) Next(ch []byte) ([]byte, error) {
	switch string(ch) {
	case "Username:":
		return []byte(l.user), nil
	case "Password:":
		return []byte(l.pass), nil
	}
	return nil, fmt.Errorf("unexpected challenge %q", ch)
}

func TestAuthLogin(t *testing.T) {
	h := start(t, "starttls", nil)
	for name, client := range map[string]sasl.Client{
		"initial response":    sasl.NewLoginClient(alice.Name, alicePass),
		"no initial response": &loginNoIR{alice.Name, alicePass},
	} {
		t.Run(name, func(t *testing.T) {
			c := dial(t, h, true)
			if err := c.Auth(client); err != nil {
				t.Fatalf("AUTH LOGIN: %v", err)
			}
			if err := c.Mail(aliceBM+"@"+domain, nil); err != nil {
				t.Fatalf("MAIL after LOGIN: %v", err)
			}
		})
	}
	c := dial(t, h, true)
	err := c.Auth(&loginNoIR{alice.Name, "wrong-password"})
	wantCode(t, err, 535, smtp.EnhancedCode{5, 7, 8})
}

func TestAuthRequired(t *testing.T) {
	h := start(t, "starttls", nil)
	c := dial(t, h, true)
	err := c.Mail(aliceBM+"@"+domain, nil)
	wantCode(t, err, 502, smtp.EnhancedCode{5, 7, 0})
	h.sub.mu.Lock()
	defer h.sub.mu.Unlock()
	if len(h.sub.senders) != 0 {
		t.Error("sender checked before AUTH")
	}
}

func TestAuthUnavailable(t *testing.T) {
	h := start(t, "starttls", nil)
	h.auth.mu.Lock()
	h.auth.err = errors.New("database at 10.0.0.5 is down")
	h.auth.mu.Unlock()
	c := dial(t, h, true)
	err := c.Auth(sasl.NewPlainClient("", alice.Name, alicePass))
	se := wantCode(t, err, 454, smtp.EnhancedCode{4, 7, 0})
	if strings.Contains(se.Message, "10.0.0.5") {
		t.Errorf("internal error reached the client: %q", se.Message)
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

func TestLoginServerStates(t *testing.T) {
	var gotUser, gotPass string
	auth := func(u, p string) error { gotUser, gotPass = u, p; return nil }

	l := &loginServer{authenticate: auth}
	if ch, done, err := l.Next(nil); string(ch) != "Username:" || done || err != nil {
		t.Fatalf("start: %q %v %v", ch, done, err)
	}
	if ch, done, err := l.Next([]byte("u")); string(ch) != "Password:" || done || err != nil {
		t.Fatalf("user: %q %v %v", ch, done, err)
	}
	if _, done, err := l.Next([]byte("p")); !done || err != nil || gotUser != "u" || gotPass != "p" {
		t.Fatalf("password: %v %v %q %q", done, err, gotUser, gotPass)
	}
	if _, _, err := l.Next([]byte("more")); err == nil {
		t.Error("response after done accepted")
	}

	l = &loginServer{authenticate: auth}
	if ch, _, _ := l.Next([]byte("ir-user")); string(ch) != "Password:" {
		t.Fatalf("initial response: %q", ch)
	}
	if _, done, _ := l.Next([]byte("pw")); !done || gotUser != "ir-user" || gotPass != "pw" {
		t.Fatalf("initial response login: %q %q", gotUser, gotPass)
	}
}
