package imapd

import (
	"crypto/tls"
	"log/slog"
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
	id      string       // the connection id: on every log line of the connection
	log     *slog.Logger // the server's logger with the connection's id and address
	over    bool         // accepted beyond MaxConnsPerIP: the session greets with BYE
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

// handshakeTimeout bounds a new connection's TLS handshake.
const handshakeTimeout = 30 * time.Second

// connOf finds the tracked raw connection under an imapserver connection,
// looking through the front and TLS.
func connOf(c net.Conn) *trackedConn {
	if f := frontOf(c); f != nil {
		return f.raw
	}
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
