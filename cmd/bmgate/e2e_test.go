package main

// A test of the product as a person runs it: two real `bmgate serve`
// processes on the test network (one on SQLite, one on PostgreSQL) on
// loopback ports, set up with the CLI, mail sent with go-smtp's client and
// with `bmgate sendmail`, read with go-imap's client.

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-smtp"
	_ "github.com/jackc/pgx/v5/stdlib"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// bmgateBinary builds the binary once per test run.
func bmgateBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "bmgate-bin")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "bmgate")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// freePort returns a loopback address that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// testPostgres creates a fresh database on the server BMGATE_TEST_PG names.
func testPostgres(t *testing.T) string {
	t.Helper()
	dsn := os.Getenv("BMGATE_TEST_PG")
	if dsn == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("BMGATE_TEST_PG is not set under CI")
		}
		t.Skip("BMGATE_TEST_PG not set: skipping the PostgreSQL half (set it to a server DSN to run)")
	}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	name := fmt.Sprintf("bmgate_e2e_%d", time.Now().UnixNano())
	if _, err := db.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		db, err := sql.Open("pgx", dsn)
		if err == nil {
			_, _ = db.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)")
			db.Close()
		}
	})
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

// instance is one bmgate data directory (and database) with its ports.
type instance struct {
	t               *testing.T
	name, data, db  string
	smtp, imap, p2p string
	peers           []string
	extra           []string // more serve flags
	cmd             *exec.Cmd
	log             *bytes.Buffer
}

func newInstance(t *testing.T, name, db string) *instance {
	return &instance{t: t, name: name, data: t.TempDir(), db: db,
		smtp: freePort(t), imap: freePort(t), p2p: freePort(t), log: &bytes.Buffer{}}
}

func (in *instance) common() []string {
	args := []string{"--data", in.data, "--network", "test", "--domain", "bm.test"}
	if in.db != "" {
		args = append(args, "--db", in.db)
	}
	return args
}

