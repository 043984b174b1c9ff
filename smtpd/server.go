package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bmgate/bmgate/gateway"
	"github.com/bmgate/bmgate/mailmap"
	"github.com/bmgate/bmgate/mailmap/loginguard"
	"github.com/emersion/go-smtp"
)

// Authenticator checks a user's credentials. It returns mailmap.ErrAuthFailed
// (or ErrDisabled) for wrong credentials; any other error is taken as a
// temporary failure on our side.
type Authenticator interface {
	Authenticate(ctx context.Context, name, password string) (mailmap.User, error)
	// UserActive reports whether a logged-in user may still act: nil, or
	// mailmap.ErrDisabled / mailmap.ErrNotFound once the account was
	// disabled or deleted (the session then ends); any other error is a
	// temporary failure of that command. It runs before every MAIL, RCPT
	// and DATA, so it must be cheap (mailmap.Store caches the answer per
	// accounts generation).
	UserActive(ctx context.Context, userID int64) error
}

// Submitter is what smtpd hands mail to (the gateway).
type Submitter interface {
	// CheckSender checks that the envelope sender is one of the user's
	// identities (or an alias of one) and returns the identity BM-….
	CheckSender(ctx context.Context, u mailmap.User, from string) (bmFrom string, err error)
	// CheckRecipient validates and resolves one recipient; a refusal is a
	// *gateway.Error.
	CheckRecipient(ctx context.Context, u mailmap.User, rcpt string) (gateway.Recipient, error)
	// Submit checks the From header, parses the message and commits the
	// outbox rows; it returns only after the commit.
	Submit(ctx context.Context, s gateway.Submission) error
}

// Config configures a Server. Zero values take the defaults below.
type Config struct {
	Domain            string      // announced in the greeting; default "localhost"
	TLSConfig         *tls.Config // enables STARTTLS (Serve) and implicit TLS (ServeTLS)
	AllowInsecureAuth bool        // allow AUTH without TLS (tests, loopback-only setups)
	MaxMessageBytes   int64       // default gateway.MaxSubmissionBytes (advertised as SIZE)
	MaxRecipients     int         // default 50
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration // both default 60 s
	MaxConnsPerIP     int           // default 20, across the server's listeners; negative = unlimited
	// MaxConns caps the open connections of each Serve and ServeTLS
	// listener (default 1000; negative = unlimited); TrustedMaxConns those
	// of a ServeTrusted listener (default 100). Connections past a cap are
	// answered 421 and closed at once.
	MaxConns        int
	TrustedMaxConns int
	// LoginTimeout is how long a connection may stay without logging in,
	// from its accept (default 60 s; negative: no limit). The trusted
	// listener has no login and no such limit.
	LoginTimeout time.Duration
	// Guard counts failed logins and delays guessing (package loginguard).
	// Nil: a guard over the Authenticator when it is a loginguard.Store
	// (mailmap.Store is), otherwise none.
	Guard   *loginguard.Guard
	Logger  *slog.Logger
	Trusted *TrustedLocal // optional: see ServeTrusted
	// Commands, when set, is told of each AUTH, MAIL, RCPT and DATA.
	Commands CommandObserver
}

// TrustedLocal lets local programs submit without AUTH, as User, through a
// listener only this machine can reach (ServeTrusted).
type TrustedLocal struct {
	User mailmap.User
}

// Defaults.
const (
	DefaultMaxMessageBytes = gateway.MaxSubmissionBytes
	DefaultMaxRecipients   = 50
	DefaultTimeout         = 60 * time.Second
	DefaultMaxConnsPerIP   = 20
	DefaultMaxConns        = 1000
	DefaultTrustedMaxConns = 100
	DefaultLoginTimeout    = 60 * time.Second

	// callTimeout bounds each call into the Authenticator or Submitter.
	callTimeout = 2 * time.Minute
)

