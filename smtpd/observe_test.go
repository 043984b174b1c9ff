package smtpd

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
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
	h := start(t, "starttls", func(c *Config) { c.Commands = rec })
	c := dial(t, h, true)
	login(t, c)
	if err := c.Mail(bobBM+"@"+domain, nil); err == nil {
		t.Fatal("foreign sender accepted")
	}
	if err := c.Mail(aliceBM+"@"+domain, nil); err != nil {
		t.Fatal(err)
	}
	err := c.Rcpt("someone@example.org", nil)
	wantCode(t, err, 550, smtp.EnhancedCode{5, 1, 1})
	if err := c.Rcpt(bobBM+"@"+domain, nil); err != nil {
		t.Fatal(err)
	}
	if err := send(c, testMessage("")); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	want := []string{"AUTH", "MAIL!", "MAIL", "RCPT!", "RCPT", "DATA"}
	if !slices.Equal(rec.seen, want) {
		t.Errorf("observed %q, want %q", rec.seen, want)
	}
}
