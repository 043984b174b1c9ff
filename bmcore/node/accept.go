// Inbound connections: the accept loop, registration of peers, and the
// checks that keep one connection per node (own nonce, inbound claims).

package node

import (
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"time"
)

// acceptLoop accepts inbound connections until the listener closes.
func (n *Node) acceptLoop(ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			if n.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			n.log.Warn("accept failed", "err", err)
			select {
			case <-n.ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		n.accept(conn)
	}
}

func (n *Node) accept(conn net.Conn) {
	remote, _ := netip.ParseAddrPort(conn.RemoteAddr().String())
	remote = netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
	p := newPeer(n, true, "")
	p.remote = remote
	p.log = p.log.With("peer", remote.String())
	if n.bans.banned(p.banKey(), time.Now()) {
		p.log.Debug("refusing banned peer")
		_ = conn.Close()
		return
	}
	n.mu.Lock()
	inbound := 0
	for q := range n.peers {
		if q.inbound {
			inbound++
		}
	}
	if n.closed || inbound >= n.cfg.MaxInbound {
		n.mu.Unlock()
		p.log.Debug("refusing inbound connection: server full")
		_ = conn.Close()
		return
	}
	n.register(p)
	n.mu.Unlock()
	p.attach(conn)
	if !n.spawn(p.run) {
		p.close(ErrClosed, false)
		n.unregister(p)
	}
}

// register adds p to the pool; n.mu is held.
func (n *Node) register(p *peer) {
	n.peers[p] = struct{}{}
	n.nonces[p.nonce] = p
	if p.key != "" {
		n.byKey[p.key] = p
	}
}

// unregister removes p from the pool and hands its downloads to others.
func (n *Node) unregister(p *peer) {
	n.mu.Lock()
	delete(n.peers, p)
	delete(n.nonces, p.nonce)
	if p.key != "" && n.byKey[p.key] == p {
		delete(n.byKey, p.key)
	}
	n.mu.Unlock()
	n.fetch.peerGone(p)
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// claimInbound gives an inbound peer its address key (remote IP and
// advertised port) once its version arrived. It refuses a second inbound
// connection from one public IP and a second connection to one peer
// address. When both sides dial each other at once, the connection whose
// initiator sent the larger nonce wins on both ends, so exactly one
// survives (docs/protocol.md §3.3: keep at most one connection per peer address).
//
// Without AllowPrivateAddrs an inbound peer from loopback is taken to come
// through a local proxy (a Tor hidden service delivers every peer from
// 127.0.0.1, most advertising port 8444), so such peers are keyed by their
// socket address and never refused as duplicates.
func (n *Node) claimInbound(p *peer, port uint16, remoteNonce uint64) error {
	key := net.JoinHostPort(p.remote.Addr().String(), strconv.Itoa(int(port)))
	if p.remote.Addr().IsLoopback() && !n.cfg.AllowPrivateAddrs {
		key = p.remote.String()
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if !p.remote.Addr().IsLoopback() && !p.remote.Addr().IsPrivate() {
		for q := range n.peers {
			if q != p && q.inbound && q.remote.Addr() == p.remote.Addr() && !q.isClosing() {
				return errTooManyFromIP
			}
		}
	}
	if q := n.byKey[key]; q != nil && q != p && !q.isClosing() {
		if q.inbound || q.established.Load() || q.nonce >= remoteNonce {
			return errDuplicate
		}
		q.close(errSuperseded, false)
	}
	p.key = key
	n.byKey[key] = p
	return nil
}

// isOwnNonce reports whether nonce is one we sent (a connection to self)
// and, if so, returns that connection.
func (n *Node) ownNonce(nonce uint64) (*peer, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	p, ok := n.nonces[nonce]
	return p, ok
}

// listenPort is the port advertised in version: the listening port, or the
// network's default when not listening (as PyB sends its configured port).
func (n *Node) listenPort() uint16 {
	if a, ok := n.Addr().(*net.TCPAddr); ok {
		return uint16(a.Port)
	}
	return uint16(n.net.DefaultPort)
}

func randomNonce() uint64 {
	for {
		if v := rand.Uint64(); v != 0 {
			return v
		}
	}
}