// Errors of the Serve methods.
var (
	ErrClosed      = errors.New("smtpd: server is shut down")
	ErrNoTLS       = errors.New("smtpd: implicit TLS needs a TLS configuration")
	ErrNoTrusted   = errors.New("smtpd: trusted submission needs Config.Trusted")
	ErrNotLoopback = errors.New("smtpd: trusted submission listens only on loopback addresses or unix sockets")
)

// Server is a submission server. One Server can serve several listeners.
type Server struct {
	auth     Authenticator
	sub      Submitter
	cfg      Config
	log      *slog.Logger
	guard    *loginguard.Guard
	refusing atomic.Int64 // goroutines writing a 421 to a refused connection

	main    *smtp.Server // Serve and ServeTLS
	trusted *smtp.Server // ServeTrusted

	ctx    context.Context // cancelled when Shutdown gives up waiting
	cancel context.CancelFunc

	mu        sync.Mutex
	closed    bool
	listeners []*limitListener
	conns     map[*trackedConn]struct{}
	perIP     map[string]int
}

// New returns a Server; it does not listen yet.
func New(auth Authenticator, sub Submitter, cfg Config) *Server {
	if cfg.Domain == "" {
		cfg.Domain = "localhost"
	}
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if cfg.MaxRecipients <= 0 {
		cfg.MaxRecipients = DefaultMaxRecipients
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = DefaultTimeout
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultTimeout
	}
	if cfg.MaxConnsPerIP == 0 {
		cfg.MaxConnsPerIP = DefaultMaxConnsPerIP
	}
	if cfg.MaxConns == 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.TrustedMaxConns == 0 {
		cfg.TrustedMaxConns = DefaultTrustedMaxConns
	}
	if cfg.LoginTimeout == 0 {
		cfg.LoginTimeout = DefaultLoginTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Guard == nil {
		if gs, ok := auth.(loginguard.Store); ok {
			cfg.Guard = loginguard.New(loginguard.Config{Store: gs, Logger: cfg.Logger})
		}
	}
	s := &Server{
		auth:  auth,
		sub:   sub,
		cfg:   cfg,
		log:   cfg.Logger,
		guard: cfg.Guard,
		conns: make(map[*trackedConn]struct{}),
		perIP: make(map[string]int),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.main = s.newSMTP(false)
	s.trusted = s.newSMTP(true)
	return s
}

func (s *Server) newSMTP(trusted bool) *smtp.Server {
	srv := smtp.NewServer(&backend{s: s, trusted: trusted})
	srv.Domain = s.cfg.Domain
	srv.MaxMessageBytes = s.cfg.MaxMessageBytes
	srv.MaxRecipients = s.cfg.MaxRecipients
	srv.ReadTimeout = s.cfg.ReadTimeout
	srv.WriteTimeout = s.cfg.WriteTimeout
	srv.EnableDSN = true // RFC 3461: NOTIFY, RET, ENVID, ORCPT
	srv.ErrorLog = errorLog{s.log}
	if !trusted {
		srv.TLSConfig = s.cfg.TLSConfig
		srv.AllowInsecureAuth = s.cfg.AllowInsecureAuth
	}
	return srv
}

// Serve accepts submissions on ln (port 587 style). STARTTLS is offered when
// Config.TLSConfig is set; AUTH needs TLS unless AllowInsecureAuth. It
// returns nil after Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	l, err := s.register(ln, "smtp", false, false)
	if err != nil {
		return err
	}
	return s.served(s.main.Serve(l))
}

// ServeTLS accepts submissions over implicit TLS on ln (port 465 style).
func (s *Server) ServeTLS(ln net.Listener) error {
	if s.cfg.TLSConfig == nil {
		return ErrNoTLS
	}
	l, err := s.register(ln, "smtps", false, true)
	if err != nil {
		return err
	}
	// Limits and tracking sit under TLS so go-smtp sees a *tls.Conn and
	// knows the session is encrypted.
	return s.served(s.main.Serve(tls.NewListener(l, s.cfg.TLSConfig)))
}

// ServeTrusted accepts submissions without AUTH on a loopback TCP or unix
// socket listener, all as Config.Trusted.User: for legacy scripts and the
// sendmail-style command on the same machine. It refuses to start on any
// other listener, and drops any connection not from a local address.
func (s *Server) ServeTrusted(ln net.Listener) error {
	if s.cfg.Trusted == nil {
		return ErrNoTrusted
	}
	if !isLocalAddr(ln.Addr()) {
		return fmt.Errorf("%w (got %s)", ErrNotLoopback, ln.Addr())
	}
	l, err := s.register(ln, "local_submit", true, false)
	if err != nil {
		return err
	}
	return s.served(s.trusted.Serve(l))
}

// served turns the error a listener gives after Shutdown closed it into
// the nil that Serve promises.
func (s *Server) served(err error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	return err
}

// Shutdown stops accepting connections and waits for open sessions to end.
// When ctx ends first, the remaining connections are closed and ctx's error
// is returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.closed = true
	listeners := s.listeners
	s.mu.Unlock()

	// Close the listeners here as well as in go-smtp: a Serve call may not
	// have handed its listener to go-smtp yet.
	for _, l := range listeners {
		l.Close()
	}
	done := make(chan struct{}, 2)
	for _, srv := range []*smtp.Server{s.main, s.trusted} {
		go func() {
			srv.Shutdown(ctx) // its errors are the closed listeners or ctx's
			done <- struct{}{}
		}()
	}
	<-done
	<-done
	s.cancel()
	if err := ctx.Err(); err != nil && s.Sessions() > 0 {
		s.closeConns()
		return err
	}
	return nil
}

