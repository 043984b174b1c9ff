package imapd

import (
	"crypto/tls"
	"net"
	"sync"
	"time"
)

// trackedConn is the raw TCP connection as accepted. It is wrapped *outside*
// TLS: imapserver decides whether a connection is secure with
// c.conn.(*tls.Conn), so any wrapper around the *tls.Conn would make it treat
// TLS connections as plain (docs/compatibility.md, Library facts: go-imap).
//
// It also coalesces writes. imapserver flushes after every response line,
// which costs a write system call (and, under TLS, a record) per FETCH
// response: 90 % of a 10,000-message UID FETCH (FLAGS). Writes are kept
// until the server next reads from the client (it has then said all it has
// to say), or 32 KiB have gathered; while a read is in progress (IDLE,
// waiting for a command) writes go out at once. Write deadlines are set
// here, per flush, since imapserver's would lapse before a delayed flush.
type trackedConn struct {
	net.Conn
	ip      string
	over    bool // accepted beyond MaxConnsPerIP: the session greets with BYE
	release func()
	once    sync.Once

	wmu     sync.Mutex
	wbuf    []byte
	reading bool
	werr    error // sticky: the connection is unusable after a failed write
}

const (
	coalesceLimit = 32 << 10
	flushTimeout  = 30 * time.Second
)

func (c *trackedConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return 0, c.werr
	}
	if len(c.wbuf)+len(p) < coalesceLimit {
		c.wbuf = append(c.wbuf, p...)
		if c.reading {
			if err := c.flushLocked(flushTimeout); err != nil {
				return 0, err
			}
		}
		return len(p), nil
	}
	if err := c.flushLocked(flushTimeout); err != nil {
		return 0, err
	}
	return c.writeLocked(p, flushTimeout)
}

func (c *trackedConn) Read(p []byte) (int, error) {
	c.wmu.Lock()
	err := c.flushLocked(flushTimeout)
	c.reading = err == nil
	c.wmu.Unlock()
	if err != nil {
		return 0, err
	}
	n, err := c.Conn.Read(p)
	c.wmu.Lock()
	c.reading = false
	c.wmu.Unlock()
	return n, err
}

func (c *trackedConn) flushLocked(timeout time.Duration) error {
	if len(c.wbuf) == 0 {
		return c.werr
	}
	_, err := c.writeLocked(c.wbuf, timeout)
	c.wbuf = c.wbuf[:0]
	return err
}

func (c *trackedConn) writeLocked(p []byte, timeout time.Duration) (int, error) {
	c.Conn.SetWriteDeadline(time.Now().Add(timeout))
	n, err := c.Conn.Write(p)
	if err != nil {
		c.werr = err
	}
	return n, err
}

// SetWriteDeadline is ignored: flushes set their own (see trackedConn).
func (c *trackedConn) SetWriteDeadline(time.Time) error { return nil }

// SetDeadline sets the read deadline only (see SetWriteDeadline).
func (c *trackedConn) SetDeadline(t time.Time) error { return c.Conn.SetReadDeadline(t) }

// Close sends what is pending (briefly, and not if a flush is already
// stuck on a slow client) and closes the connection.
func (c *trackedConn) Close() error {
	if c.wmu.TryLock() {
		c.flushLocked(time.Second)
		c.wmu.Unlock()
	}
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// handshakeTimeout bounds a new connection's first exchange.
const handshakeTimeout = 30 * time.Second

// limitListener counts connections per remote IP.
type limitListener struct {
	net.Listener
	srv *Server
}

func (l *limitListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	// Until imapserver sets its own deadlines (greeting write, first
	// command read), bound the TLS handshake of implicit-TLS connections,
	// which would otherwise wait for a ClientHello forever.
	c.SetReadDeadline(time.Now().Add(handshakeTimeout))
	ip := hostOf(c.RemoteAddr())
	tc := &trackedConn{Conn: c, ip: ip, release: func() {}}
	if l.srv.ipConns.acquire(ip) {
		tc.release = func() { l.srv.ipConns.release(ip) }
	} else {
		tc.over = true
	}
	return tc, nil
}

// connOf finds the tracked raw connection under an imapserver connection,
// looking through TLS.
func connOf(c net.Conn) *trackedConn {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	tc, _ := c.(*trackedConn)
	return tc
}

func hostOf(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// counter bounds how many things a key may hold at once (connections per IP,
// sessions per user).
type counter struct {
	mu  sync.Mutex
	n   map[string]int
	max int
}

func newCounter(max int) *counter { return &counter{n: make(map[string]int), max: max} }

func (c *counter) acquire(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[key] >= c.max {
		return false
	}
	c.n[key]++
	return true
}

func (c *counter) release(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[key] <= 1 {
		delete(c.n, key)
	} else {
		c.n[key]--
	}
}

// authThrottle slows down password guessing: every failed login from an IP
// makes that IP's next failure wait longer (base × failures, up to 16 ×
// base). Failures are forgotten after failWindow without one. The wait happens
// before the NO is sent, in the connection's own goroutine, so a client
// cannot pipeline guesses on one connection, and MaxConnsPerIP bounds the
// parallel ones.
type authThrottle struct {
	base time.Duration
	now  func() time.Time

	mu    sync.Mutex
	fails map[string]*failRecord
}

type failRecord struct {
	n    int
	last time.Time
}

const (
	failWindow   = 10 * time.Minute
	maxFailSteps = 16
	maxFailIPs   = 100000
)

func newAuthThrottle(base time.Duration) *authThrottle {
	return &authThrottle{base: base, now: time.Now, fails: make(map[string]*failRecord)}
}

// failed records a failure from ip and returns how long to wait before
// answering it.
func (t *authThrottle) failed(ip string) time.Duration {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.fails) >= maxFailIPs {
		for k, r := range t.fails {
			if now.Sub(r.last) > failWindow {
				delete(t.fails, k)
			}
		}
	}
	r := t.fails[ip]
	if r == nil {
		if len(t.fails) >= maxFailIPs {
			// Still full of recent failures: an attack from many
			// addresses. Keep the map bounded and slow everyone.
			return t.base * maxFailSteps
		}
		r = &failRecord{}
		t.fails[ip] = r
	}
	if now.Sub(r.last) > failWindow {
		r.n = 0
	}
	r.n++
	r.last = now
	return t.base * time.Duration(min(r.n, maxFailSteps))
}