// cli runs a bmgate subcommand against this instance and returns stdout.
func (in *instance) cli(stdin string, args ...string) string {
	in.t.Helper()
	cmd := exec.Command(bmgateBinary(in.t), append(args, in.common()...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		in.t.Fatalf("%s: bmgate %s: %v\n%s", in.name, strings.Join(args, " "), err, errb.String())
	}
	return out.String()
}

func (in *instance) serve() {
	in.t.Helper()
	args := append([]string{"serve"}, in.common()...)
	args = append(args, "--smtp", in.smtp, "--imap", in.imap, "--p2p", in.p2p, "--no-bootstrap", "--admin", "off")
	for _, p := range in.peers {
		args = append(args, "--peer", p)
	}
	args = append(args, in.extra...)
	cmd := exec.Command(bmgateBinary(in.t), args...)
	cmd.Stdout, cmd.Stderr = in.log, in.log
	if err := cmd.Start(); err != nil {
		in.t.Fatal(err)
	}
	in.cmd = cmd
	in.t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			in.t.Errorf("%s: serve did not stop on SIGINT within 15 s", in.name)
		}
		if in.t.Failed() {
			in.t.Logf("%s log:\n%s", in.name, in.log.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.Dial("tcp", in.smtp)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			in.t.Fatalf("%s: SMTP never came up:\n%s", in.name, in.log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type plainAuthClient struct{ user, pass string }

func (a plainAuthClient) Start() (string, []byte, error) {
	return "PLAIN", []byte("\x00" + a.user + "\x00" + a.pass), nil
}
func (a plainAuthClient) Next([]byte) ([]byte, error) { return nil, fmt.Errorf("unexpected challenge") }

func TestTwoServersEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	pg := testPostgres(t)
	a := newInstance(t, "A(sqlite)", "")
	b := newInstance(t, "B(postgres)", pg)
	b.peers = []string{a.p2p}

	a.cli("alice-secret\n", "user", "add", "alice")
	b.cli("bob-secret\n", "user", "add", "bob")
	aliceBM := strings.TrimSpace(a.cli("", "address", "new", "--user", "alice", "--label", "Alice"))
	bobBM := strings.TrimSpace(b.cli("", "address", "new", "--user", "bob"))
	if !strings.HasPrefix(aliceBM, "BM-") || !strings.HasPrefix(bobBM, "BM-") {
		t.Fatalf("address new printed %q and %q", aliceBM, bobBM)
	}
	if list := a.cli("", "address", "list", "--user", "alice"); !strings.Contains(list, aliceBM) {
		t.Fatalf("address list lacks %s:\n%s", aliceBM, list)
	}
	a.serve()
	b.serve()

	alice, bob := aliceBM+"@bm.test", bobBM+"@bm.test"
	msgID := fmt.Sprintf("e2e-%d@client.test", time.Now().UnixNano())
	msg := "From: Alice <" + alice + ">\r\nTo: " + bob + "\r\nSubject: Over SMTP\r\nMessage-ID: <" + msgID + ">\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n\r\nHello from the real binary.\r\n"
	c, err := smtp.Dial(a.smtp)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Auth(plainAuthClient{"alice", "alice-secret"}); err != nil {
		t.Fatalf("AUTH: %v", err)
	}
	if err := c.SendMail(alice, []string{bob}, strings.NewReader(msg)); err != nil {
		t.Fatalf("send: %v", err)
	}
	c.Close()

	// Alice files her Sent copy by IMAP APPEND, as Thunderbird does.
	ia, err := imapclient.DialInsecure(a.imap, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ia.Close()
	if err := ia.Login("alice", "alice-secret").Wait(); err != nil {
		t.Fatal(err)
	}
	ac := ia.Append("Sent", int64(len(msg)), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagSeen}})
	if _, err := ac.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	if err := ac.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := ac.Wait(); err != nil {
		t.Fatalf("APPEND: %v", err)
	}

	// A script sends through the sendmail entry point.
	a.cli("From: "+alice+"\nTo: "+bob+"\nSubject: Via sendmail\n\nFrom a cron job.\n", "sendmail", "-t", "-oi")
	// Debian's cron, with its exact arguments and message, MAILTO=bob, root
	// mapped to alice's identity.
	cron := exec.Command(bmgateBinary(t), append(append([]string{"sendmail"}, debianCronArgs...), append([]string{bob}, a.common()...)...)...)
	cron.Env = append(os.Environ(), "BMGATE_SENDMAIL_IDENTITY=root:"+aliceBM)
	cron.Stdin = strings.NewReader(strings.Replace(debianCronMsg, "To: root", "To: "+bob, 1))
	if out, err := cron.CombinedOutput(); err != nil {
		t.Fatalf("sendmail as Debian's cron runs it: %v\n%s", err, out)
	}
	const cronSubject = "Cron <root@host> /usr/local/bin/backup"

	// Bob reads both over IMAP on the PostgreSQL instance.
	ib, err := imapclient.DialInsecure(b.imap, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ib.Close()
	if err := ib.Login("bob", "bob-secret").Wait(); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"Over SMTP": false, "Via sendmail": false, cronSubject: false}
	deadline := time.Now().Add(90 * time.Second)
	for {
		if _, err := ib.Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
		msgs, err := ib.Fetch(imap.SeqSetNum(1, 2, 3, 4, 5, 6), &imap.FetchOptions{Envelope: true}).Collect()
		if err == nil {
			for _, m := range msgs {
				if m.Envelope != nil {
					if _, ok := want[m.Envelope.Subject]; ok {
						want[m.Envelope.Subject] = true
						if len(m.Envelope.From) == 0 || m.Envelope.From[0].Addr() != alice {
							t.Errorf("%q from %v, want %s", m.Envelope.Subject, m.Envelope.From, alice)
						}
						if m.Envelope.Subject == cronSubject && m.Envelope.MessageID == "" {
							t.Errorf("cron's mail arrived without a Message-ID")
						}
					}
				}
			}
		}
		if want["Over SMTP"] && want["Via sendmail"] && want[cronSubject] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bob's INBOX never got both messages: %v", want)
		}
		time.Sleep(500 * time.Millisecond)
	}

	// The ack comes back and Alice's Sent copy shows $Delivered.
	deadline = time.Now().Add(90 * time.Second)
	for {
		if _, err := ia.Select("Sent", nil).Wait(); err != nil {
			t.Fatal(err)
		}
		msgs, err := ia.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Flags: true}).Collect()
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) == 1 {
			for _, f := range msgs[0].Flags {
				if f == "$Delivered" {
					out := a.cli("", "status")
					if !strings.Contains(out, "acked") {
						t.Errorf("status does not show the acked send:\n%s", out)
					}
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("Sent copy never got $Delivered; flags %v", msgs)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

var _ = context.Background
