package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/bmgate/bmgate/gateway"
	"github.com/bmgate/bmgate/mailmap"
	"github.com/bmgate/bmgate/mailmap/loginguard"
	"github.com/bmgate/bmgate/mailmap/logsafe"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

type backend struct {
	s       *Server
	trusted bool
}

func (b *backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	se := &session{s: b.s, conn: c, trusted: b.trusted, ip: remoteIP(c.Conn().RemoteAddr())}
	if b.trusted {
		u := b.s.cfg.Trusted.User
		se.user = &u
	}
	se.id = logsafe.NewID()
	if tc := se.tracked(); tc != nil {
		se.id = tc.id
	}
	se.log = b.s.log.With("conn", se.id, "remote", se.ip)
	se.log.Debug("session started", "helo", logsafe.String(c.Hostname()))
	if obs := b.s.cfg.Commands; obs != nil {
		return observedSession{session: se, obs: obs}, nil
	}
	return se, nil
}

// session is one SMTP session; go-smtp calls it from one goroutine, except
// for Logout, which touches nothing the others use.
type session struct {
	s       *Server
	conn    *smtp.Conn
	trusted bool
	ip      string
	id      string // the connection id: on every log line and in replies
	log     *slog.Logger
	txns    int // messages accepted so far; numbers the queue ids

	user *mailmap.User // nil until AUTH succeeds (set from the start when trusted)

	// The current transaction.
	from  string // sender identity BM-…
	ret   string
	envID string
	rcpts []gateway.Recipient
}

var _ smtp.AuthSession = (*session)(nil)

