package imapd

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

// recordCommands is a CommandObserver that keeps what it is told.
type recordCommands struct {
	mu   sync.Mutex
	seen []string // command, then "!" when it failed
}

func (r *recordCommands) ObserveCommand(cmd string, took time.Duration, err error) {
	if err != nil {
		cmd += "!"
	}
	r.mu.Lock()
	r.seen = append(r.seen, cmd)
	r.mu.Unlock()
}

func TestCommandObserver(t *testing.T) {
	rec := &recordCommands{}
	e := newEnv(t, Config{Commands: rec})
	e.deliver("INBOX", mkMail("a@example.org", "b@example.org", "hi", "hello"))
	c := e.login(nil)
	if _, err := c.Select("Nonexistent", nil).Wait(); err == nil {
		t.Fatal("SELECT of a missing mailbox succeeded")
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Flags: true}).Collect(); err != nil {
		t.Fatal(err)
	}
	if err := c.Logout().Wait(); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	want := []string{"LOGIN", "SELECT!", "SELECT", "FETCH"}
	if !slices.Equal(rec.seen, want) {
		t.Errorf("observed %q, want %q", rec.seen, want)
	}
}
