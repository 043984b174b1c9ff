package imapd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bmgate/bmgate/mailmap/logsafe"
)

// frontConn is the connection imapserver serves: it sits above TLS, so it
// sees the client's commands in the clear, and repairs what the library
// does not do right (see scanner): over-long literals, undecodable
// AUTHENTICATE data. It also performs STARTTLS itself, then hands the
// connection to the server's TLS-side imapserver (Server.secure), which
// greets again; the front swallows that greeting. imapserver decides
// whether a connection is secure by its type (*tls.Conn): the plain-side
// server offers STARTTLS and refuses logins without TLS (unless
// AllowInsecureAuth), the TLS-side server serves only TLS connections.
//
// Until the session logs in, read deadlines are cut to loginBy
// (Config.LoginTimeout after the accept).
type frontConn struct {
	net.Conn // below: the trackedConn (plain) or a *tls.Conn over it
	srv      *Server
	raw      *trackedConn
	gate     *gate
	secure   bool
	loginBy  time.Time // zero: no limit
	authed   atomic.Bool

	rmu      sync.Mutex // the reading side: imapserver's connection goroutine
	sc       *scanner
	pending  []byte // verdict data not yet handed out
	buf      []byte
	timedOut bool

	wmu       sync.Mutex // guards the fields below and the front's own writes
	sawOutput bool       // imapserver wrote since the last segment was handed out
	cont      bool       // ...and its first write was a continuation request
	swallow   bool       // drop imapserver's greeting (a connection after STARTTLS)
	next      *frontConn // after STARTTLS: handed to the TLS side when imapserver closes this one
	closed    bool
	closeErr  error
}

func newFront(srv *Server, below net.Conn, raw *trackedConn, g *gate, secure bool, loginBy time.Time) *frontConn {
	return &frontConn{Conn: below, srv: srv, raw: raw, gate: g, secure: secure, loginBy: loginBy, sc: newScanner()}
}

// frontOf finds the front under an imapserver connection.
func frontOf(c net.Conn) *frontConn {
	f, _ := c.(*frontConn)
	return f
}

func (f *frontConn) Read(p []byte) (int, error) {
	f.rmu.Lock()
	defer f.rmu.Unlock()
	for {
		if len(f.pending) > 0 {
			n := copy(p, f.pending)
			f.pending = f.pending[n:]
			return n, nil
		}
		f.wmu.Lock()
		cont, upgraded := f.cont, f.next != nil
		f.wmu.Unlock()
		if upgraded {
			return 0, io.EOF // this session ends; the TLS side takes over
		}
		v := f.sc.next(cont)
		switch v.kind {
		case deliver:
			if v.newSegment {
				f.wmu.Lock()
				f.sawOutput, f.cont = false, false
				f.wmu.Unlock()
			}
			f.pending = v.data
		case needInput:
			if err := f.fill(); err != nil {
				return 0, err
			}
		case tooBig:
			f.sc.drop()
			size := "too many"
			if v.size >= 0 {
				size = fmt.Sprint(v.size)
			}
			f.raw.log.Info("imap literal too large", "tag", logsafe.String(v.tag), "size", size)
			f.srv.literalRefusals.Add(1)
			reply := fmt.Sprintf("%s NO [TOOBIG] Literal of %s bytes is over the limit of %d for this command\r\n", v.tag, size, bufferedLiteralMax)
			if !v.hangUp {
				if err := f.writeOwn(reply); err != nil {
					return 0, err
				}
				continue
			}
			f.writeOwn(reply + "* BYE Too large literal, closing connection\r\n")
			f.Conn.Close()
			return 0, net.ErrClosed
		case badSASL:
			f.sc.drop()
			f.raw.log.Info("imap AUTHENTICATE: initial response is not base64")
			if err := f.writeOwn(v.tag + " BAD Malformed SASL response\r\n"); err != nil {
				return 0, err
			}
		case startTLS:
			if f.secure || f.srv.cfg.TLSConfig == nil || f.authed.Load() {
				f.pending = f.sc.release().data // imapserver refuses it itself
				f.wmu.Lock()
				f.sawOutput, f.cont = false, false
				f.wmu.Unlock()
				continue
			}
			f.sc.drop()
			if err := f.startTLS(v.tag); err != nil {
				return 0, err
			}
		}
	}
}

