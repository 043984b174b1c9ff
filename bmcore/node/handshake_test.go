package node

import (
	"context"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/bmgate/bmgate/bmcore/inventory"
	"github.com/bmgate/bmgate/bmcore/params"
	"github.com/bmgate/bmgate/bmcore/wire"
)

func TestInboundHandshake(t *testing.T) {
	n := startNode(t, testConfig(t))
	r := dialRaw(t, addrOf(n))
	v := r.handshake()
	if v.ProtocolVersion != 3 || v.Services != wire.ServiceNetwork || !slices.Equal(v.Streams, []uint64{1}) {
		t.Fatalf("node version %+v", v)
	}
	if v.UserAgent != "/bmgate:"+Version+"/" {
		t.Fatalf("user agent %q", v.UserAgent)
	}
	if v.AddrRecv.Host() != "127.0.0.1" || v.AddrRecv.Port != r.localPort() {
		t.Fatalf("addr_recv %s:%d, want our socket", v.AddrRecv.Host(), v.AddrRecv.Port)
	}
	if int(v.AddrFrom.Port) != n.Addr().(*net.TCPAddr).Port {
		t.Fatalf("addr_from port %d", v.AddrFrom.Port)
	}
	if d := time.Now().Unix() - v.Timestamp; d < -5 || d > 5 {
		t.Fatalf("timestamp off by %d s", d)
	}
	waitFor(t, 5*time.Second, "inbound established", func() bool { return n.Stats().PeersInbound == 1 })
	// Established: a ping is answered.
	r.send(wire.CmdPing, nil)
	r.next(5*time.Second, wire.CmdPong)
	peers := n.Peers()
	if len(peers) != 1 || !peers[0].Inbound || peers[0].UserAgent != "/rawpeer:1.0/" || !peers[0].Established {
		t.Fatalf("peers %+v", peers)
	}
}

func TestOutboundHandshake(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := testConfig(t)
	cfg.Peers = []string{ln.Addr().String()}
	n := startNode(t, cfg)
	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	r := newRawPeer(t, conn)
	// The initiator speaks first with its version (docs/protocol.md §3.3 step 1).
	p := r.next(5*time.Second, wire.CmdVersion, wire.CmdVerack)
	if p.cmd != wire.CmdVersion {
		t.Fatalf("first packet %s", p.cmd)
	}
	v, err := wire.DecodeVersion(p.payload)
	if err != nil {
		t.Fatal(err)
	}
	if v.Services&wire.ServiceSSL != 0 || v.Services != wire.ServiceNetwork {
		t.Fatalf("services %#x: NODE_SSL must never be set", v.Services)
	}
	if v.AddrRecv.Port != uint16(ln.Addr().(*net.TCPAddr).Port) {
		t.Fatalf("addr_recv port %d", v.AddrRecv.Port)
	}
	// Acceptor: verack first, then version; the node answers with verack.
	r.send(wire.CmdVerack, nil)
	r.send(wire.CmdVersion, r.version(time.Now()).Encode())
	r.next(5*time.Second, wire.CmdVerack)
	waitFor(t, 5*time.Second, "outbound established", func() bool { return n.Stats().PeersOutbound == 1 })
	// The known-node entry got the successful handshake (+0.1).
	n.book.mu.Lock()
	var entry inventory.KnownNode
	if e := n.book.nodes[1][ln.Addr().String()]; e != nil {
		entry = *e
	}
	n.book.mu.Unlock()
	if entry.Rating < 0.09 || time.Since(entry.LastSeen) > time.Minute {
		t.Fatalf("known node after handshake: %+v", entry)
	}
}

// TestEstablishedAfterAddressBook: a connection is published as established
// only after the address book recorded the peer, so whoever sees it
// established (Stats, Peers, a test) finds the book entry. The hook runs
// right after established is set, so a regression fails every run.
func TestEstablishedAfterAddressBook(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := testConfig(t)
	cfg.Peers = []string{ln.Addr().String()}
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	const inPort = 18444
	inAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(inPort))
	type seen struct {
		inbound bool
		entry   *inventory.KnownNode
	}
	got := make(chan seen, 4)
	n.testHookEstablished = func(p *peer) {
		addr := p.dialAddr
		if p.inbound {
			addr = inAddr
		}
		n.book.mu.Lock()
		var e *inventory.KnownNode
		if kn := n.book.nodes[1][addr]; kn != nil {
			c := *kn
			e = &c
		}
		n.book.mu.Unlock()
		got <- seen{p.inbound, e}
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })

	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	out := newRawPeer(t, conn)
	out.next(5*time.Second, wire.CmdVersion)
	out.send(wire.CmdVerack, nil)
	out.send(wire.CmdVersion, out.version(time.Now()).Encode())
	in := dialRaw(t, addrOf(n))
	in.port = inPort
	in.handshake()
	for range 2 {
		var s seen
		select {
		case s = <-got:
		case <-time.After(5 * time.Second):
			t.Fatal("connection not established")
		}
		switch {
		case s.entry == nil:
			t.Fatalf("established (inbound=%v) before the address book had the peer", s.inbound)
		case !s.inbound && s.entry.Rating < 0.09:
			t.Fatalf("outbound established before its handshake was recorded: %+v", *s.entry)
		}
	}
}

