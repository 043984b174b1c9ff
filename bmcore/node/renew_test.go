package node

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/bmgate/bmgate/bmcore/wire"
)

const pybUA = "/PyBitmessage:0.6.3.2/"

// pybFetch plays a PyBitmessage peer that learns of h from an inv, asks
// for it and receives it.
func pybFetch(t *testing.T, r *rawPeer, h wire.InvHash) {
	t.Helper()
	for found := false; !found; {
		m, err := wire.DecodeInv(r.next(5*time.Second, wire.CmdInv).payload)
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range m.Hashes {
			found = found || x == h
		}
	}
	r.send(wire.CmdGetData, (&wire.MsgGetData{Hashes: []wire.InvHash{h}}).Encode())
	if p := r.next(5*time.Second, wire.CmdObject); hashOf(p.payload) != h {
		t.Fatal("wrong object served")
	}
}

// waitScheduled waits until the node scheduled its k-th renewal and
// returns the one connection it has and when that renewal is due.
func waitScheduled(t *testing.T, n *Node, k uint64) (*peer, time.Time) {
	t.Helper()
	waitFor(t, 5*time.Second, "renewal scheduled", func() bool { return n.renewsScheduled.Load() >= k })
	n.mu.Lock()
	defer n.mu.Unlock()
	for p := range n.peers {
		if at, ok := n.renew.pendingAt(p); ok {
			return p, at
		}
	}
	t.Fatal("no pending renewal")
	return nil, time.Time{}
}

func publishMsg(t *testing.T, n *Node) wire.InvHash {
	t.Helper()
	h, err := n.PublishAwaitingAck(context.Background(), makeObject(t, time.Now(), time.Hour, wire.ObjectMsg, 40))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestAckRenewInbound: a PyBitmessage 0.6 peer that dialled us fetches our
// msg; 60–90 s later (default delays, fake clock) the node closes that
// connection so that the peer dials again and sends its full inv, with
// the ack (interop F1). The peer's next fetch, on the new connection, is
// renewed only once 10 min have passed since the last renewal.
func TestAckRenewInbound(t *testing.T) {
	clk := newFakeClock(time.Now())
	cfg := testConfig(t)
	cfg.Now = clk.Now
	n := startNode(t, cfg)
	dial := func() *rawPeer {
		r := dialRaw(t, addrOf(n))
		r.userAgent = pybUA
		r.port = 18444 // PyB advertises its listening port on every connection
		r.handshake()
		return r
	}
	r := dial()
	fetchedAt := clk.Now()
	pybFetch(t, r, publishMsg(t, n))
	_, at := waitScheduled(t, n, 1)
	if at.Before(fetchedAt.Add(60*time.Second)) || at.After(fetchedAt.Add(90*time.Second)) {
		t.Fatalf("renewal due %v after the fetch, want 60–90 s", at.Sub(fetchedAt))
	}
	clk.Set(at.Add(-time.Second))
	waitPasses(t, n, 3)
	if r.isClosed() || n.Stats().ConnRenewals != 0 {
		t.Fatal("renewed before the delay")
	}
	clk.Set(at)
	if !r.closed(5 * time.Second) {
		t.Fatal("connection not renewed after the delay")
	}
	if got := n.Stats().ConnRenewals; got != 1 {
		t.Fatalf("ConnRenewals = %d", got)
	}

	// The peer dials again and fetches our next msg: within the 10 min
	// per-peer bound, the renewal waits for its end.
	r2 := dial()
	pybFetch(t, r2, publishMsg(t, n))
	if _, at2 := waitScheduled(t, n, 2); !at2.Equal(at.Add(10 * time.Minute)) {
		t.Fatalf("second renewal due %v after the first, want 10 min", at2.Sub(at))
	}
	clk.Set(at.Add(5 * time.Minute)) // well past 60–90 s after the second fetch
	waitPasses(t, n, 3)
	if r2.isClosed() || n.Stats().ConnRenewals != 1 {
		t.Fatal("renewed again within the per-peer bound")
	}
	clk.Set(at.Add(10 * time.Minute))
	if !r2.closed(5 * time.Second) {
		t.Fatal("deferred renewal did not happen")
	}
	if got := n.Stats().ConnRenewals; got != 2 {
		t.Fatalf("ConnRenewals = %d", got)
	}
}

// acceptPyB accepts the node's dial on ln and answers as a PyBitmessage
// 0.6 peer (acceptor side of the handshake).
func acceptPyB(t *testing.T, ln net.Listener) *rawPeer {
	t.Helper()
	_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
	conn, err := ln.Accept()
	if err != nil {
		t.Fatalf("no dial from the node: %v", err)
	}
	r := newRawPeer(t, conn)
	r.userAgent = pybUA
	r.next(5*time.Second, wire.CmdVersion)
	r.send(wire.CmdVerack, nil)
	r.send(wire.CmdVersion, r.version(time.Now()).Encode())
	r.next(5*time.Second, wire.CmdVerack)
	return r
}

// TestAckRenewOutbound: a renewed outbound connection is dialled again: a
// fixed peer after the short hold that lets a PyB dial us first (F6), any
// other peer at once.
func TestAckRenewOutbound(t *testing.T) {
	for _, fixed := range []bool{true, false} {
		name := "connect"
		if fixed {
			name = "fixed"
		}
		t.Run(name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			clk := newFakeClock(time.Now())
			cfg := testConfig(t)
			cfg.Now = clk.Now
			if fixed {
				cfg.Peers = []string{ln.Addr().String()}
			}
			n := startNode(t, cfg)
			if !fixed {
				n.Connect(ln.Addr().String())
			}
			r := acceptPyB(t, ln)
			pybFetch(t, r, publishMsg(t, n))
			p, at := waitScheduled(t, n, 1)
			if p.inbound {
				t.Fatal("renewal scheduled on the wrong connection")
			}
			clk.Set(at)
			if !r.closed(5 * time.Second) {
				t.Fatal("connection not renewed")
			}
			if fixed {
				// Held for 2×DialInterval+1 s of the node's clock.
				waitFor(t, 5*time.Second, "renewed peer gone", func() bool { return len(n.Peers()) == 0 })
				waitPasses(t, n, 3)
				if s := n.Stats(); s.Handshaking+s.PeersOutbound != 0 {
					t.Fatal("fixed peer redialled during the hold")
				}
				clk.Advance(2 * time.Second)
			}
			acceptPyB(t, ln)
			waitFor(t, 5*time.Second, "re-established", func() bool { return n.Stats().PeersOutbound == 1 })
			if got := n.Stats().ConnRenewals; got != 1 {
				t.Fatalf("ConnRenewals = %d", got)
			}
		})
	}
}