// Sessions returns the number of open connections.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

func (s *Server) register(ln net.Listener, name string, trusted, implicitTLS bool) (net.Listener, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	_, unix := ln.Addr().(*net.UnixAddr)
	l := &limitListener{Listener: ln, s: s, name: name, localOnly: trusted, unix: unix, implicitTLS: implicitTLS, max: s.cfg.MaxConns}
	if trusted {
		l.max = s.cfg.TrustedMaxConns
	} else if s.cfg.LoginTimeout > 0 {
		l.loginBy = s.cfg.LoginTimeout
	}
	s.listeners = append(s.listeners, l)
	return l, nil
}

// Stats are a Server's connection counters.
type Stats struct {
	Listeners []ListenerStats
}

// ListenerStats describes one listener.
type ListenerStats struct {
	Name          string // "smtp", "smtps" or "local_submit"
	Open          int    // connections open now
	Max           int    // the cap (≤ 0: none)
	RefusedCap    uint64 // connections refused because the cap was reached
	RefusedPerIP  uint64 // connections refused because their address had MaxConnsPerIP
	LoginTimeouts uint64 // connections closed for not logging in within LoginTimeout
}

// Stats returns the listeners' counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	var st Stats
	for _, l := range s.listeners {
		st.Listeners = append(st.Listeners, ListenerStats{
			Name: l.name, Open: int(l.open.Load()), Max: l.max,
			RefusedCap: l.refusedCap.Load(), RefusedPerIP: l.refusedPerIP.Load(), LoginTimeouts: l.loginTimeouts.Load(),
		})
	}
	return st
}

// Guard returns the server's login guard (nil: none).
func (s *Server) Guard() *loginguard.Guard { return s.guard }

func (s *Server) closeConns() {
	s.mu.Lock()
	conns := make([]*trackedConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// errorLog adapts go-smtp's printf logger to slog. go-smtp logs connection
// errors and recovered panics here, never message data.
type errorLog struct{ l *slog.Logger }

func (e errorLog) Printf(format string, v ...any) { e.l.Warn(fmt.Sprintf(format, v...)) }
func (e errorLog) Println(v ...any)               { e.l.Warn(fmt.Sprint(v...)) }
