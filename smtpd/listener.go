package smtpd

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bmgate/bmgate/mailmap/logsafe"
)

// limitListener is one listener's gate: it counts its open connections
// against its cap (Config.MaxConns, or TrustedMaxConns for ServeTrusted)
// and each client IP's against Config.MaxConnsPerIP (across the server's
// listeners), answers the connections it will not serve with a 421 at once
// (so a flood is turned away rather than left in the kernel's backlog), and
// tracks the rest for Sessions and Shutdown. For a trusted listener it also
// drops non-local peers.
type limitListener struct {
	net.Listener
	s           *Server
	name        string // "smtp", "smtps", "local_submit": logs and Stats
	localOnly   bool
	unix        bool // a unix socket: every peer is local, whatever its address says
	implicitTLS bool // nothing can be said before the TLS handshake: refusals just close
	max         int  // open connections at most (≤ 0: no cap)
	loginBy     time.Duration

	open          atomic.Int64
	refusedCap    atomic.Uint64
	refusedPerIP  atomic.Uint64
	loginTimeouts atomic.Uint64
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.localOnly && !l.unix && !isLocalAddr(c.RemoteAddr()) {
			l.s.log.Warn("dropping non-local connection on the trusted listener", "remote", c.RemoteAddr().String())
			c.Close()
			continue
		}
		ip := remoteIP(c.RemoteAddr())
		tc, why := l.s.track(c, ip, l)
		if why != "" {
			l.refuse(c, ip, why)
			continue
		}
		return tc, nil
	}
}

// maxRefusing bounds the goroutines writing 421s to refused clients; past
// it refused connections are closed without a word.
const maxRefusing = 64

var refusals = map[string]string{
	refusedPerIP: "421 4.7.0 Too many connections from your address, try again later\r\n",
	refusedCap:   "421 4.7.0 Too many connections, try again later\r\n",
	"closed":     "421 4.3.2 Server shutting down\r\n",
}

const (
	refusedPerIP = "per_ip"
	refusedCap   = "cap"
)

// refuse answers a connection we will not serve (RFC 5321 §3.8: a 421
// greeting) and closes it. The write runs apart from Accept, with a short
// deadline, so a client that does not read cannot stall the listener.
func (l *limitListener) refuse(c net.Conn, ip, why string) {
	switch why {
	case refusedCap:
		if l.refusedCap.Add(1)%1000 == 1 { // a flood logs once in a thousand
			l.s.log.Warn("connection cap reached, refusing connections", "listener", l.name, "max", l.max, "remote", ip)
		}
	case refusedPerIP:
		l.refusedPerIP.Add(1)
		l.s.log.Info("too many connections", "listener", l.name, "remote", ip)
	}
	if l.implicitTLS {
		c.Close()
		return
	}
	if l.s.refusing.Add(1) > maxRefusing {
		l.s.refusing.Add(-1)
		c.Close()
		return
	}
	go func() {
		defer l.s.refusing.Add(-1)
		c.SetWriteDeadline(time.Now().Add(2 * time.Second))
		c.Write([]byte(refusals[why]))
		c.Close()
	}()
}

// track records a new connection; it returns why it refuses one: the
// client's IP or the listener is at its limit, or the server is shut down.
func (s *Server) track(c net.Conn, ip string, l *limitListener) (*trackedConn, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return nil, "closed"
	case l.max > 0 && l.open.Load() >= int64(l.max):
		return nil, refusedCap
	case s.cfg.MaxConnsPerIP > 0 && s.perIP[ip] >= s.cfg.MaxConnsPerIP:
		return nil, refusedPerIP
	}
	tc := &trackedConn{Conn: c, s: s, l: l, ip: ip, id: logsafe.NewID()}
	if l.loginBy > 0 {
		tc.loginBy = time.Now().Add(l.loginBy)
	}
	s.conns[tc] = struct{}{}
	s.perIP[ip]++
	l.open.Add(1)
	return tc, ""
}

func (s *Server) untrack(tc *trackedConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, tc)
	if s.perIP[tc.ip]--; s.perIP[tc.ip] <= 0 {
		delete(s.perIP, tc.ip)
	}
	tc.l.open.Add(-1)
}

// trackedConn leaves the server's books when it is closed, by go-smtp or by
// a TLS layer above it. Until the session authenticates, every read
// deadline is cut to loginBy: an unauthenticated client gets
// Config.LoginTimeout in all, however it trickles its commands.
type trackedConn struct {
	net.Conn
	s    *Server
	l    *limitListener
	ip   string
	id   string // the connection id the session's log lines carry
	once sync.Once

	loginBy  time.Time // zero: no login deadline (trusted listener, or none configured)
	authed   atomic.Bool
	timedOut atomic.Bool

	hangUp atomic.Bool // close once the next write (the last reply) is done
}

// authenticated lifts the login deadline.
func (c *trackedConn) authenticated() { c.authed.Store(true) }

// hangUpAfterReply closes the connection after the next write to it, which
// is the reply to the command being handled: go-smtp has no way for a
// session to end the connection itself.
func (c *trackedConn) hangUpAfterReply() { c.hangUp.Store(true) }

func (c *trackedConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if c.hangUp.Load() {
		c.Close()
	}
	return n, err
}

func (c *trackedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	var ne net.Error
	if err != nil && !c.loginBy.IsZero() && !c.authed.Load() && errors.As(err, &ne) && ne.Timeout() &&
		!time.Now().Before(c.loginBy) && c.timedOut.CompareAndSwap(false, true) {
		c.l.loginTimeouts.Add(1)
		c.s.log.Info("closing connection: no login in time", "conn", c.id, "listener", c.l.name, "remote", c.ip)
	}
	return n, err
}

func (c *trackedConn) SetReadDeadline(t time.Time) error { return c.Conn.SetReadDeadline(c.cut(t)) }

func (c *trackedConn) SetDeadline(t time.Time) error {
	if err := c.Conn.SetWriteDeadline(t); err != nil {
		return err
	}
	return c.Conn.SetReadDeadline(c.cut(t))
}

// cut applies the login deadline to a read deadline.
func (c *trackedConn) cut(t time.Time) time.Time {
	if c.loginBy.IsZero() || c.authed.Load() {
		return t
	}
	if t.IsZero() || t.After(c.loginBy) {
		return c.loginBy
	}
	return t
}

func (c *trackedConn) Close() error {
	c.once.Do(func() { c.s.untrack(c) })
	return c.Conn.Close()
}

// remoteIP is the key for per-client limits: the IP of a TCP peer, "local"
// for a unix socket.
func remoteIP(a net.Addr) string {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.IP.String()
	case *net.UnixAddr:
		return "local"
	}
	if a == nil {
		return "local"
	}
	if host, _, err := net.SplitHostPort(a.String()); err == nil {
		return host
	}
	return a.String()
}

// isLocalAddr reports whether a is a unix socket or a loopback TCP address.
func isLocalAddr(a net.Addr) bool {
	switch a := a.(type) {
	case *net.UnixAddr:
		return true
	case *net.TCPAddr:
		return a.IP.IsLoopback()
	}
	return false
}
