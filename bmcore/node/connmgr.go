package node

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"time"

	"github.com/bmgate/bmgate/bmcore/wire"
)

const (
	// maxDialing bounds concurrent discovery dials.
	maxDialing = 4
	// bootstrapEvery spaces attempts at the bootstrap DNS names.
	bootstrapEvery = time.Minute
)

// versionFor builds our version for a connection (docs/protocol.md §3.1).
func (n *Node) versionFor(p *peer) *wire.MsgVersion {
	var host string
	var port uint16
	if p.inbound {
		host, port = p.remote.Addr().String(), p.remote.Port()
	} else if h, ps, err := net.SplitHostPort(p.dialAddr); err == nil {
		v, _ := strconv.ParseUint(ps, 10, 16)
		host, port = h, uint16(v)
	}
	recv, err := wire.EncodeHost(host)
	if err != nil {
		// A host name or v3 onion has no 16-byte form; the receiver ignores
		// this field anyway.
		recv, _ = wire.EncodeHost("127.0.0.1")
	}
	loop, _ := wire.EncodeHost("127.0.0.1")
	return &wire.MsgVersion{
		ProtocolVersion: wire.ProtocolVersion,
		Services:        wire.ServiceNetwork, // never NODE_SSL (docs/protocol.md §3.4, §16)
		Timestamp:       n.cfg.Now().Unix(),
		AddrRecv:        wire.ShortAddr{Services: wire.ServiceNetwork, IP: recv, Port: port},
		AddrFrom:        wire.ShortAddr{Services: wire.ServiceNetwork, IP: loop, Port: n.listenPort()},
		Nonce:           p.nonce,
		UserAgent:       n.cfg.UserAgent,
		Streams:         n.streams,
	}
}

// dial starts an outbound connection to addr unless one exists.
func (n *Node) dial(addr string, bootstrap bool) bool {
	p := newPeer(n, false, addr)
	p.bootstrap = bootstrap
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.HandshakeTimeout)
	p.cancelDial = cancel
	n.mu.Lock()
	if n.closed || n.byKey[addr] != nil {
		n.mu.Unlock()
		cancel()
		return false
	}
	n.register(p)
	n.mu.Unlock()
	ok := n.spawn(func() {
		defer cancel()
		p.log.Debug("dialling")
		conn, err := n.dialPeer(ctx, addr)
		if err != nil {
			if !p.isClosing() {
				p.log.Debug("dial failed", "err", err)
			}
			p.close(fmt.Errorf("dial: %w", err), false)
			n.retire(p, p.closeReason())
			return
		}
		if !p.attach(conn) {
			n.retire(p, p.closeReason())
			return
		}
		p.run()
	})
	if !ok {
		cancel()
		n.unregister(p)
	}
	return ok
}

// dialPeer opens a TCP connection to addr, through the SOCKS5 proxy when one
// is configured.
func (n *Node) dialPeer(ctx context.Context, addr string) (net.Conn, error) {
	dial := n.cfg.Dial
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	if n.cfg.SOCKS5 == "" {
		return dial(ctx, "tcp", addr)
	}
	conn, err := dial(ctx, "tcp", n.cfg.SOCKS5)
	if err != nil {
		return nil, fmt.Errorf("connect to SOCKS5 proxy: %w", err)
	}
	if err := socks5Connect(ctx, conn, addr, n.cfg.SOCKS5User, n.cfg.SOCKS5Password); err != nil {
		_ = conn.Close()
		return nil, err
	}
	return conn, nil
}

// retire removes a connection that ended. The address book learns the
// outcome first, so that a hold or backoff is in place before unregister
// wakes the connection manager; otherwise a rotated fixed peer or a failed
// dial could be redialled at once.
func (n *Node) retire(p *peer, reason error) {
	redial := n.peerClosed(p, reason)
	n.unregister(p)
	if redial {
		// The point of a renewal is a new connection to this very peer
		// (its full inv carries the ack): redial it now.
		n.dial(p.dialAddr, false)
	}
}

