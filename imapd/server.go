package imapd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/bmgate/bmgate/mailmap/loginguard"
	"github.com/bmgate/bmgate/mailmap/logsafe"

	// Legacy charsets (ISO-8859-x, Windows-125x...) for SEARCH BODY/TEXT.
	_ "github.com/emersion/go-message/charset"
)

// Defaults for zero Config fields.
const (
	DefaultMaxConnsPerIP   = 20
	DefaultMaxConnsPerUser = 20
	DefaultAppendLimit     = 10 << 20
	DefaultPollInterval    = 15 * time.Second
	DefaultMaxConns        = 1000
	DefaultLoginTimeout    = 60 * time.Second

	// commandTimeout bounds the store work of one command.
	commandTimeout = 2 * time.Minute
	// closeWait bounds how long Close waits for sessions to wind down.
	closeWait = 5 * time.Second
)

// Config configures a Server. The zero value of each field means its default.
type Config struct {
	// TLSConfig enables STARTTLS on Serve and is required by ServeTLS.
	TLSConfig *tls.Config
	// AllowInsecureAuth allows LOGIN and AUTHENTICATE without TLS. Only for
	// loopback listeners.
	AllowInsecureAuth bool
	// MaxConnsPerIP bounds concurrent connections from one remote address
	// (default 20).
	MaxConnsPerIP int
	// MaxConnsPerUser bounds concurrent logged-in sessions of one user
	// (default 20).
	MaxConnsPerUser int
	// AppendLimit is the largest message APPEND accepts, advertised as
	// APPENDLIMIT (default 10 MiB).
	AppendLimit uint32
	// MaxConns caps the open connections of each Serve or ServeTLS
	// listener (default 1000; negative: no cap). Connections past it get
	// a BYE (plain) or are closed (implicit TLS) at once.
	MaxConns int
	// LoginTimeout is how long a connection may stay without logging in,
	// from its accept (default 60 s; negative: no limit); then it gets a
	// BYE. imapserver's own idle limit before login is 30 s per command.
	LoginTimeout time.Duration
	// Guard counts failed logins and delays guessing (package loginguard);
	// nil: a guard over Store when it is a loginguard.Store (mailmap.Store
	// is), otherwise none.
	Guard *loginguard.Guard
	// Logger receives server events; nil discards them. Credentials and
	// message contents are never logged.
	Logger *slog.Logger
	// Commands, when set, is told of each LOGIN, SELECT, FETCH, SEARCH,
	// STORE, COPY, MOVE, EXPUNGE, APPEND, LIST, STATUS, CREATE, DELETE
	// and RENAME.
	Commands CommandObserver
	// PollInterval is how often a selected mailbox is checked against the
	// store when no change notice arrived (a backstop for lost notices and
	// writers without a notifier; default 15 s).
	PollInterval time.Duration
}

// Validate reports a Config that cannot work.
func (c *Config) Validate() error {
	switch {
	case c.MaxConnsPerIP < 0:
		return errors.New("imapd: MaxConnsPerIP is negative")
	case c.MaxConnsPerUser < 0:
		return errors.New("imapd: MaxConnsPerUser is negative")
	case c.PollInterval < 0:
		return errors.New("imapd: PollInterval is negative")
	}
	return nil
}

