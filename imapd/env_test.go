package imapd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"go.uber.org/goleak"

	"github.com/bmgate/bmgate/mailmap"
	"github.com/bmgate/bmgate/mailmap/loginguard"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if benchDir != "" {
		os.RemoveAll(benchDir)
	}
	if code == 0 {
		// database/sql's connection opener lives as long as a DB handle.
		if err := goleak.Find(goleak.IgnoreTopFunction("database/sql.(*DB).connectionOpener")); err != nil {
			fmt.Fprintln(os.Stderr, "goroutine leak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

const (
	testUser = "alice"
	testPass = "correct horse battery staple"
)

// testEnv is a real SQLite store with one user, served on a loopback port.
type testEnv struct {
	t     testing.TB
	store mailmap.Store
	srv   *Server
	addr  string
	user  mailmap.User
	inbox mailmap.Mailbox
}

// openStore opens a fresh SQLite store with one user.
func openStore(t testing.TB) (mailmap.Store, mailmap.User) {
	t.Helper()
	ctx := context.Background()
	st, err := mailmap.Open(ctx, filepath.Join(t.TempDir(), "mail.db"), mailmap.Options{SecretKey: bytes.Repeat([]byte{7}, 32)})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	u, err := st.CreateUser(ctx, testUser, testPass)
	if err != nil {
		t.Fatalf("create user: %v", err)
	}
	return st, u
}

func testLogger(t testing.TB) *slog.Logger {
	if !testing.Verbose() {
		return nil
	}
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// newEnv starts a server over a fresh store that allows plain-text login
// (loopback only) and, unless cfg says otherwise, guards logins with a 1 ms
// base delay.
func newEnv(t testing.TB, cfg Config) *testEnv {
	t.Helper()
	cfg.AllowInsecureAuth = true
	st, u := openStore(t)
	return serveStore(t, st, u, cfg, false)
}

func serveStore(t testing.TB, st Store, u mailmap.User, cfg Config, implicitTLS bool) *testEnv {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	if gs, ok := st.(loginguard.Store); ok && cfg.Guard == nil {
		cfg.Guard = loginguard.New(loginguard.Config{Store: gs, BaseDelay: time.Millisecond, MaxDelay: 10 * time.Millisecond, Logger: cfg.Logger})
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := New(st, cfg)
	done := make(chan error, 1)
	go func() {
		if implicitTLS {
			done <- srv.ServeTLS(ln)
		} else {
			done <- srv.Serve(ln)
		}
	}()
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("close server: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	inbox, err := st.Mailbox(context.Background(), u.ID, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	ms, _ := st.(mailmap.Store)
	return &testEnv{t: t, store: ms, srv: srv, addr: ln.Addr().String(), user: u, inbox: inbox}
}

// dial connects without logging in.
func (e *testEnv) dial(opts *imapclient.Options) *imapclient.Client {
	e.t.Helper()
	c, err := imapclient.DialInsecure(e.addr, opts)
	if err != nil {
		e.t.Fatalf("dial: %v", err)
	}
	e.t.Cleanup(func() { c.Close() })
	return c
}

// login connects and logs in as the test user.
func (e *testEnv) login(opts *imapclient.Options) *imapclient.Client {
	e.t.Helper()
	c := e.dial(opts)
	if err := c.Login(testUser, testPass).Wait(); err != nil {
		e.t.Fatalf("login: %v", err)
	}
	return c
}

// deliver puts a message into a mailbox through the store, as the gateway
// does.
func (e *testEnv) deliver(mailbox, raw string, flags ...string) mailmap.Message {
	e.t.Helper()
	ctx := context.Background()
	mb, err := e.store.Mailbox(ctx, e.user.ID, mailbox)
	if err != nil {
		e.t.Fatalf("mailbox %s: %v", mailbox, err)
	}
	m, err := e.store.AppendMessage(ctx, e.user.ID, mb.ID, []byte(raw), flags, time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC))
	if err != nil {
		e.t.Fatalf("append: %v", err)
	}
	return m
}

// imapCode returns the response code of an IMAP error, or "".
func imapCode(err error) imap.ResponseCode {
	var ie *imap.Error
	if errors.As(err, &ie) {
		return ie.Code
	}
	return ""
}

func wantCode(t testing.TB, what string, err error, code imap.ResponseCode) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: succeeded, want NO [%s]", what, code)
	}
	if got := imapCode(err); got != code {
		t.Fatalf("%s: error %v, want code [%s]", what, err, code)
	}
}

// mkMail builds a small RFC 5322 message.
func mkMail(from, to, subject, body string) string {
	return fmt.Sprintf("From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: Fri, 20 Nov 2026 10:00:00 +0000\r\nMessage-ID: <%s@example.test>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n%s\r\n",
		from, to, subject, strings.ReplaceAll(strings.ToLower(subject), " ", "."), body)
}

// multipartMail has a text part and a base64 attachment.
const multipartMail = "From: Bob Example <bob@example.test>\r\n" +
	"To: alice@example.test\r\n" +
	"Cc: carol@example.test\r\n" +
	"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= with attachment\r\n" +
	"Date: Sat, 21 Nov 2026 08:30:00 +0100\r\n" +
	"Message-ID: <multi@example.test>\r\n" +
	"In-Reply-To: <parent@example.test>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=\"b1\"\r\n" +
	"\r\n" +
	"--b1\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"Content-Transfer-Encoding: quoted-printable\r\n" +
	"\r\n" +
	"Sch=C3=B6ne Gr=C3=BC=C3=9Fe, the needle is here.\r\n" +
	"--b1\r\n" +
	"Content-Type: application/octet-stream; name=\"data.bin\"\r\n" +
	"Content-Disposition: attachment; filename=\"data.bin\"\r\n" +
	"Content-Transfer-Encoding: base64\r\n" +
	"\r\n" +
	"AAECAwQFBgc=\r\n" +
	"--b1--\r\n"

// selfSignedTLS returns a server config for 127.0.0.1 and a client config
// that trusts it.
func selfSignedTLS(t testing.TB) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "imapd test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	server = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}}}
	client = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	return server, client
}

// needTool returns the path of an external program, skipping the test when
// it is missing, except under CI=true, where a missing tool is a failure.
func needTool(t testing.TB, name, pkg string) string {
	t.Helper()
	path, err := lookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not found (apt package %s) and CI=true", name, pkg)
	}
	t.Skipf("%s not found; install the apt package %s to run this test", name, pkg)
	return ""
}

// readAll drains r, for literal readers.
func readAll(t testing.TB, r io.Reader) []byte {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// lookPath is exec.LookPath that also looks in the sbin directories, which
// a non-root PATH may lack.
func lookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

// rawClient speaks IMAP line by line, for checks imapclient hides.
type rawClient struct {
	t        testing.TB
	conn     net.Conn
	r        *bufio.Reader
	n        int
	deadline bool // bound each command by 30 s
}

func (e *testEnv) raw() *rawClient {
	e.t.Helper()
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	return newRawClient(e.t, conn, "* OK")
}

// newRawClient reads the greeting, which must start with want.
func newRawClient(t testing.TB, conn net.Conn, want string) *rawClient {
	t.Helper()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	c := &rawClient{t: t, conn: conn, r: bufio.NewReader(conn), deadline: true}
	if greeting := c.line(); !strings.HasPrefix(greeting, want) {
		t.Fatalf("greeting %q", greeting)
	}
	return c
}

// rawLogin is raw followed by LOGIN.
func (e *testEnv) rawLogin() *rawClient {
	e.t.Helper()
	r := e.raw()
	r.ok("LOGIN %s %q", testUser, testPass)
	return r
}

// line reads one response line, with any literals inlined. (No
// t.Helper: it runs per line of a 10,000-line benchmark response, and its
// stack walk would be part of what the benchmarks measure.)
func (c *rawClient) line() string {
	var sb strings.Builder
	for {
		l, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("read: %v (after %q)", err, sb.String()+l)
		}
		l = strings.TrimSuffix(l, "\r\n")
		sb.WriteString(l)
		i := strings.LastIndexByte(l, '{')
		if i < 0 || !strings.HasSuffix(l, "}") {
			return sb.String()
		}
		var n int
		if _, err := fmt.Sscanf(l[i:], "{%d}", &n); err != nil {
			return sb.String()
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(c.r, buf); err != nil {
			c.t.Fatal(err)
		}
		sb.Write(buf)
	}
}

// cmd sends one command and returns the untagged lines and the tagged one.
func (c *rawClient) cmd(format string, args ...any) (untagged []string, tagged string) {
	c.t.Helper()
	c.n++
	tag := fmt.Sprintf("R%d", c.n)
	if c.deadline {
		c.conn.SetDeadline(time.Now().Add(30 * time.Second))
	}
	if _, err := fmt.Fprintf(c.conn, tag+" "+format+"\r\n", args...); err != nil {
		c.t.Fatal(err)
	}
	for {
		l := c.line()
		if strings.HasPrefix(l, tag+" ") {
			return untagged, strings.TrimPrefix(l, tag+" ")
		}
		untagged = append(untagged, l)
	}
}

// ok runs a command that must succeed.
func (c *rawClient) ok(format string, args ...any) []string {
	c.t.Helper()
	u, tagged := c.cmd(format, args...)
	if !strings.HasPrefix(tagged, "OK") {
		c.t.Fatalf("%s: %s", fmt.Sprintf(format, args...), tagged)
	}
	return u
}
