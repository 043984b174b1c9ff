package smtpd

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// limitListener counts connections per client IP, refuses those over
// Config.MaxConnsPerIP with a 421 and tracks the rest for Sessions and
// Shutdown. For a trusted listener it also drops non-local peers.
type limitListener struct {
	net.Listener
	s         *Server
	localOnly bool
	unix      bool // a unix socket: every peer is local, whatever its address says
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
		tc, ok := l.s.track(c, ip)
		if !ok {
			l.s.log.Info("too many connections", "remote", ip)
			go refuse(c)
			continue
		}
		return tc, nil
	}
}

// refuse answers a connection we will not serve (RFC 5321 §3.8: a 421
// greeting) and closes it. It runs apart from Accept so a client that
// does not read cannot stall the listener.
func refuse(c net.Conn) {
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte("421 4.7.0 Too many connections from your address, try again later\r\n"))
	c.Close()
}

// track records a new connection; it reports false when the client's IP is
// at its limit or the server is shut down.
func (s *Server) track(c net.Conn, ip string) (*trackedConn, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, false
	}
	if s.cfg.MaxConnsPerIP > 0 && s.perIP[ip] >= s.cfg.MaxConnsPerIP {
		return nil, false
	}
	tc := &trackedConn{Conn: c, s: s, ip: ip}
	s.conns[tc] = struct{}{}
	s.perIP[ip]++
	return tc, true
}

func (s *Server) untrack(tc *trackedConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, tc)
	if s.perIP[tc.ip]--; s.perIP[tc.ip] <= 0 {
		delete(s.perIP, tc.ip)
	}
}

// trackedConn leaves the server's books when it is closed, by go-smtp or by
// a TLS layer above it.
type trackedConn struct {
	net.Conn
	s    *Server
	ip   string
	once sync.Once

	hangUp atomic.Bool // close once the next write (the last reply) is done
}

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
