package imapd

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bmgate/bmgate/mailmap"
)

const benchMessages = 10000

var (
	benchOnce sync.Once
	benchDir  string
	benchErr  error
)

const benchDistinct = 250

type benchMessage struct {
	raw  string
	seen bool
	date time.Time
}

// benchCorpus is benchDistinct messages: a third of them from bob, every
// tenth one long (with "needle" in it), every seventh \Seen.
func benchCorpus() []benchMessage {
	out := make([]benchMessage, benchDistinct)
	for i := range out {
		from := fmt.Sprintf("sender%d@example.test", i)
		if i%3 == 0 {
			from = "Bob <bob@example.test>"
		}
		body := fmt.Sprintf("Message number %d.\r\n", i) + strings.Repeat("Lorem ipsum dolor sit amet. ", 10)
		if i%10 == 0 {
			body += strings.Repeat("A much longer body line to make the message bigger. ", 100) + "needle\r\n"
		}
		out[i] = benchMessage{
			raw:  mkMail(from, "alice@example.test", fmt.Sprintf("Subject %d about things", i), body),
			seen: i%7 == 0,
			date: time.Date(2026, 1, 1+i%28, 0, 0, 0, 0, time.UTC),
		}
	}
	return out
}

// benchTemplate builds, once per process, an SQLite database whose INBOX
// holds benchMessages messages: benchCorpus copied 40 times.
func benchTemplate(b *testing.B) string {
	benchOnce.Do(func() {
		benchDir, benchErr = os.MkdirTemp("", "imapd-bench-")
		if benchErr != nil {
			return
		}
		ctx := context.Background()
		st, err := mailmap.Open(ctx, filepath.Join(benchDir, "mail.db"), mailmap.Options{SecretKey: bytes.Repeat([]byte{7}, 32)})
		if err != nil {
			benchErr = err
			return
		}
		defer st.Close()
		u, err := st.CreateUser(ctx, testUser, testPass)
		if err != nil {
			benchErr = err
			return
		}
		inbox, _ := st.Mailbox(ctx, u.ID, "INBOX")
		seed, _ := st.CreateMailbox(ctx, u.ID, "Seed", "")
		for _, m := range benchCorpus() {
			var flags []string
			if m.seen {
				flags = []string{`\Seen`}
			}
			if _, err := st.AppendMessage(ctx, u.ID, seed.ID, []byte(m.raw), flags, m.date); err != nil {
				benchErr = err
				return
			}
		}
		uids := make([]uint32, benchDistinct)
		for i := range uids {
			uids[i] = uint32(i + 1)
		}
		for range benchMessages / benchDistinct {
			if _, _, err := st.CopyMessages(ctx, u.ID, seed.ID, uids, inbox.ID); err != nil {
				benchErr = err
				return
			}
		}
	})
	if benchErr != nil {
		b.Fatalf("build benchmark mailbox: %v", benchErr)
	}
	// Each benchmark works on its own copy.
	dir := b.TempDir()
	for _, name := range []string{"mail.db", "mail.db-wal"} {
		src, err := os.Open(filepath.Join(benchDir, name))
		if os.IsNotExist(err) {
			continue
		} else if err != nil {
			b.Fatal(err)
		}
		dst, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(dst, src); err != nil {
			b.Fatal(err)
		}
		src.Close()
		dst.Close()
	}
	return filepath.Join(dir, "mail.db")
}