func (se *session) AuthMechanisms() []string {
	if se.trusted {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

func (se *session) Auth(mech string) (sasl.Server, error) {
	if se.trusted {
		return nil, smtp.ErrAuthUnsupported
	}
	switch strings.ToUpper(mech) {
	case sasl.Plain:
		return saslReplies{sasl.NewPlainServer(func(identity, username, password string) error {
			// RFC 4616 §2: acting as another user is not supported.
			if identity != "" && identity != username {
				password = "" // a failed login, counted as one
			}
			return se.login(username, password)
		})}, nil
	case sasl.Login:
		return saslReplies{&loginServer{authenticate: se.login}}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// Replies to logins that are not failures of the password.
var (
	// errLoginLocked: the login guard did not let the attempt through;
	// nothing was checked (RFC 4954 §6: 454 4.7.0, temporary).
	errLoginLocked = &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many failed logins, try again later"}
	// errBadSASL: the SASL exchange itself was malformed (a PLAIN message
	// without its NUL separators, a LOGIN step out of order).
	errBadSASL = &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Authentication credentials invalid"}
)

// saslReplies turns the errors of a SASL mechanism that are not already
// replies (a malformed exchange) into an authentication failure: go-smtp
// would send them as a temporary 454 with the library's error text.
type saslReplies struct{ sasl.Server }

func (s saslReplies) Next(response []byte) ([]byte, bool, error) {
	ch, done, err := s.Server.Next(response)
	var se *smtp.SMTPError
	if err != nil && !errors.As(err, &se) {
		return nil, true, errBadSASL
	}
	return ch, done, err
}

// login checks credentials through the login guard. Its error is the reply
// go-smtp sends; the guard logs the decision.
func (se *session) login(username, password string) error {
	ctx, cancel := context.WithTimeout(se.s.ctx, callTimeout)
	defer cancel()
	verify := func(ctx context.Context) (mailmap.User, error) {
		if username == "" || password == "" {
			return mailmap.User{}, mailmap.ErrAuthFailed
		}
		return se.s.auth.Authenticate(ctx, username, password)
	}
	var u mailmap.User
	var err error
	if se.s.guard != nil {
		u, err = se.s.guard.Login(loginguard.WithConn(ctx, se.id), "smtp", se.ip, username, verify)
	} else {
		u, err = verify(ctx)
	}
	switch {
	case err == nil:
		se.user = &u
		se.log = se.log.With("user", u.Name)
		se.log.Debug("login")
		if tc := se.tracked(); tc != nil {
			tc.authenticated()
		}
		return nil
	case errors.Is(err, loginguard.ErrLocked):
		return errLoginLocked
	case errors.Is(err, mailmap.ErrAuthFailed), errors.Is(err, mailmap.ErrDisabled), errors.Is(err, mailmap.ErrNotFound):
		if se.s.guard == nil {
			se.log.Info("login failed", "user", logsafe.String(username))
		}
		return smtpReply(mailmap.ErrAuthFailed)
	case errors.Is(err, mailmap.ErrBusy):
		return smtpReply(gateway.AuthUnavailable(err))
	}
	se.log.Error("authentication unavailable", "err", err)
	return smtpReply(gateway.AuthUnavailable(err))
}

func (se *session) Mail(from string, opts *smtp.MailOptions) error {
	if se.user == nil {
		return smtp.ErrAuthRequired
	}
	if err := se.active(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(se.s.ctx, callTimeout)
	defer cancel()
	bm, err := se.s.sub.CheckSender(ctx, *se.user, from)
	if err != nil {
		return se.refuse("sender refused", err, "from", logsafe.String(from))
	}
	se.from = bm
	se.ret = string(opts.Return)
	se.envID = opts.EnvelopeID
	return nil
}

func (se *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	if se.user == nil {
		return smtp.ErrAuthRequired
	}
	if err := se.active(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(se.s.ctx, callTimeout)
	defer cancel()
	r, err := se.s.sub.CheckRecipient(ctx, *se.user, to)
	if err != nil {
		return se.refuse("recipient refused", err, "rcpt", logsafe.String(to))
	}
	switch {
	case opts.OriginalRecipient != "":
		r.Orig = opts.OriginalRecipient
	case r.Orig == "":
		r.Orig = to
	}
	r.Notify = notifyBits(opts.Notify)
	for _, have := range se.rcpts {
		if have.Kind == r.Kind && have.Address == r.Address {
			return nil // the same recipient twice gets one copy
		}
	}
	se.rcpts = append(se.rcpts, r)
	return nil
}

func (se *session) Data(r io.Reader) error {
	if se.user == nil {
		return smtp.ErrAuthRequired
	}
	raw, err := io.ReadAll(&deadlineReader{r: r, conn: se.conn.Conn(), timeout: se.s.cfg.ReadTimeout})
	if errors.Is(err, smtp.ErrTooLongLine) {
		// Permanent (a retry sends the same line): RFC 5321 §4.5.3.1.6
		// bounds a text line, §4.5.3.1.10 names the reply. The rest of the
		// stream cannot be parsed, so the connection ends with the reply.
		se.log.Info("message refused: line too long", "max", se.s.main.MaxLineLength)
		se.hangUp()
		return se.tag(errLineTooLong)
	}
	if err != nil {
		// smtp.ErrDataTooLarge passes through smtpReply as the 552 it is.
		if !errors.Is(err, smtp.ErrDataTooLarge) {
			se.log.Info("reading message failed", "err", err)
		}
		return se.tag(smtpReply(err))
	}
	if err := se.active(); err != nil {
		return err
	}
	sub := gateway.Submission{
		User:       *se.user,
		From:       se.from,
		Recipients: append([]gateway.Recipient(nil), se.rcpts...),
		Ret:        se.ret,
		EnvID:      se.envID,
		Raw:        raw,
	}
	ctx, cancel := context.WithTimeout(se.s.ctx, callTimeout)
	defer cancel()
	if err := se.s.sub.Submit(ctx, sub); err != nil {
		return se.refuse("message refused", err)
	}
	se.txns++
	id := fmt.Sprintf("%s.%d", se.id, se.txns)
	se.log.Info("message accepted", "id", id, "from", se.from, "recipients", len(sub.Recipients), "bytes", len(raw))
	return queued(id)
}

// queued is the reply to an accepted message, which names it with the id
// its log line carries (go-smtp sends a 2xx SMTPError as it is).
func queued(id string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "OK: queued as " + id}
}

// tag returns a copy of a refusal that names the session, so that a
// user's complaint leads to the session's log lines.
func (se *session) tag(r *smtp.SMTPError) *smtp.SMTPError {
	if r == nil {
		return nil
	}
	t := *r
	t.Message += " (session " + se.id + ")"
	return &t
}

// errLineTooLong answers a message with a line over go-smtp's limit (2000
// octets with CRLF; RFC 5321 allows 1000).
var errLineTooLong = &smtp.SMTPError{Code: 500, EnhancedCode: smtp.EnhancedCode{5, 5, 2}, Message: "Line too long, closing connection"}

// Replies that end a session whose account was disabled or deleted after
// login (RFC 5321 §3.8: 421, then the server closes the connection).
var (
	errAccountDisabled = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Account disabled, closing connection"}
	errAccountDeleted  = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Account no longer exists, closing connection"}
)

// active checks, before each command of a logged-in session, that the
// account was not disabled or deleted since the login. If it was, the
// reply says so and the connection is closed once the reply is written.
func (se *session) active() error {
	ctx, cancel := context.WithTimeout(se.s.ctx, callTimeout)
	defer cancel()
	err := se.s.auth.UserActive(ctx, se.user.ID)
	var reply *smtp.SMTPError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, mailmap.ErrDisabled):
		reply = errAccountDisabled
	case errors.Is(err, mailmap.ErrNotFound):
		reply = errAccountDeleted
	default:
		return se.refuse("account check failed", err)
	}
	se.log.Info("ending session: account disabled or deleted", "err", err)
	se.hangUp()
	return se.tag(reply)
}

// hangUp closes the connection once the reply now due is written.
func (se *session) hangUp() {
	if tc := se.tracked(); tc != nil {
		tc.hangUpAfterReply()
	}
}

// tracked finds the session's connection under TLS.
func (se *session) tracked() *trackedConn {
	c := se.conn.Conn()
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	tc, _ := c.(*trackedConn)
	return tc
}

// refuse logs a refusal (the internal cause included, never the message)
// and returns the client's reply.
func (se *session) refuse(what string, err error, attrs ...any) error {
	reply := smtpReply(err)
	attrs = append(attrs, "code", reply.Code, "err", err)
	if reply.Code/100 == 4 {
		se.log.Warn(what, attrs...)
	} else {
		se.log.Info(what, attrs...)
	}
	return se.tag(reply)
}

func (se *session) Reset() {
	se.from, se.ret, se.envID, se.rcpts = "", "", "", nil
}

func (se *session) Logout() error { return nil }

// notifyBits converts RFC 3461 NOTIFY keywords to mailmap.Notify* bits; none
// given is 0 (the gateway then reports failures only).
func notifyBits(ns []smtp.DSNNotify) int {
	bits := 0
	for _, n := range ns {
		switch n {
		case smtp.DSNNotifySuccess:
			bits |= mailmap.NotifySuccess
		case smtp.DSNNotifyFailure:
			bits |= mailmap.NotifyFailure
		case smtp.DSNNotifyDelayed:
			bits |= mailmap.NotifyDelay
		case smtp.DSNNotifyNever:
			bits |= mailmap.NotifyNever
		}
	}
	return bits
}

// deadlineReader renews the connection's read deadline before every read of
// the message, so the read timeout bounds a stall, not the whole transfer
// (go-smtp sets it once per command line).
type deadlineReader struct {
	r       io.Reader
	conn    net.Conn
	timeout time.Duration
}

func (d *deadlineReader) Read(p []byte) (int, error) {
	d.conn.SetReadDeadline(time.Now().Add(d.timeout))
	return d.r.Read(p)
}

// loginServer is the server side of SASL LOGIN (draft-murchison-sasl-login),
// which go-sasl lacks and Microsoft clients use: "Username:" and
// "Password:" challenges, or the user name as the initial response.
type loginServer struct {
	authenticate func(username, password string) error
	state        int
	username     string
}

const (
	loginStart = iota
	loginWantUser
	loginWantPassword
	loginDone
)

func (l *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch l.state {
	case loginStart:
		if response == nil { // no initial response: ask for the user name
			l.state = loginWantUser
			return []byte("Username:"), false, nil
		}
		l.username = string(response)
		l.state = loginWantPassword
		return []byte("Password:"), false, nil
	case loginWantUser:
		l.username = string(response)
		l.state = loginWantPassword
		return []byte("Password:"), false, nil
	case loginWantPassword:
		l.state = loginDone
		return nil, true, l.authenticate(l.username, string(response))
	}
	return nil, true, sasl.ErrUnexpectedClientResponse
}