// fill reads more from the client into the scanner.
func (f *frontConn) fill() error {
	if f.buf == nil {
		f.buf = make([]byte, 4096)
	}
	n, err := f.Conn.Read(f.buf)
	if n > 0 {
		f.sc.push(f.buf[:n])
	}
	if err == nil {
		return nil
	}
	var ne net.Error
	if !f.timedOut && !f.loginBy.IsZero() && !f.authed.Load() && errors.As(err, &ne) && ne.Timeout() && !time.Now().Before(f.loginBy) {
		// RFC 9051 §7.1.5: BYE before an autologout.
		f.timedOut = true
		f.gate.loginTimeouts.Add(1)
		f.raw.log.Info("imap connection closed: no login in time")
		f.writeOwn("* BYE Autologout; no login in time\r\n")
	}
	if n > 0 && errors.Is(err, io.EOF) {
		return nil // hand out what came; EOF again next time
	}
	return err
}

// writeOwn writes a reply of the front itself. It runs only between
// imapserver's commands (imapserver is waiting in Read), so it cannot cut
// into one of imapserver's responses.
func (f *frontConn) writeOwn(s string) error {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	_, err := f.Conn.Write([]byte(s))
	return err
}

func (f *frontConn) Write(p []byte) (int, error) {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	if f.swallow {
		// The TLS side's greeting, after STARTTLS: the client had its
		// greeting already (RFC 9051 §6.2.1).
		i := indexCRLF(p)
		if i < 0 {
			return len(p), nil
		}
		f.swallow = false
		if rest := p[i+2:]; len(rest) > 0 {
			if _, err := f.Conn.Write(rest); err != nil {
				return 0, err
			}
		}
		return len(p), nil
	}
	if !f.sawOutput && len(p) > 0 {
		f.sawOutput = true
		f.cont = p[0] == '+'
	}
	return f.Conn.Write(p)
}

func indexCRLF(p []byte) int {
	for i := 0; i+1 < len(p); i++ {
		if p[i] == '\r' && p[i+1] == '\n' {
			return i
		}
	}
	return -1
}

// startTLS answers STARTTLS, makes the handshake and prepares the handoff:
// the caller's Read then reports EOF, imapserver ends the plain session and
// closes this front, and Close hands the TLS connection to the TLS side.
func (f *frontConn) startTLS(tag string) error {
	// Nothing the client sent in the clear after STARTTLS may be read as
	// if it came over TLS (command injection, CVE-2011-0411).
	f.sc.discardInput()
	if err := f.writeOwn(tag + " OK Begin TLS negotiation now\r\n"); err != nil {
		return err
	}
	tc := tls.Server(f.Conn, f.srv.cfg.TLSConfig)
	ctx, cancel := context.WithTimeout(f.srv.ctx, handshakeTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		f.raw.log.Info("imap STARTTLS handshake failed", "err", err)
		f.Conn.Close()
		return err
	}
	next := newFront(f.srv, tc, f.raw, f.gate, true, f.loginBy)
	next.swallow = true
	f.wmu.Lock()
	f.next = next
	f.wmu.Unlock()
	return nil
}

// authenticated lifts the login deadline.
func (f *frontConn) authenticated() {
	f.authed.Store(true)
	f.Conn.SetReadDeadline(time.Time{}) // imapserver sets its own before each read
}

func (f *frontConn) SetReadDeadline(t time.Time) error { return f.Conn.SetReadDeadline(f.cut(t)) }

func (f *frontConn) SetDeadline(t time.Time) error {
	if err := f.Conn.SetWriteDeadline(t); err != nil {
		return err
	}
	return f.Conn.SetReadDeadline(f.cut(t))
}

// cut applies the login deadline to a read deadline.
func (f *frontConn) cut(t time.Time) time.Time {
	if f.loginBy.IsZero() || f.authed.Load() {
		return t
	}
	if t.IsZero() || t.After(f.loginBy) {
		return f.loginBy
	}
	return t
}

// Close closes the connection, or, after STARTTLS, hands it to the TLS side.
func (f *frontConn) Close() error {
	f.wmu.Lock()
	if f.closed {
		err := f.closeErr
		f.wmu.Unlock()
		return err
	}
	f.closed = true
	next := f.next
	f.wmu.Unlock()
	if next != nil {
		if !f.srv.handoff(next) {
			next.Close()
		}
		return nil
	}
	err := f.Conn.Close()
	f.wmu.Lock()
	f.closeErr = err
	f.wmu.Unlock()
	return err
}

