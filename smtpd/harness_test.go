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