// TestAckRenewRules drives the renewal bookkeeping directly: only PyB 0.6
// peers, only our unexpired msgs, one pending renewal per connection, the
// per-address bound, the hourly cap, and nothing for a connection that
// ended before its renewal was due.
func TestAckRenewRules(t *testing.T) {
	clk := newFakeClock(time.Now())
	cfg := testConfig(t)
	cfg.Now = clk.Now
	cfg.AckRenewMaxPerHour = 2
	cfg.AckRenewJitter = -1 // due exactly AckRenewDelay after the fetch
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg = n.cfg // with the defaults
	conn := 0
	mk := func(ua string, port uint16) *peer {
		conn++
		p := newPeer(n, true, "")
		p.remote = netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), uint16(40000+conn))
		p.version.Store(&wire.MsgVersion{UserAgent: ua, AddrFrom: wire.ShortAddr{Port: port}})
		p.established.Store(true)
		return p
	}
	t0 := clk.Now()
	var own, expired, foreign wire.InvHash
	own[0], expired[0], foreign[0] = 1, 2, 3
	n.renew.published(own, t0.Add(3*time.Hour), t0)
	n.renew.published(expired, t0.Add(-time.Second), t0)

	for _, ua := range []string{"/rawpeer:1.0/", "/PyBitmessage:0.5.8/", "/PyBitmessage:0.7.0/"} {
		if n.renew.fetched(mk(ua, 8444), own, t0) {
			t.Fatalf("renewal scheduled for %s", ua)
		}
	}
	a := mk(pybUA, 8444)
	if n.renew.fetched(a, foreign, t0) || n.renew.fetched(a, expired, t0) {
		t.Fatal("renewal scheduled for an object that is not our unexpired msg")
	}
	if !n.renew.fetched(a, own, t0) {
		t.Fatal("no renewal for our msg")
	}
	if n.renew.fetched(a, own, t0) {
		t.Fatal("second renewal pending on one connection")
	}
	b, c, gone := mk(pybUA, 8445), mk(pybUA, 8446), mk(pybUA, 8447)
	for _, p := range []*peer{b, c, gone} {
		if !n.renew.fetched(p, own, t0) {
			t.Fatal("no renewal for our msg")
		}
	}
	gone.close(errRotated, false) // renewed by other means meanwhile

	clk.Set(t0.Add(cfg.AckRenewDelay - time.Second))
	n.renewTick()
	if a.isClosing() || b.isClosing() || c.isClosing() {
		t.Fatal("renewed before the delay")
	}
	clk.Set(t0.Add(cfg.AckRenewDelay))
	n.renewTick()
	closed := 0
	for _, p := range []*peer{a, b, c} {
		if p.isClosing() {
			closed++
			if !errors.Is(p.closeReason(), errRenewed) {
				t.Fatalf("closed with %v", p.closeReason())
			}
		}
	}
	if closed != 2 || n.Stats().ConnRenewals != 2 {
		t.Fatalf("%d renewed (ConnRenewals %d), want the hourly cap of 2", closed, n.Stats().ConnRenewals)
	}
	n.renew.mu.Lock()
	left := len(n.renew.pending)
	n.renew.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d renewals still pending; over the cap they are dropped", left)
	}

	// The hour is over; a new connection from a renewed address waits for
	// the end of its 10 min, another one's is due after the delay.
	t1 := t0.Add(cfg.AckRenewDelay)
	portOf := func(p *peer) uint16 { return p.remoteVersion().AddrFrom.Port }
	renewed := a
	if !a.isClosing() {
		renewed = b
	}
	again := mk(pybUA, portOf(renewed))
	if !n.renew.fetched(again, own, t1.Add(time.Minute)) {
		t.Fatal("no renewal for our msg")
	}
	if at, _ := n.renew.pendingAt(again); !at.Equal(t1.Add(cfg.AckRenewPeerInterval)) {
		t.Fatalf("renewal due %v after the last one, want %v", at.Sub(t1), cfg.AckRenewPeerInterval)
	}
	clk.Set(t0.Add(time.Hour + cfg.AckRenewDelay))
	fresh := mk(pybUA, 9000)
	n.renew.fetched(fresh, own, clk.Now())
	clk.Advance(cfg.AckRenewDelay)
	n.renewTick()
	if !again.isClosing() || !fresh.isClosing() || n.Stats().ConnRenewals != 4 {
		t.Fatalf("after the hour: again %v, fresh %v, ConnRenewals %d", again.isClosing(), fresh.isClosing(), n.Stats().ConnRenewals)
	}
}

