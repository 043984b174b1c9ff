package main

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/emersion/go-smtp"
)

// dataHook makes the sender stop in DATA so the executor can kill A there.
type dataHook struct {
	kind    killKind
	reached chan struct{} // closed by the sender at the point to kill
	proceed chan struct{} // closed by the executor (mid-DATA only)
}

// sendRec is one SMTP transaction that reached DATA (its token was sent).
type sendRec struct {
	idx          int
	token, msgID string
	start, end   time.Duration
	got250       bool
	err          string
	hook         killKind
}

// kill9Dial connects to A's SMTP and authenticates, retrying while A is
// down (a kill in between costs no token).
func kill9Dial(addr string, deadline time.Time, stop <-chan struct{}) (*smtp.Client, error) {
	last := errors.New("the test is over")
	for time.Now().Before(deadline) {
		select {
		case <-stop:
			return nil, last
		default:
		}
		c, err := smtp.Dial(addr)
		if err == nil {
			c.CommandTimeout, c.SubmissionTimeout = 10*time.Second, 20*time.Second
			if err = c.Auth(plainAuthClient{"alice", "alice-secret"}); err == nil {
				return c, nil
			}
			c.Close()
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	return nil, fmt.Errorf("could not connect to A's SMTP: %v", last)
}

// kill9SendOne runs one transaction. started reports whether DATA began
// (the token went out); err is nil only for a 250.
func kill9SendOne(c *smtp.Client, from, to string, rec *sendRec, hook *dataHook) (started bool, err error) {
	if err := c.Mail(from, nil); err != nil {
		return false, err
	}
	if err := c.Rcpt(to, nil); err != nil {
		return false, err
	}
	w, err := c.Data()
	if err != nil {
		return false, err
	}
	var msg bytes.Buffer
	fmt.Fprintf(&msg, "From: Alice <%s>\r\nTo: %s\r\nSubject: Kill9 %s\r\nMessage-ID: <%s>\r\n"+
		"Content-Type: text/plain; charset=utf-8\r\n\r\n", from, to, rec.token, rec.msgID)
	for i := 0; msg.Len() < 10000; i++ { // past the client's 4 KiB buffer, so half of it reaches A
		fmt.Fprintf(&msg, "%s line %03d of a mail that must arrive exactly once.\r\n", rec.token, i)
	}
	raw := msg.Bytes()
	half := len(raw) / 2
	if _, err := w.Write(raw[:half]); err != nil {
		return true, err
	}
	if hook != nil && hook.kind == killADataMid {
		close(hook.reached)
		select {
		case <-hook.proceed:
		case <-time.After(20 * time.Second): // the executor gave up (t.Fatal)
		}
	}
	if _, err := w.Write(raw[half:]); err != nil {
		return true, err
	}
	if hook != nil && hook.kind == killADataEnd {
		close(hook.reached)
	}
	if err := w.Close(); err != nil {
		return true, err
	}
	_ = c.Quit()
	return true, nil
}