func benchEnv(b *testing.B) *rawClient {
	path := benchTemplate(b)
	ctx := context.Background()
	st, err := mailmap.Open(ctx, path, mailmap.Options{SecretKey: bytes.Repeat([]byte{7}, 32)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	u, err := st.UserByName(ctx, testUser)
	if err != nil {
		b.Fatal(err)
	}
	e := serveStore(b, st, u, Config{AllowInsecureAuth: true, Logger: nil}, false)
	r := e.raw()
	r.conn.SetDeadline(time.Time{})
	r.deadline = false
	r.ok("LOGIN %s %q", testUser, testPass)
	if u := r.ok("SELECT INBOX"); !strings.Contains(strings.Join(u, "\n"), fmt.Sprintf("* %d EXISTS", benchMessages)) {
		b.Fatalf("SELECT: %q", u)
	}
	return r
}

// benchDovecot serves the same 10,000 messages from Dovecot (written into
// its Maildir, indexed by a first SELECT before the timer starts), so one
// run gives imapd/Dovecot ratios.
func benchDovecot(b *testing.B) *rawClient {
	corpus := benchCorpus()
	conn, _ := startDovecotConn(b, func(dir string) {
		cur := filepath.Join(dir, "Mail", "cur")
		for _, sub := range []string{"cur", "new", "tmp"} {
			if err := os.MkdirAll(filepath.Join(dir, "Mail", sub), 0o777); err != nil {
				b.Fatal(err)
			}
		}
		os.Chmod(filepath.Join(dir, "Mail"), 0o777)
		for i := range benchMessages {
			m := corpus[i%benchDistinct]
			info := ":2,"
			if m.seen {
				info += "S"
			}
			name := filepath.Join(cur, fmt.Sprintf("%d.%06d.bench%s", m.date.Unix(), i, info))
			if err := os.WriteFile(name, []byte(m.raw), 0o666); err != nil {
				b.Fatal(err)
			}
			os.Chtimes(name, m.date, m.date)
		}
	})
	r := newRawClient(b, conn, "* PREAUTH")
	r.conn.SetDeadline(time.Time{})
	r.deadline = false
	if u := r.ok("SELECT INBOX"); !strings.Contains(strings.Join(u, "\n"), fmt.Sprintf("* %d EXISTS", benchMessages)) {
		b.Fatalf("dovecot SELECT: %q", u)
	}
	return r
}

// runBench times one command per iteration, against imapd or (with
// dovecot) against Dovecot, and reports per-message cost.
func runBench(b *testing.B, command string, wantLines int) {
	b.Run("imapd", func(b *testing.B) { timeCommand(b, benchEnv(b), command, wantLines) })
	b.Run("dovecot", func(b *testing.B) {
		if _, err := lookPath("doveadm"); err != nil {
			b.Skip("doveadm not installed (apt package dovecot-imapd)")
		}
		timeCommand(b, benchDovecot(b), command, wantLines)
	})
}

func timeCommand(b *testing.B, r *rawClient, command string, wantLines int) {
	b.ResetTimer()
	for b.Loop() {
		u := r.ok("%s", command)
		if wantLines >= 0 && len(u) != wantLines {
			b.Fatalf("%s: %d untagged lines, want %d", command, len(u), wantLines)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/benchMessages/1000, "µs/msg")
}

// BenchmarkFetchHeaders10k is what a client does to list a 10,000-message
// folder: envelope, flags, size and a set of header fields per message.
func BenchmarkFetchHeaders10k(b *testing.B) {
	runBench(b, "UID FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE BODY.PEEK[HEADER.FIELDS (From To Cc Subject Date Message-ID)])", benchMessages)
}

// BenchmarkFetchFlags10k is Thunderbird's resync of a known folder:
// served from the view, no message reads.
func BenchmarkFetchFlags10k(b *testing.B) {
	runBench(b, "UID FETCH 1:* (FLAGS)", benchMessages)
}

// BenchmarkSearchHeader10k searches a header, which reads every message.
func BenchmarkSearchHeader10k(b *testing.B) {
	runBench(b, `UID SEARCH FROM "bob@example.test"`, 1)
}

// BenchmarkSearchBody10k searches decoded body text.
func BenchmarkSearchBody10k(b *testing.B) {
	runBench(b, `UID SEARCH BODY "needle"`, 1)
}

// BenchmarkSearchFlags10k searches flags and sizes only (from the view).
func BenchmarkSearchFlags10k(b *testing.B) {
	runBench(b, `UID SEARCH UNSEEN LARGER 1000`, 1)
}

// BenchmarkSelect10k opens the folder and closes it again, each time: imapd
// keeps the view of a folder no session has selected for a while, so this
// is the cost of going back to a folder. BenchmarkSelectCold10k is the
// first SELECT, which loads the view.
func BenchmarkSelect10k(b *testing.B) { benchSelect(b) }

// BenchmarkSelectCold10k is BenchmarkSelect10k with no idle views kept:
// every SELECT reads every message's metadata (Dovecot the same as in
// BenchmarkSelect10k).
func BenchmarkSelectCold10k(b *testing.B) {
	defer func(n int) { idleViews = n }(idleViews)
	idleViews = 0
	benchSelect(b)
}

func benchSelect(b *testing.B) {
	run := func(b *testing.B, r *rawClient) {
		r.ok("UNSELECT")
		b.ResetTimer()
		for b.Loop() {
			r.ok("SELECT INBOX")
			r.ok("UNSELECT")
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/benchMessages/1000, "µs/msg")
	}
	b.Run("imapd", func(b *testing.B) { run(b, benchEnv(b)) })
	b.Run("dovecot", func(b *testing.B) {
		if _, err := lookPath("doveadm"); err != nil {
			b.Skip("doveadm not installed (apt package dovecot-imapd)")
		}
		run(b, benchDovecot(b))
	})
}