// peerClosed updates the address book after a connection ended. It reports
// whether the peer should be redialled at once.
func (n *Node) peerClosed(p *peer, reason error) (redial bool) {
	established := p.established.Load()
	if established {
		p.log.Info("peer disconnected", "reason", errString(reason))
	} else {
		p.log.Debug("connection ended before handshake", "reason", errString(reason))
	}
	now := n.cfg.Now()
	if errors.Is(reason, errUnresponsive) {
		// Rated down (bounded at −1) with a dial backoff, inbound peers
		// under the address they advertised.
		addr := p.dialAddr
		if p.inbound {
			n.mu.Lock()
			addr = p.key
			n.mu.Unlock()
			if !n.class.usable(addr) {
				addr = ""
			}
		}
		if addr != "" {
			limit := maxBackoff
			if p.fixed {
				limit = maxFixedWait
			}
			n.book.failed(addr, now, n.cfg.RetryBackoff, limit)
		}
		return false
	}
	if p.inbound || p.dialAddr == "" {
		return false
	}
	switch {
	case errors.Is(reason, ErrClosed):
	case established:
		n.book.touch(p.dialAddr, now)
		if errors.Is(reason, errRenewed) && !p.fixed {
			return true
		}
		if errors.Is(reason, errRotated) || errors.Is(reason, errRenewed) {
			// A rotated or renewed fixed peer is redialled after a short
			// pause only: PyB 0.6.3.2 dials a host just while it has no
			// connection from it, and its own objects leave its Dandelion
			// stem only over a connection it dialled (docs/protocol.md §14), so it
			// gets the chance (interop F6: one connection, the one PyB
			// dialled).
			wait := n.cfg.RetryBackoff
			if p.fixed {
				wait = 2*n.cfg.DialInterval + time.Second
			}
			n.book.hold(p.dialAddr, now.Add(wait))
		}
	case errors.Is(reason, errDuplicate), errors.Is(reason, errSuperseded):
	default:
		// PyB decreases the rating of an outbound connection that never
		// got established.
		if !p.fixed {
			n.book.failed(p.dialAddr, now, n.cfg.RetryBackoff, maxBackoff)
			break
		}
		// A fixed peer is one the operator named: say that it is down,
		// and try again soon (2 s, doubling up to a minute).
		wait, failures := n.book.failed(p.dialAddr, now, min(n.cfg.RetryBackoff, fixedFirstWait), maxFixedWait)
		p.log.Warn("cannot reach fixed peer", "addr", p.dialAddr, "err", errString(reason), "failures", failures, "retry_in", wait)
	}
	return false
}

func errString(err error) string {
	if err == nil {
		return "closed"
	}
	return err.Error()
}

// connLoop keeps the fixed peers connected, dials known nodes up to
// MaxOutbound, bootstraps when nothing answers and rotates one outbound
// connection now and then.
func (n *Node) connLoop() {
	t := time.NewTicker(n.cfg.DialInterval)
	defer t.Stop()
	var lastBootstrap time.Time
	seeded := false
	nextRotate := time.Now().Add(n.rotateDelay())
	for {
		n.connTick(&lastBootstrap, &seeded, &nextRotate)
		n.renewTick()
		n.connPasses.Add(1)
		select {
		case <-n.ctx.Done():
			return
		case addr := <-n.connReq:
			if a, err := canonAddr(addr); err == nil {
				n.dial(a, false)
			} else {
				n.log.Warn("connect: bad address", "addr", addr, "err", err)
			}
		case <-n.kick:
		case <-t.C:
		}
	}
}

func (n *Node) rotateDelay() time.Duration {
	r := n.cfg.RotateInterval
	if r <= 0 {
		return 0
	}
	return r + rand.N(2*r)
}

func (n *Node) connTick(lastBootstrap *time.Time, seeded *bool, nextRotate *time.Time) {
	now := time.Now()
	for addr := range n.fixed {
		if n.connectedTo(addr) || !n.book.mayDial(addr, n.cfg.Now()) {
			continue
		}
		n.dial(addr, false)
	}
	if n.cfg.MaxOutbound > 0 {
		out, dialing, established := n.outboundCounts()
		need := min(n.cfg.MaxOutbound-out, maxDialing-dialing)
		if need > 0 {
			cands := n.book.candidates(n.streams, need, n.cfg.Now(), n.class, n.connectedTo)
			for _, c := range cands {
				n.dial(c, false)
			}
			if len(cands) == 0 && established == 0 && dialing == 0 && n.cfg.Bootstrap {
				n.bootstrap(now, lastBootstrap, seeded)
			}
		}
	}
	if n.cfg.RotateInterval > 0 && now.After(*nextRotate) {
		n.rotate(now)
		*nextRotate = now.Add(n.rotateDelay())
	}
}

// bootstrap adds the seed nodes to an empty book, and otherwise dials one
// of the bootstrap names (docs/protocol.md §15.1).
func (n *Node) bootstrap(now time.Time, last *time.Time, seeded *bool) {
	if !*seeded && len(n.net.Seeds) > 0 && n.book.empty(n.streams) {
		*seeded = true
		n.log.Info("no known nodes: adding the seed nodes", "count", len(n.net.Seeds))
		n.book.addSeeds(n.net.Seeds, n.streams[0], n.cfg.Now())
		return
	}
	if len(n.net.Bootstrap) == 0 || now.Sub(*last) < bootstrapEvery {
		return
	}
	*last = now
	name := n.net.Bootstrap[rand.IntN(len(n.net.Bootstrap))]
	addr, err := canonAddr(name)
	if err != nil {
		return
	}
	n.log.Info("no known node answers: bootstrapping", "addr", addr)
	n.dial(addr, true)
}