func TestVersionRefusals(t *testing.T) {
	n := startNode(t, testConfig(t))
	cases := []struct {
		name   string
		mutate func(*wire.MsgVersion)
	}{
		{"old protocol", func(v *wire.MsgVersion) { v.ProtocolVersion = 2 }},
		{"clock ahead", func(v *wire.MsgVersion) { v.Timestamp += 3700 }},
		{"clock behind", func(v *wire.MsgVersion) { v.Timestamp -= 3700 }},
		{"no streams", func(v *wire.MsgVersion) { v.Streams = nil }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := dialRaw(t, addrOf(n))
			v := r.version(time.Now())
			tc.mutate(v)
			r.send(wire.CmdVersion, v.Encode())
			p := r.next(5*time.Second, wire.CmdError, wire.CmdVerack, wire.CmdVersion)
			if p.cmd != wire.CmdError {
				t.Fatalf("got %s, want error", p.cmd)
			}
			e, err := wire.DecodeError(p.payload)
			if err != nil || e.Fatal != wire.ErrorFatal {
				t.Fatalf("error message %+v, %v", e, err)
			}
			if !r.closed(5 * time.Second) {
				t.Fatal("connection not closed after refusal")
			}
			// Everything the node sent has arrived: no verack among it.
			if _, ok := r.tryNext(time.Second, wire.CmdVerack); ok {
				t.Fatal("verack after refusal")
			}
		})
	}
	// A version within the tolerated skew is fine.
	r := dialRaw(t, addrOf(n))
	v := r.version(time.Now().Add(3500 * time.Second))
	r.send(wire.CmdVersion, v.Encode())
	r.next(5*time.Second, wire.CmdVerack)
}

func TestWrongNetworkMagic(t *testing.T) {
	n := startNode(t, testConfig(t))
	r := dialRaw(t, addrOf(n))
	r.sendMagic = params.Mainnet.Magic
	r.send(wire.CmdVersion, r.version(time.Now()).Encode())
	if !r.closed(5 * time.Second) {
		t.Fatal("mainnet packet on the test network not refused")
	}
}

func TestSelfConnection(t *testing.T) {
	cfg := testConfig(t)
	n := startNode(t, cfg)
	n.Connect(addrOf(n))
	self := addrOf(n)
	waitFor(t, 5*time.Second, "self connection detected", func() bool {
		n.book.mu.Lock()
		defer n.book.mu.Unlock()
		return n.book.self[self]
	})
	waitFor(t, 5*time.Second, "no connections", func() bool {
		s := n.Stats()
		return s.PeersInbound+s.PeersOutbound+s.Handshaking == 0
	})
	if n.book.mayDial(self, time.Now()) {
		t.Fatal("own address still dialable")
	}
}

func TestHandshakeTimeout(t *testing.T) {
	cfg := testConfig(t)
	cfg.HandshakeTimeout = 300 * time.Millisecond
	n := startNode(t, cfg)
	r := dialRaw(t, addrOf(n))
	if !r.closed(5 * time.Second) {
		t.Fatal("silent connection not closed")
	}
	// Half a handshake is not enough either.
	r = dialRaw(t, addrOf(n))
	r.send(wire.CmdVersion, r.version(time.Now()).Encode())
	r.next(2*time.Second, wire.CmdVersion)
	if !r.closed(5 * time.Second) {
		t.Fatal("connection without verack not closed")
	}
	if n.Stats().PeersInbound != 0 {
		t.Fatal("half-open connection counted as established")
	}
}

func TestKeepAlive(t *testing.T) {
	cfg := testConfig(t)
	cfg.PingInterval = 200 * time.Millisecond
	cfg.IdleTimeout = 1500 * time.Millisecond
	n := startNode(t, cfg)
	r := dialRaw(t, addrOf(n))
	r.handshake()
	// Idle in both directions: the node pings.
	r.next(3*time.Second, wire.CmdPing)
	r.send(wire.CmdPong, nil)
	// A peer that never sends anything again is dropped after IdleTimeout,
	// even though the node keeps writing pings to it.
	if !r.closed(5 * time.Second) {
		t.Fatal("dead peer not dropped")
	}
	waitFor(t, 2*time.Second, "peer removed", func() bool { return establishedCount(n) == 0 })
}
