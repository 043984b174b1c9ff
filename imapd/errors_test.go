package imapd

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/bmgate/bmgate/mailmap"
)

// failingStore is the real store with chosen methods failing the way a
// broken database would.
type failingStore struct {
	mailmap.Store
	mu   sync.Mutex
	fail map[string]error
}

func (s *failingStore) err(method string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fail[method]
}

func (s *failingStore) set(method string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail[method] = err
}

func (s *failingStore) Mailboxes(ctx context.Context, userID int64) ([]mailmap.Mailbox, error) {
	if err := s.err("Mailboxes"); err != nil {
		return nil, err
	}
	return s.Store.Mailboxes(ctx, userID)
}

func (s *failingStore) MessageRaw(ctx context.Context, userID, mailboxID int64, uid uint32) ([]byte, error) {
	if err := s.err("MessageRaw"); err != nil {
		return nil, err
	}
	return s.Store.MessageRaw(ctx, userID, mailboxID, uid)
}

func (s *failingStore) MessagesRaw(ctx context.Context, userID, mailboxID int64, uids []uint32) (map[uint32][]byte, error) {
	if err := s.err("MessagesRaw"); err != nil {
		return nil, err
	}
	return s.Store.MessagesRaw(ctx, userID, mailboxID, uids)
}

func (s *failingStore) MessageHeaders(ctx context.Context, userID, mailboxID int64, uids []uint32, parts mailmap.HeaderParts) (map[uint32]mailmap.MessageHeader, error) {
	if err := s.err("MessageHeaders"); err != nil {
		return nil, err
	}
	return s.Store.MessageHeaders(ctx, userID, mailboxID, uids, parts)
}

func (s *failingStore) AppendMessage(ctx context.Context, userID, mailboxID int64, raw []byte, flags []string, date time.Time) (mailmap.Message, error) {
	if err := s.err("AppendMessage"); err != nil {
		return mailmap.Message{}, err
	}
	return s.Store.AppendMessage(ctx, userID, mailboxID, raw, flags, date)
}

func (s *failingStore) Authenticate(ctx context.Context, name, password string) (mailmap.User, error) {
	if err := s.err("Authenticate"); err != nil {
		return mailmap.User{}, err
	}
	return s.Store.Authenticate(ctx, name, password)
}

// syncLog is a slog handler target safe for concurrent use.
type syncLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// TestErrorsNeverLeak: store failures reach the client as generic NO
// [SERVERBUG]/[UNAVAILABLE] answers; their detail goes to the log only.
func TestErrorsNeverLeak(t *testing.T) {
	st, u := openStore(t)
	fs := &failingStore{Store: st, fail: map[string]error{}}
	var logs syncLog
	e := serveStore(t, fs, u, Config{AllowInsecureAuth: true, Logger: slog.New(slog.NewTextHandler(&logs, nil))}, false)
	e.deliver("INBOX", mkMail("a@example.test", "b@example.test", "x", "y"))
	const secret = `pq: relation "messages" does not exist (SQLSTATE 42P01) at /var/lib/bmgate/db`

	var errs []error
	fs.set("Authenticate", errors.New(secret))
	c := e.dial(nil)
	err := c.Login(testUser, testPass).Wait()
	errs = append(errs, err)
	wantCode(t, "LOGIN with a broken store", err, imap.ResponseCodeServerBug)
	fs.set("Authenticate", nil)
	if err := c.Login(testUser, testPass).Wait(); err != nil {
		t.Fatal(err)
	}

	fs.set("Mailboxes", errors.New(secret))
	_, err = c.List("", "*", nil).Collect()
	errs = append(errs, err)
	wantCode(t, "LIST with a broken store", err, imap.ResponseCodeServerBug)

	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	fs.set("MessageRaw", errors.New(secret))
	fs.set("MessagesRaw", errors.New(secret))
	fs.set("MessageHeaders", errors.New(secret))
	_, err = c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Envelope: true}).Collect()
	errs = append(errs, err)
	wantCode(t, "FETCH with a broken store", err, imap.ResponseCodeServerBug)
	_, err = c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodyStructure: &imap.FetchItemBodyStructure{}}).Collect()
	errs = append(errs, err)
	wantCode(t, "FETCH BODYSTRUCTURE with a broken store", err, imap.ResponseCodeServerBug)

	fs.set("AppendMessage", context.DeadlineExceeded)
	app := c.Append("INBOX", 3, nil)
	app.Write([]byte("x\r\n"))
	app.Close()
	_, err = app.Wait()
	errs = append(errs, err)
	wantCode(t, "APPEND timing out", err, imap.ResponseCodeUnavailable)

	fs.set("AppendMessage", mailmap.ErrOverQuota)
	app = c.Append("INBOX", 3, nil)
	app.Write([]byte("x\r\n"))
	app.Close()
	_, err = app.Wait()
	errs = append(errs, err)
	wantCode(t, "APPEND over quota", err, imap.ResponseCodeOverQuota)

	for _, e := range errs {
		if strings.Contains(e.Error(), "SQLSTATE") || strings.Contains(e.Error(), "deadline") {
			t.Errorf("SQL text reached the client: %v", e)
		}
	}
	if !strings.Contains(logs.String(), "SQLSTATE") {
		t.Error("the store error was not logged")
	}
	if err := c.Noop().Wait(); err != nil {
		t.Fatalf("connection unusable after errors: %v", err)
	}
}

// TestQuota uses the store's own quota when it offers a way to set one.
func TestQuota(t *testing.T) {
	e := newEnv(t, Config{})
	setter, ok := e.store.(interface {
		SetQuota(ctx context.Context, userID int64, bytes int64) error
	})
	if !ok {
		t.Skip("store has no SetQuota")
	}
	if err := setter.SetQuota(context.Background(), e.user.ID, 100); err != nil {
		t.Fatal(err)
	}
	c := e.login(nil)
	msg := mkMail("a@example.test", "b@example.test", "too big for the quota", strings.Repeat("x", 200))
	app := c.Append("INBOX", int64(len(msg)), nil)
	app.Write([]byte(msg))
	app.Close()
	_, err := app.Wait()
	wantCode(t, "APPEND over the store quota", err, imap.ResponseCodeOverQuota)
}
