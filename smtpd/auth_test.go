package smtpd

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

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