// rotate closes the oldest outbound connection that has been up for at
// least RotateInterval, so its replacement gets a fresh full inv — the only
// way PyB 0.6.3.2 passes on acks it did not announce (docs/protocol.md §11).
func (n *Node) rotate(now time.Time) {
	// PyBitmessage 0.6.3.2 announces the acks it stores only in the full
	// inv of a new connection (docs/protocol.md §11), so a connection must be renewed
	// now and then: the oldest outbound one, or, when there is none (only
	// peers that dialled us), the oldest inbound one; the peer dials again
	// and the new handshake carries its whole inventory.
	var oldest, oldestIn *peer
	for _, p := range n.establishedPeers() {
		if p.bootstrap || now.Sub(p.created) < n.cfg.RotateInterval {
			continue
		}
		if p.inbound {
			if oldestIn == nil || p.created.Before(oldestIn.created) {
				oldestIn = p
			}
			continue
		}
		if oldest == nil || p.created.Before(oldest.created) {
			oldest = p
		}
	}
	switch {
	case oldest != nil:
		oldest.log.Info("rotating outbound connection")
		oldest.close(errRotated, false)
	case oldestIn != nil:
		oldestIn.log.Info("rotating inbound connection (no outbound one to renew)")
		oldestIn.close(errRotated, false)
	}
}

// connectedTo reports whether a connection (any state) holds addr.
func (n *Node) connectedTo(addr string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.byKey[addr] != nil || n.bans.banned(addr, time.Now()) && !n.fixed[addr]
}

func (n *Node) outboundCounts() (out, dialing, established int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for p := range n.peers {
		if p.inbound || p.bootstrap {
			continue
		}
		out++
		if p.established.Load() {
			established++
		} else {
			dialing++
		}
	}
	return out, dialing, established
}

// fetchLoop sends getdata for announced objects and re-requests those not
// delivered in time.
func (n *Node) fetchLoop() {
	tick := max(min(time.Second, n.cfg.GetDataRetry/4), time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		case <-n.fetch.wake:
		}
		for _, o := range n.fetch.expire() {
			n.unresponsive(o)
		}
		for p, hs := range n.fetch.schedule(n.establishedPeers()) {
			for len(hs) > 0 {
				k := min(len(hs), maxGetData)
				p.queue(&wire.MsgGetData{Hashes: hs[:k]})
				hs = hs[k:]
			}
		}
		n.fetchPasses.Add(1)
	}
}

// unresponsive disconnects a peer that leaves our getdata unanswered
// (fetcher.expire): its objects are forgotten or asked elsewhere, its ban
// key is scored (scoreUnanswered) and its address rated down (peerClosed).
func (n *Node) unresponsive(o fetchOffender) {
	p := o.p
	if p.isClosing() {
		return
	}
	score, banned := n.bans.add(p.banKey(), scoreUnanswered, time.Now(), n.cfg.BanDuration)
	p.log.Warn("closing: peer leaves our getdata unanswered (announces objects it does not deliver)",
		"unanswered", o.unanswered, "delivered", o.delivered, "quiet_for", o.quiet, "score", score)
	if !banned {
		p.close(errUnresponsive, false)
		return
	}
	p.log.Warn("peer banned", "reason", "unanswered getdata", "for", n.cfg.BanDuration)
	p.queue(&wire.MsgError{Fatal: wire.ErrorFatal, BanTime: uint64(n.cfg.BanDuration / time.Second),
		Text: "Too many invalid messages. Closing connection."})
	p.close(fmt.Errorf("%w: %w", errBanned, errUnresponsive), true)
}

// maintLoop sends keep-alive pings, saves known nodes, forgets stale ones
// and deletes expired objects.
func (n *Node) maintLoop() {
	tick := max(min(time.Second, n.cfg.PingInterval/4), time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	const saveEvery = 30 * time.Second
	const cleanupEvery = time.Hour
	lastSave, lastCleanup := time.Now(), time.Now()
	lastExpire := time.Time{}
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		for _, p := range n.establishedPeers() {
			idle := now.Sub(time.Unix(0, max(p.lastRecv.Load(), p.lastSend.Load())))
			if idle >= n.cfg.PingInterval {
				p.queue(wire.MsgPing{})
			}
		}
		if now.Sub(lastExpire) >= n.cfg.ExpireInterval {
			lastExpire = now
			n.expireObjects()
		}
		if now.Sub(lastSave) >= saveEvery {
			lastSave = now
			for _, p := range n.establishedPeers() {
				if !p.inbound {
					n.book.touch(p.dialAddr, n.cfg.Now())
				}
			}
			n.bans.prune(now)
			if err := n.book.flush(n.ctx, n.cfg.KnownNodes); err != nil && n.ctx.Err() == nil {
				n.log.Warn("saving known nodes", "err", err)
			}
		}
		if now.Sub(lastCleanup) >= cleanupEvery {
			lastCleanup = now
			n.book.cleanup(n.cfg.Now())
		}
	}
}

// expireObjects deletes objects that expired more than Retention ago (docs/protocol.md §5.4).
func (n *Node) expireObjects() {
	before := n.cfg.Now().Add(-Retention)
	k, err := n.inv.Expire(n.ctx, before)
	if err != nil {
		if n.ctx.Err() == nil {
			n.log.Error("expiring objects failed", "err", err)
		}
		return
	}
	n.have.prune(before)
	if k > 0 {
		n.log.Debug("expired objects deleted", "count", k)
	}
}
