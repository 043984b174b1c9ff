package node

import (
	"context"
	"net"
	"slices"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/bmgate/bmgate/bmcore/inventory"
	"github.com/bmgate/bmgate/bmcore/params"
	"github.com/bmgate/bmgate/bmcore/wire"
)

func netAddr(t *testing.T, host string, port uint16, stream uint32, seen time.Time) wire.NetAddr {
	t.Helper()
	ip, err := wire.EncodeHost(host)
	if err != nil {
		t.Fatal(err)
	}
	return wire.NetAddr{Time: uint64(seen.Unix()), Stream: stream, Services: 1, IP: ip, Port: port}
}

func bookAddrs(n *Node, stream uint64) []string {
	n.book.mu.Lock()
	defer n.book.mu.Unlock()
	var out []string
	for a := range n.book.nodes[stream] {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}

// TestAddrReceiveRules: docs/protocol.md §15.2 receiving rules on the real network.
func TestAddrReceiveRules(t *testing.T) {
	cfg := testConfig(t)
	cfg.AllowPrivateAddrs = false
	n := startNode(t, cfg)
	// With one object stored, the greeting ends with an inv, so a peer
	// knows when its greeting is complete.
	if _, err := n.Publish(context.Background(), makeObject(t, time.Now(), time.Hour, 2, 10)); err != nil {
		t.Fatal(err)
	}
	r := dialRaw(t, addrOf(n))
	r.handshake()
	other := dialRaw(t, addrOf(n))
	other.handshake()
	other.next(5*time.Second, wire.CmdInv)
	now := time.Now()
	entries := []wire.NetAddr{
		netAddr(t, "8.8.8.8", 8444, 1, now.Add(-time.Minute)),                // kept
		netAddr(t, "2001:db8::1", 8444, 1, now.Add(-time.Hour)),              // kept (IPv6)
		netAddr(t, "quzwelsuziwqgpt2.onion", 8444, 1, now.Add(-time.Minute)), // kept (onion)
		netAddr(t, "9.9.9.9", 8444, 1, now.Add(-4*time.Hour)),                // too old
		netAddr(t, "9.9.9.10", 8444, 1, now.Add(time.Minute)),                // in the future
		netAddr(t, "10.0.0.1", 8444, 1, now.Add(-time.Minute)),               // private
		netAddr(t, "127.0.0.1", 8444, 1, now.Add(-time.Minute)),              // loopback
		netAddr(t, "192.168.1.1", 8444, 1, now.Add(-time.Minute)),            // private
		netAddr(t, "fe80::1", 8444, 1, now.Add(-time.Minute)),                // link-local
		netAddr(t, "9.9.9.11", 0, 1, now.Add(-time.Minute)),                  // port 0
		netAddr(t, "9.9.9.12", 8444, 2, now.Add(-time.Minute)),               // other stream
	}
	r.send(wire.CmdAddr, (&wire.MsgAddr{Addrs: entries}).Encode())
	r.send(wire.CmdPing, nil)
	r.next(5*time.Second, wire.CmdPong)
	want := []string{"8.8.8.8:8444", "[2001:db8::1]:8444", "quzwelsuziwqgpt2.onion:8444"}
	sort.Strings(want)
	if got := bookAddrs(n, 1); !slices.Equal(got, want) {
		t.Fatalf("known nodes %v, want %v", got, want)
	}
	if len(bookAddrs(n, 2)) != 0 {
		t.Fatal("stored a node of a stream we are not in")
	}
	// Received addrs are not relayed to connected peers (PyB head); they
	// only go into the addr sent after a new handshake.
	// r's pong above means its addr was handled; other's pong now means
	// everything queued for other meanwhile has arrived.
	for _, p := range other.sync(5 * time.Second) {
		if p.cmd == wire.CmdAddr {
			m, _ := wire.DecodeAddr(p.payload)
			t.Fatalf("addr relayed: %d entries", len(m.Addrs))
		}
	}
	// The node does not dial onions without a proxy.
	if n.class.dialable("quzwelsuziwqgpt2.onion:8444") {
		t.Fatal("onion dialable without SOCKS5")
	}
	// More than 1000 entries is a malformed message, not a crash.
	r.send(wire.CmdAddr, append(wire.AppendVarInt(nil, 1001), make([]byte, 1001*wire.NetAddrSize)...))
	r.send(wire.CmdPing, nil)
	r.next(5*time.Second, wire.CmdPong)
}

// TestAddrSend: after the handshake the node sends the nodes seen within
// 3 h with a non-negative rating, never onions, and not the peer itself.
func TestAddrSend(t *testing.T) {
	cfg := testConfig(t)
	cfg.AllowPrivateAddrs = false
	ctx := context.Background()
	now := time.Now()
	for _, kn := range []inventory.KnownNode{
		{Addr: "8.8.8.8:8444", Stream: 1, LastSeen: now.Add(-time.Minute), Rating: 0.5},
		{Addr: "8.8.4.4:8444", Stream: 1, LastSeen: now.Add(-2 * time.Hour)},
		{Addr: "1.1.1.1:8444", Stream: 1, LastSeen: now.Add(-4 * time.Hour)},              // stale
		{Addr: "1.0.0.1:8444", Stream: 1, LastSeen: now.Add(-time.Minute), Rating: -0.2},  // bad rating
		{Addr: "quzwelsuziwqgpt2.onion:8444", Stream: 1, LastSeen: now.Add(-time.Minute)}, // onion
		{Addr: "9.9.9.9:8444", Stream: 2, LastSeen: now.Add(-time.Minute)},                // child stream 2
		{Addr: "9.9.9.8:8444", Stream: 5, LastSeen: now.Add(-time.Minute)},                // unrelated stream
	} {
		if err := cfg.KnownNodes.UpsertNode(ctx, kn); err != nil {
			t.Fatal(err)
		}
	}
	n := startNode(t, cfg)
	r := dialRaw(t, addrOf(n))
	r.handshake()
	m, err := wire.DecodeAddr(r.next(5*time.Second, wire.CmdAddr).payload)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range m.Addrs {
		got = append(got, net.JoinHostPort(a.Host(), strconv.Itoa(int(a.Port)))+"/"+strconv.Itoa(int(a.Stream)))
		if a.Services != 1 {
			t.Errorf("services %d, want 1", a.Services)
		}
	}
	sort.Strings(got)
	want := []string{"8.8.4.4:8444/1", "8.8.8.8:8444/1", "9.9.9.9:8444/2"}
	if !slices.Equal(got, want) {
		t.Fatalf("addr sent %v, want %v", got, want)
	}
	for _, a := range m.Addrs {
		if a.Host() == "8.8.8.8" && int64(a.Time) != now.Add(-time.Minute).Unix() {
			t.Fatalf("entry time %d is not the last-seen time", a.Time)
		}
	}
}

func TestKnownNodesPersistAndHygiene(t *testing.T) {
	cfg := testConfig(t)
	ctx := context.Background()
	now := time.Now()
	_ = cfg.KnownNodes.UpsertNode(ctx, inventory.KnownNode{Addr: "8.8.8.8:8444", Stream: 1, LastSeen: now.Add(-29 * 24 * time.Hour)})
	_ = cfg.KnownNodes.UpsertNode(ctx, inventory.KnownNode{Addr: "8.8.4.4:8444", Stream: 1, LastSeen: now.Add(-4 * time.Hour), Rating: -0.6})
	_ = cfg.KnownNodes.UpsertNode(ctx, inventory.KnownNode{Addr: "1.1.1.1:8444", Stream: 1, LastSeen: now.Add(-4 * time.Hour), Rating: -0.4})
	n := startNode(t, cfg)
	n.book.cleanup(now)
	if got := bookAddrs(n, 1); !slices.Equal(got, []string{"1.1.1.1:8444"}) {
		t.Fatalf("after cleanup: %v", got)
	}
	// A failed dial lowers the rating by 0.1, bounded at -1.
	for range 12 {
		n.book.failed("1.1.1.1:8444", now, time.Second, time.Minute)
	}
	_ = n.Close()
	list, _ := cfg.KnownNodes.ListNodes(ctx, 1, 100)
	if len(list) != 1 || list[0].Addr != "1.1.1.1:8444" || list[0].Rating != -1 {
		t.Fatalf("persisted %+v", list)
	}
}

// TestDiscoveryDialsKnownNodes: with MaxOutbound > 0 the node dials nodes
// it learned through addr, up to the target.
func TestDiscoveryDialsKnownNodes(t *testing.T) {
	var others []*Node
	for range 3 {
		others = append(others, startNode(t, testConfig(t)))
	}
	cfg := testConfig(t)
	cfg.MaxOutbound = 2
	n := startNode(t, cfg)
	r := dialRaw(t, addrOf(n))
	r.handshake()
	var entries []wire.NetAddr
	for _, o := range others {
		port := uint16(o.Addr().(*net.TCPAddr).Port)
		entries = append(entries, netAddr(t, "127.0.0.1", port, 1, time.Now().Add(-time.Minute)))
	}
	r.send(wire.CmdAddr, (&wire.MsgAddr{Addrs: entries}).Encode())
	waitFor(t, 10*time.Second, "two outbound connections", func() bool { return n.Stats().PeersOutbound == 2 })
	// The connection manager looks again: no third dial (it would show as
	// handshaking).
	waitPasses(t, n, 3)
	if s := n.Stats(); s.PeersOutbound != 2 || s.Handshaking != 0 {
		t.Fatalf("%d outbound, %d handshaking; want MaxOutbound = 2", s.PeersOutbound, s.Handshaking)
	}
}

func TestBootstrapFromSeeds(t *testing.T) {
	seed := startNode(t, testConfig(t))
	netw := *params.Testnet
	netw.Seeds = []string{addrOf(seed)}
	cfg := testConfig(t)
	cfg.Network = &netw
	cfg.Bootstrap = true
	cfg.MaxOutbound = 4
	n := startNode(t, cfg)
	waitFor(t, 10*time.Second, "connected to the seed", func() bool { return n.Stats().PeersOutbound == 1 })
}

// TestBootstrapName: a bootstrap connection is closed once its addr came,
// and the node then dials what it learned (docs/protocol.md §15.1).
func TestBootstrapName(t *testing.T) {
	target := startNode(t, testConfig(t))
	bcfg := testConfig(t)
	// The bootstrap server knows the target.
	_ = bcfg.KnownNodes.UpsertNode(context.Background(), inventory.KnownNode{Addr: addrOf(target), Stream: 1, LastSeen: time.Now()})
	boot := startNode(t, bcfg)
	netw := *params.Testnet
	netw.Bootstrap = []string{"localhost:" + strconv.Itoa(boot.Addr().(*net.TCPAddr).Port)}
	cfg := testConfig(t)
	cfg.Network = &netw
	cfg.Bootstrap = true
	cfg.MaxOutbound = 1
	n := startNode(t, cfg)
	waitFor(t, 10*time.Second, "connected to the node learned from bootstrap", func() bool {
		for _, p := range n.Peers() {
			if p.Established && p.Addr == addrOf(target) {
				return true
			}
		}
		return false
	})
	waitFor(t, 5*time.Second, "bootstrap connection closed", func() bool {
		for _, p := range n.Peers() {
			if p.Addr != addrOf(target) {
				return false
			}
		}
		return true
	})
}

func TestNoBootstrapWhenDisabled(t *testing.T) {
	seed := startNode(t, testConfig(t))
	netw := *params.Testnet
	netw.Seeds = []string{addrOf(seed)}
	cfg := testConfig(t)
	cfg.Network = &netw
	cfg.MaxOutbound = 4
	n := startNode(t, cfg)
	// Several passes of the connection manager, which would bootstrap.
	waitPasses(t, n, 3)
	if len(n.Peers()) != 0 || len(bookAddrs(n, 1)) != 0 {
		t.Fatal("seeds used with Bootstrap off")
	}
}
