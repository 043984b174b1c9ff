package node

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/bmgate/bmgate/bmcore/wire"
)

// TestSimultaneousDial: two nodes that both keep the other as a fixed peer
// end up with exactly one connection (docs/protocol.md §3.3).
func TestSimultaneousDial(t *testing.T) {
	for range 5 {
		pa, pb := freeAddr(t), freeAddr(t)
		aCfg, bCfg := testConfig(t), testConfig(t)
		aCfg.ListenAddr, aCfg.Peers = pa, []string{pb}
		bCfg.ListenAddr, bCfg.Peers = pb, []string{pa}
		a, b := startNode(t, aCfg), startNode(t, bCfg)
		settled := func(n *Node) bool { s := n.Stats(); return s.Handshaking == 0 && establishedCount(n) == 1 }
		waitFor(t, 10*time.Second, "one connection each", func() bool { return settled(a) && settled(b) })
		// Each connection manager looks again (a dial it started would
		// show as handshaking): nothing new.
		waitPasses(t, a, 3)
		waitPasses(t, b, 3)
		if !settled(a) || !settled(b) {
			t.Fatalf("connections a=%+v b=%+v", a.Stats(), b.Stats())
		}
		_ = b.Close()
		_ = a.Close()
	}
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestDuplicateInboundRefused: a second connection announcing the same
// listening address as an established one is refused.
func TestDuplicateInboundRefused(t *testing.T) {
	n := startNode(t, testConfig(t))
	r1 := dialRaw(t, addrOf(n))
	v := r1.version(time.Now())
	r1.send(wire.CmdVersion, v.Encode())
	r1.next(5*time.Second, wire.CmdVersion)
	r1.send(wire.CmdVerack, nil)
	waitFor(t, 5*time.Second, "first established", func() bool { return establishedCount(n) == 1 })

	r2 := dialRaw(t, addrOf(n))
	v2 := r2.version(time.Now())
	v2.AddrFrom.Port = v.AddrFrom.Port // same advertised listening port
	r2.send(wire.CmdVersion, v2.Encode())
	p := r2.next(5*time.Second, wire.CmdError, wire.CmdVerack)
	if p.cmd != wire.CmdError {
		t.Fatalf("duplicate got %s", p.cmd)
	}
	if !r2.closed(5 * time.Second) {
		t.Fatal("duplicate not closed")
	}
	r1.send(wire.CmdPing, nil)
	r1.next(5*time.Second, wire.CmdPong)
}

func TestMaxInbound(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxInbound = 2
	n := startNode(t, cfg)
	a, b := dialRaw(t, addrOf(n)), dialRaw(t, addrOf(n))
	a.handshake()
	b.handshake()
	c := dialRaw(t, addrOf(n))
	if !c.closed(5 * time.Second) {
		t.Fatal("third inbound connection accepted")
	}
}

// TestRotation: the outbound connection is replaced after RotateInterval,
// and the new connection brings the peer's full inventory again
// (docs/protocol.md §11: how acks reach us from PyB 0.6.3.2).
func TestRotation(t *testing.T) {
	a := startNode(t, testConfig(t))
	cfg := testConfig(t)
	cfg.Peers = []string{addrOf(a)}
	cfg.RotateInterval = 300 * time.Millisecond
	cfg.DialInterval = 20 * time.Millisecond
	b := startNode(t, cfg)
	waitFor(t, 5*time.Second, "connected", func() bool { return establishedCount(a) == 1 })
	first := a.Peers()[0].Remote
	waitFor(t, 10*time.Second, "rotated and reconnected", func() bool {
		ps := a.Peers()
		return len(ps) == 1 && ps[0].Established && ps[0].Remote != first
	})
	// An object a holds now reaches b through the new connection's inv.
	h, err := a.Publish(context.Background(), makeObject(t, time.Now(), time.Hour, 2, 30))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "object on b", func() bool { return has(b, h) })
}