func (c *Config) setDefaults() {
	if c.MaxConnsPerIP == 0 {
		c.MaxConnsPerIP = DefaultMaxConnsPerIP
	}
	if c.MaxConnsPerUser == 0 {
		c.MaxConnsPerUser = DefaultMaxConnsPerUser
	}
	if c.AppendLimit == 0 {
		c.AppendLimit = DefaultAppendLimit
	}
	if c.MaxConns == 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.LoginTimeout == 0 {
		c.LoginTimeout = DefaultLoginTimeout
	}
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// capabilities is what the server advertises beyond what imapserver adds by
// itself (IDLE, UNSELECT, ENABLE, SASL-IR, LITERAL-, UTF8=ACCEPT, STARTTLS,
// AUTH=PLAIN and APPENDLIMIT=n from SessionAppendLimit). Every entry is
// honoured by session; TestCapabilitiesHaveInterfaces checks the ones
// imapserver would panic on.
var capabilities = imap.CapSet{
	imap.CapIMAP4rev1:    {},
	imap.CapIMAP4rev2:    {},
	imap.CapNamespace:    {},
	imap.CapUIDPlus:      {},
	imap.CapESearch:      {},
	imap.CapSearchRes:    {},
	imap.CapListExtended: {},
	imap.CapListStatus:   {},
	imap.CapMove:         {},
	imap.CapStatusSize:   {},
	imap.CapBinary:       {},
	imap.CapChildren:     {},
	imap.CapSpecialUse:   {},
	imap.CapLiteralPlus:  {},
}

// Server is an IMAP server over a Store.
//
// It runs two imapservers: plain serves connections before TLS (it offers
// STARTTLS, which the front performs: see frontConn), secure serves those
// over TLS, implicit or after STARTTLS (handed over through handoffLn).
type Server struct {
	store   Store
	cfg     Config
	log     *slog.Logger
	plain   *imapserver.Server
	secure  *imapserver.Server
	ipConns *counter
	guard   *loginguard.Guard

	handoffLn *handoffListener
	handoffWG sync.WaitGroup // the TLS side's Serve on handoffLn

	refusing        atomic.Int64  // goroutines writing a BYE to a refused connection
	literalRefusals atomic.Uint64 // commands refused for a too large literal

	ctx    context.Context // cancelled by Close; parent of every store call
	cancel context.CancelFunc

	mu             sync.Mutex
	users          map[int64]*userHub
	closed         bool
	gates          []*gate
	marks          []*serveMark // of the listeners given to imapserver (see serveMark)
	handoffStarted bool

	sessions   atomic.Int64
	sessionsWG sync.WaitGroup
}

// New returns a server; it does nothing until Serve or ServeTLS.
// An invalid cfg (see Config.Validate) makes every Serve call fail.
func New(store Store, cfg Config) *Server {
	cfg.setDefaults()
	if cfg.Guard == nil {
		if gs, ok := store.(loginguard.Store); ok {
			cfg.Guard = loginguard.New(loginguard.Config{Store: gs, Logger: cfg.Logger})
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		store:     store,
		cfg:       cfg,
		log:       cfg.Logger,
		ipConns:   newCounter(cfg.MaxConnsPerIP),
		guard:     cfg.Guard,
		handoffLn: newHandoffListener(),
		ctx:       ctx,
		cancel:    cancel,
		users:     make(map[int64]*userHub),
	}
	s.plain = imapserver.New(&imapserver.Options{
		NewSession:   s.newSession,
		Caps:         capabilities,
		Logger:       libLogger{cfg.Logger},
		TLSConfig:    cfg.TLSConfig, // offers STARTTLS; the front performs it
		InsecureAuth: cfg.AllowInsecureAuth,
	})
	s.secure = imapserver.New(&imapserver.Options{
		NewSession:   s.newSession,
		Caps:         capabilities,
		Logger:       libLogger{cfg.Logger},
		InsecureAuth: true, // every connection it gets is over TLS
	})
	return s
}

// Serve accepts plain connections on ln, offering STARTTLS when a TLSConfig
// is set. It returns nil after Close.
func (s *Server) Serve(ln net.Listener) error {
	if err := s.cfg.Validate(); err != nil {
		return err
	}
	if s.cfg.TLSConfig != nil {
		s.mu.Lock()
		if !s.closed && !s.handoffStarted {
			s.handoffStarted = true
			s.handoffWG.Add(1)
			s.marks = append(s.marks, s.handoffLn.mark)
			go func() {
				defer s.handoffWG.Done()
				defer s.handoffLn.mark.end()
				s.secure.Serve(s.handoffLn)
			}()
		}
		s.mu.Unlock()
	}
	return s.serve(s.plain, s.newGate(ln, "imap", false))
}

// ServeTLS accepts implicit-TLS connections (port 993) on ln.
func (s *Server) ServeTLS(ln net.Listener) error {
	if err := s.cfg.Validate(); err != nil {
		return err
	}
	if s.cfg.TLSConfig == nil {
		return errors.New("imapd: ServeTLS needs Config.TLSConfig")
	}
	return s.serve(s.secure, s.newGate(ln, "imaps", true))
}

func (s *Server) newGate(ln net.Listener, name string, secure bool) *gate {
	g := &gate{Listener: ln, srv: s, name: name, secure: secure, max: s.cfg.MaxConns, mark: newServeMark()}
	s.mu.Lock()
	s.gates = append(s.gates, g)
	s.marks = append(s.marks, g.mark)
	s.mu.Unlock()
	return g
}

// handoff gives a connection that did STARTTLS to the TLS side; false when
// the server is closing.
func (s *Server) handoff(c *frontConn) bool {
	select {
	case s.handoffLn.ch <- c:
		return true
	case <-s.handoffLn.done:
		return false
	case <-s.ctx.Done():
		return false
	}
}

// Stats are a Server's connection counters.
type Stats struct {
	Listeners []ListenerStats
	// LiteralRefusals counts commands refused for a literal over the limit.
	LiteralRefusals uint64
}

// ListenerStats describes one listener.
type ListenerStats struct {
	Name          string // "imap" or "imaps"
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
	st := Stats{LiteralRefusals: s.literalRefusals.Load()}
	for _, g := range s.gates {
		st.Listeners = append(st.Listeners, ListenerStats{
			Name: g.name, Open: int(g.open.Load()), Max: g.max,
			RefusedCap: g.refusedCap.Load(), RefusedPerIP: g.refusedPerIP.Load(), LoginTimeouts: g.loginTimeouts.Load(),
		})
	}
	return st
}

// Guard returns the server's login guard (nil: none).
func (s *Server) Guard() *loginguard.Guard { return s.guard }

func (s *Server) serve(srv *imapserver.Server, g *gate) error {
	defer g.mark.end()
	err := srv.Serve(g)
	if err != nil && s.isClosed() {
		return nil
	}
	if err != nil {
		return fmt.Errorf("serve imap: %w", err)
	}
	return nil
}

// Close closes every listener and connection and waits (briefly) for the
// sessions to end.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	marks := s.marks
	s.mu.Unlock()
	s.cancel()
	for _, m := range marks {
		m.wait(closeWait)
	}
	err := errors.Join(s.plain.Close(), s.secure.Close())
	s.handoffLn.Close()
	done := make(chan struct{})
	go func() {
		s.handoffWG.Wait() // no Add after closed is set
		s.sessionsWG.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(closeWait):
		s.log.Warn("imap sessions still running after close")
	}
	if err != nil {
		return fmt.Errorf("close imap server: %w", err)
	}
	return nil
}

// Sessions returns the number of open IMAP sessions.
func (s *Server) Sessions() int { return int(s.sessions.Load()) }

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *Server) newSession(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
	tc := connOf(c.NetConn())
	ip, id := "", ""
	var log *slog.Logger
	if tc != nil {
		ip, id, log = tc.ip, tc.id, tc.log
		if tc.over {
			if f := frontOf(c.NetConn()); f != nil {
				f.gate.refusedPerIP.Add(1)
			}
			log.Warn("imap connection limit per IP reached")
			return nil, nil, errTooManyIPConns
		}
	}
	s.mu.Lock()
	closed := s.closed
	if !closed {
		s.sessionsWG.Add(1)
	}
	s.mu.Unlock()
	if closed {
		return nil, nil, errShuttingDown
	}
	s.sessions.Add(1)
	if log == nil {
		id = logsafe.NewID()
		log = s.log.With("conn", id, "ip", ip)
	}
	se := &session{srv: s, conn: c, ip: ip, id: id, log: log}
	if obs := s.cfg.Commands; obs != nil {
		return observedSession{session: se, obs: obs}, nil, nil
	}
	return se, nil, nil
}

// sleep waits for d or until the server closes.
func (s *Server) sleep(d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.ctx.Done():
	}
}

// libLogger routes imapserver's Printf logging to slog. Its messages are
// about broken client connections (debug) except panics (error).
type libLogger struct{ log *slog.Logger }

func (l libLogger) Printf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if strings.HasPrefix(msg, "panic") {
		l.log.Error("imap library", "msg", msg)
		return
	}
	l.log.Debug("imap library", "msg", msg)
}