func TestAckRenewOwnSetBounded(t *testing.T) {
	cfg := testConfig(t)
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i := range maxOwnMsgs + 1 {
		var h wire.InvHash
		h[0], h[1] = byte(i), byte(i>>8)
		// The first one expires soonest and is the one dropped.
		n.renew.published(h, now.Add(time.Hour+time.Duration(i)*time.Second), now)
	}
	n.renew.mu.Lock()
	defer n.renew.mu.Unlock()
	if _, ok := n.renew.own[wire.InvHash{}]; ok || len(n.renew.own) != maxOwnMsgs {
		t.Fatalf("own set: %d entries, first kept %v", len(n.renew.own), ok)
	}
}

func TestAckRenewConfig(t *testing.T) {
	base := func() Config {
		return Config{Network: testConfig(t).Network, Inventory: NewMemInventory(), KnownNodes: NewMemKnownNodes()}
	}
	n, err := New(base())
	if err != nil {
		t.Fatal(err)
	}
	if c := n.cfg; c.AckRenewDelay != 60*time.Second || c.AckRenewJitter != 30*time.Second ||
		c.AckRenewPeerInterval != 10*time.Minute || c.AckRenewMaxPerHour != 6 {
		t.Fatalf("defaults %v %v %v %d", c.AckRenewDelay, c.AckRenewJitter, c.AckRenewPeerInterval, c.AckRenewMaxPerHour)
	}
	for _, mod := range []func(*Config){
		func(c *Config) { c.AckRenewMaxPerHour = -1 },
		func(c *Config) { c.AckRenewPeerInterval = -time.Second },
	} {
		c := base()
		mod(&c)
		if _, err := New(c); !errors.Is(err, ErrConfig) {
			t.Errorf("bad renewal config accepted: %v", err)
		}
	}
	// Disabled: nothing is remembered or scheduled.
	c := base()
	c.AckRenewDelay = -1
	if n, err = New(c); err != nil {
		t.Fatal(err)
	}
	var h wire.InvHash
	now := time.Now()
	n.renew.published(h, now.Add(time.Hour), now)
	p := newPeer(n, false, "192.0.2.1:8444")
	p.version.Store(&wire.MsgVersion{UserAgent: pybUA})
	if n.renew.fetched(p, h, now) {
		t.Fatal("renewal scheduled while disabled")
	}
}

// TestAckRenewOnlyAwaitingAck: only msgs published as awaiting an ack are
// renewal candidates. The acks we send for incoming msgs and chan posts are
// msg objects too, but bring nothing back; before, they took the
// connection's renewal slot and the per-peer interval (interop F7).
func TestAckRenewOnlyAwaitingAck(t *testing.T) {
	n := startNode(t, testConfig(t))
	plain, err := n.Publish(context.Background(), makeObject(t, time.Now(), time.Hour, wire.ObjectMsg, 41))
	if err != nil {
		t.Fatal(err)
	}
	awaiting := publishMsg(t, n)
	n.renew.mu.Lock()
	_, plainOwn := n.renew.own[plain]
	_, awaitingOwn := n.renew.own[awaiting]
	n.renew.mu.Unlock()
	if plainOwn || !awaitingOwn {
		t.Fatalf("renewal candidates: plain publish %v (want false), awaiting ack %v (want true)", plainOwn, awaitingOwn)
	}
}