// TestRotationInbound: a node that only has a peer that dialled it renews
// that connection instead (docs/protocol.md §11: PyBitmessage 0.6.3.2 sends its
// acks only in the inv of a new connection); the peer dials again and the
// new handshake brings what it stored meanwhile.
func TestRotationInbound(t *testing.T) {
	cfg := testConfig(t)
	cfg.RotateInterval = 300 * time.Millisecond
	a := startNode(t, cfg)
	bcfg := testConfig(t)
	bcfg.Peers = []string{addrOf(a)}
	bcfg.DialInterval = 20 * time.Millisecond
	b := startNode(t, bcfg)
	waitFor(t, 5*time.Second, "connected", func() bool { return establishedCount(a) == 1 })
	ps := a.Peers()
	if !ps[0].Inbound {
		t.Fatal("a's only connection should be inbound")
	}
	first := ps[0].Remote
	waitFor(t, 10*time.Second, "inbound connection rotated and re-established by b", func() bool {
		ps := a.Peers()
		return len(ps) == 1 && ps[0].Established && ps[0].Inbound && ps[0].Remote != first
	})
	h, err := b.Publish(context.Background(), makeObject(t, time.Now(), time.Hour, 2, 30))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "object on a", func() bool { return has(a, h) })
}

func TestCloseIsClean(t *testing.T) {
	// Close with connections in every state, twice; goleak in TestMain
	// checks that nothing is left behind.
	a := startNode(t, testConfig(t))
	cfg := testConfig(t)
	cfg.Peers = []string{addrOf(a), "127.0.0.1:1"}
	b := startNode(t, cfg)
	r := dialRaw(t, addrOf(b))
	r.send(wire.CmdVersion, r.version(time.Now()).Encode()) // half a handshake
	waitFor(t, 5*time.Second, "connected", func() bool { return establishedCount(a) == 1 })
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if !r.closed(5 * time.Second) {
		t.Fatal("connection survived Close")
	}
	if err := b.Start(context.Background()); err == nil {
		t.Fatal("Start after Close succeeded")
	}
	// Cancelling Start's context stops a node too.
	ctx, cancel := context.WithCancel(context.Background())
	c, err := New(testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	_ = c.Close()
}

func TestConfigValidation(t *testing.T) {
	base := func() Config {
		return Config{Network: testConfig(t).Network, Inventory: NewMemInventory(), KnownNodes: NewMemKnownNodes()}
	}
	bad := []func(*Config){
		func(c *Config) { c.Network = nil },
		func(c *Config) { c.Inventory = nil },
		func(c *Config) { c.KnownNodes = nil },
		func(c *Config) { c.Peers = []string{"no-port"} },
		func(c *Config) { c.SOCKS5 = "nohostport" },
		func(c *Config) { c.PingInterval = -time.Second },
		func(c *Config) { c.InvRate = -1 },
	}
	for i, mod := range bad {
		c := base()
		mod(&c)
		if _, err := New(c); !errors.Is(err, ErrConfig) {
			t.Errorf("case %d: %v", i, err)
		}
	}
	n, err := New(base())
	if err != nil {
		t.Fatal(err)
	}
	if n.cfg.MaxOutbound != 8 || n.cfg.MaxInbound != 200 || n.cfg.PingInterval != 300*time.Second ||
		n.cfg.HandshakeTimeout != 20*time.Second || n.cfg.GetDataRetry != 60*time.Second ||
		n.cfg.UserAgent != "/bmgate:"+Version+"/" {
		t.Fatalf("defaults %+v", n.cfg)
	}
	_ = n.Close()
}

// TestProxiedInboundNotDeduplicated: without AllowPrivateAddrs, loopback
// peers are hidden-service peers behind a local Tor: two of them
// advertising the same port are different peers.
func TestProxiedInboundNotDeduplicated(t *testing.T) {
	cfg := testConfig(t)
	cfg.AllowPrivateAddrs = false
	n := startNode(t, cfg)
	a, b := dialRaw(t, addrOf(n)), dialRaw(t, addrOf(n))
	for _, r := range []*rawPeer{a, b} {
		v := r.version(time.Now())
		v.AddrFrom.Port = 8444
		r.send(wire.CmdVersion, v.Encode())
		r.next(5*time.Second, wire.CmdVersion)
		r.send(wire.CmdVerack, nil)
	}
	waitFor(t, 5*time.Second, "both established", func() bool { return n.Stats().PeersInbound == 2 })
}