// gate is one listener's admission: its cap of open connections
// (Config.MaxConns), the per-IP limit (across listeners, checked at the
// session's start so the BYE can travel over TLS) and its counters.
type gate struct {
	net.Listener
	srv    *Server
	name   string // "imap" or "imaps"
	secure bool   // implicit TLS: nothing can be said before the handshake

	mark          *serveMark
	max           int
	open          atomic.Int64
	refusedCap    atomic.Uint64
	refusedPerIP  atomic.Uint64
	loginTimeouts atomic.Uint64
}

// maxRefusing bounds the goroutines writing a BYE to refused connections.
const maxRefusing = 64

func (g *gate) Accept() (net.Conn, error) {
	g.mark.accepting()
	for {
		c, err := g.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if g.max > 0 && g.open.Load() >= int64(g.max) {
			g.refuse(c)
			continue
		}
		g.open.Add(1)
		// Until imapserver sets its own deadlines (greeting write, first
		// command read), bound the TLS handshake of implicit-TLS
		// connections, which would otherwise wait for a ClientHello forever.
		c.SetReadDeadline(time.Now().Add(handshakeTimeout))
		ip := hostOf(c.RemoteAddr())
		id := logsafe.NewID()
		tc := &trackedConn{Conn: c, ip: ip, id: id, log: g.srv.log.With("conn", id, "ip", ip)}
		release := func() { g.open.Add(-1) }
		if g.srv.ipConns.acquire(ip) {
			tc.release = func() {
				g.srv.ipConns.release(ip)
				release()
			}
		} else {
			tc.over = true
			tc.release = release
		}
		var loginBy time.Time
		if g.srv.cfg.LoginTimeout > 0 {
			loginBy = time.Now().Add(g.srv.cfg.LoginTimeout)
		}
		if g.secure {
			return newFront(g.srv, tls.Server(tc, g.srv.cfg.TLSConfig), tc, g, true, loginBy), nil
		}
		return newFront(g.srv, tc, tc, g, false, loginBy), nil
	}
}

// refuse turns a connection over the cap away at once: a BYE on a plain
// connection (RFC 9051 §7.1.5), just a close under implicit TLS.
func (g *gate) refuse(c net.Conn) {
	if g.refusedCap.Add(1)%1000 == 1 { // a flood logs once in a thousand
		g.srv.log.Warn("imap connection cap reached, refusing connections", "listener", g.name, "max", g.max, "remote", hostOf(c.RemoteAddr()))
	}
	if g.secure {
		c.Close()
		return
	}
	if g.srv.refusing.Add(1) > maxRefusing {
		g.srv.refusing.Add(-1)
		c.Close()
		return
	}
	go func() {
		defer g.srv.refusing.Add(-1)
		c.SetWriteDeadline(time.Now().Add(2 * time.Second))
		c.Write([]byte("* BYE [UNAVAILABLE] Too many connections, try again later\r\n"))
		c.Close()
	}()
}

// handoffListener feeds the TLS-side imapserver the connections that did
// STARTTLS on the plain side.
type handoffListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
	mark *serveMark
}

func newHandoffListener() *handoffListener {
	return &handoffListener{ch: make(chan net.Conn), done: make(chan struct{}), mark: newServeMark()}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	l.mark.accepting()
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return handoffAddr{} }

type handoffAddr struct{}

func (handoffAddr) Network() string { return "starttls" }
func (handoffAddr) String() string  { return "starttls" }

// serveMark orders an imapserver's Serve before its Close for the race
// detector. Serve adds to a WaitGroup that Close waits on, and when no
// connection came, nothing between the two synchronises (go-imap v2
// beta.8), so Close first waits for the listener's first Accept (which
// Serve calls after the Add) or for Serve's end.
type serveMark struct {
	startOnce, endOnce sync.Once
	started, ended     chan struct{}
}

func newServeMark() *serveMark {
	return &serveMark{started: make(chan struct{}), ended: make(chan struct{})}
}

func (m *serveMark) accepting() { m.startOnce.Do(func() { close(m.started) }) }
func (m *serveMark) end()       { m.endOnce.Do(func() { close(m.ended) }) }

func (m *serveMark) wait(limit time.Duration) {
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case <-m.started:
	case <-m.ended:
	case <-t.C:
	}
}
