package smtpd

import (
	"io"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// CommandObserver is told of each command a session handled: its name
// (AUTH, MAIL, RCPT, DATA), how long it took and its error (nil: accepted).
// It must be safe for concurrent use.
type CommandObserver interface {
	ObserveCommand(command string, took time.Duration, err error)
}

// observedSession reports a session's commands to Config.Commands. It
// embeds the session, so go-smtp sees the same optional interfaces.
type observedSession struct {
	*session
	obs CommandObserver
}

func (o observedSession) observe(cmd string, start time.Time, err error) error {
	var ok error = err
	if se, isReply := err.(*smtp.SMTPError); isReply && se.Code/100 == 2 {
		ok = nil // a positive reply with its own text (queued as …)
	}
	o.obs.ObserveCommand(cmd, time.Since(start), ok)
	return err
}

func (o observedSession) Auth(mech string) (sasl.Server, error) {
	start := time.Now()
	srv, err := o.session.Auth(mech)
	o.observe("AUTH", start, err)
	return srv, err
}

func (o observedSession) Mail(from string, opts *smtp.MailOptions) error {
	return o.observe("MAIL", time.Now(), o.session.Mail(from, opts))
}

func (o observedSession) Rcpt(to string, opts *smtp.RcptOptions) error {
	return o.observe("RCPT", time.Now(), o.session.Rcpt(to, opts))
}

func (o observedSession) Data(r io.Reader) error {
	return o.observe("DATA", time.Now(), o.session.Data(r))
}
