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

	// Legacy charsets (ISO-8859-x, Windows-125x...) for SEARCH BODY/TEXT.
	_ "github.com/emersion/go-message/charset"
)

// Defaults for zero Config fields.
const (
	DefaultMaxConnsPerIP   = 20
	DefaultMaxConnsPerUser = 20
	DefaultAppendLimit     = 10 << 20
	DefaultAuthFailDelay   = time.Second
	DefaultPollInterval    = 15 * time.Second

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
	// Logger receives server events; nil discards them. Credentials and
	// message contents are never logged.
	Logger *slog.Logger
	// AuthFailDelay is the wait added per recent failed login from the same
	// IP (default 1 s; negative disables).
	AuthFailDelay time.Duration
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
	if c.AuthFailDelay == 0 {
		c.AuthFailDelay = DefaultAuthFailDelay
	} else if c.AuthFailDelay < 0 {
		c.AuthFailDelay = 0
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
type Server struct {
	store    Store
	cfg      Config
	log      *slog.Logger
	imap     *imapserver.Server
	ipConns  *counter
	throttle *authThrottle

	ctx    context.Context // cancelled by Close; parent of every store call
	cancel context.CancelFunc

	mu     sync.Mutex
	users  map[int64]*userHub
	closed bool

	sessions   atomic.Int64
	sessionsWG sync.WaitGroup
}

// New returns a server; it does nothing until Serve or ServeTLS.
// An invalid cfg (see Config.Validate) makes every Serve call fail.
func New(store Store, cfg Config) *Server {
	cfg.setDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		store:    store,
		cfg:      cfg,
		log:      cfg.Logger,
		ipConns:  newCounter(cfg.MaxConnsPerIP),
		throttle: newAuthThrottle(cfg.AuthFailDelay),
		ctx:      ctx,
		cancel:   cancel,
		users:    make(map[int64]*userHub),
	}
	s.imap = imapserver.New(&imapserver.Options{
		NewSession:   s.newSession,
		Caps:         capabilities,
		Logger:       libLogger{cfg.Logger},
		TLSConfig:    cfg.TLSConfig,
		InsecureAuth: cfg.AllowInsecureAuth,
	})
	return s
}

// Serve accepts plain connections on ln, offering STARTTLS when a TLSConfig
// is set. It returns nil after Close.
func (s *Server) Serve(ln net.Listener) error {
	if err := s.cfg.Validate(); err != nil {
		return err
	}
	return s.serve(&limitListener{Listener: ln, srv: s})
}

// ServeTLS accepts implicit-TLS connections (port 993) on ln.
func (s *Server) ServeTLS(ln net.Listener) error {
	if err := s.cfg.Validate(); err != nil {
		return err
	}
	if s.cfg.TLSConfig == nil {
		return errors.New("imapd: ServeTLS needs Config.TLSConfig")
	}
	// The limit wrapper goes under TLS so imapserver sees *tls.Conn.
	return s.serve(tls.NewListener(&limitListener{Listener: ln, srv: s}, s.cfg.TLSConfig))
}

func (s *Server) serve(ln net.Listener) error {
	err := s.imap.Serve(ln)
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
	s.mu.Unlock()
	s.cancel()
	err := s.imap.Close()
	done := make(chan struct{})
	go func() {
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
	ip := ""
	if tc != nil {
		ip = tc.ip
		if tc.over {
			s.log.Warn("imap connection limit per IP reached", "ip", ip)
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
	return &session{srv: s, conn: c, ip: ip}, nil, nil
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
