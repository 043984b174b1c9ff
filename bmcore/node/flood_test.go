package node

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bmgate/bmgate/bmcore/inventory"
	"github.com/bmgate/bmgate/bmcore/wire"
)

// startLine starts k nodes where node i dials node i-1.
func startLine(t *testing.T, k int, mod func(i int, c *Config)) []*Node {
	var nodes []*Node
	for i := range k {
		cfg := testConfig(t)
		if i > 0 {
			cfg.Peers = []string{addrOf(nodes[i-1])}
		}
		if mod != nil {
			mod(i, &cfg)
		}
		nodes = append(nodes, startNode(t, cfg))
	}
	return nodes
}

func waitAllHave(t *testing.T, nodes []*Node, h wire.InvHash, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, fmt.Sprintf("object %s on all %d nodes", h.String()[:8], len(nodes)), func() bool {
		for _, n := range nodes {
			if !has(n, h) {
				return false
			}
		}
		return true
	})
}

func TestFloodLine(t *testing.T) {
	var notified atomic.Int32
	nodes := startLine(t, 5, func(i int, c *Config) {
		if i == 4 {
			c.OnObject = func(inventory.StoredObject) { notified.Add(1) }
		}
	})
	waitFor(t, 10*time.Second, "line established", func() bool {
		for i, n := range nodes {
			want := 2
			if i == 0 || i == 4 {
				want = 1
			}
			if establishedCount(n) != want {
				return false
			}
		}
		return true
	})
	now := time.Now()
	obj := makeObject(t, now, time.Hour, wire.ObjectMsg, 100)
	start := time.Now()
	h, err := nodes[0].Publish(context.Background(), obj)
	if err != nil {
		t.Fatal(err)
	}
	waitAllHave(t, nodes, h, 10*time.Second)
	t.Logf("object crossed 4 hops in %v", time.Since(start))
	waitFor(t, 5*time.Second, "OnObject at the far end", func() bool { return notified.Load() == 1 })

	// And back the other way.
	obj2 := makeObject(t, now, 2*time.Hour, wire.ObjectBroadcast, 200)
	h2, err := nodes[4].Publish(context.Background(), obj2)
	if err != nil {
		t.Fatal(err)
	}
	waitAllHave(t, nodes, h2, 10*time.Second)
	for i, n := range nodes {
		s := n.Stats()
		if s.ObjectsInvalid != 0 {
			t.Errorf("node %d counted %d invalid objects", i, s.ObjectsInvalid)
		}
		if i != 0 && i != 4 && s.ObjectsReceived != 2 {
			t.Errorf("node %d received %d objects, want 2", i, s.ObjectsReceived)
		}
	}
}

func TestFloodStar(t *testing.T) {
	center := startNode(t, testConfig(t))
	nodes := []*Node{center}
	for range 4 {
		cfg := testConfig(t)
		cfg.Peers = []string{addrOf(center)}
		nodes = append(nodes, startNode(t, cfg))
	}
	waitFor(t, 10*time.Second, "star established", func() bool { return center.Stats().PeersInbound == 4 })
	var hs []wire.InvHash
	for i, n := range nodes[1:] {
		obj := makeObject(t, time.Now(), time.Hour, uint32(i), 64)
		h, err := n.Publish(context.Background(), obj)
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, h)
	}
	for _, h := range hs {
		waitAllHave(t, nodes, h, 10*time.Second)
	}
	// Each leaf got the other three objects exactly once.
	for i, n := range nodes[1:] {
		if got := n.Stats().ObjectsReceived; got != 3 {
			t.Errorf("leaf %d received %d objects, want 3", i, got)
		}
	}
}

func TestLateJoinerCatchesUp(t *testing.T) {
	nodes := startLine(t, 2, nil)
	waitFor(t, 10*time.Second, "pair established", func() bool { return establishedCount(nodes[1]) == 1 })
	var hs []wire.InvHash
	for range 30 {
		h, err := nodes[0].Publish(context.Background(), makeObject(t, time.Now(), time.Hour, wire.ObjectGetPubkey, 40))
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, h)
	}
	cfg := testConfig(t)
	cfg.Peers = []string{addrOf(nodes[1])}
	late := startNode(t, cfg)
	all := append(nodes, late)
	for _, h := range hs {
		waitAllHave(t, all, h, 10*time.Second)
	}
	if got := late.Stats().ObjectsReceived; got != 30 {
		t.Fatalf("late joiner received %d objects, want 30", got)
	}
}

func TestRestartResyncs(t *testing.T) {
	a := startNode(t, testConfig(t))
	bCfg := testConfig(t)
	bCfg.Peers = []string{addrOf(a)}
	b := startNode(t, bCfg)
	waitFor(t, 10*time.Second, "connected", func() bool { return establishedCount(a) == 1 })
	h1, err := b.Publish(context.Background(), makeObject(t, time.Now(), time.Hour, wire.ObjectMsg, 50))
	if err != nil {
		t.Fatal(err)
	}
	waitAllHave(t, []*Node{a, b}, h1, 10*time.Second)

	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "b gone", func() bool { return establishedCount(a) == 0 })
	// While b is down, a learns new objects.
	var missed []wire.InvHash
	for range 5 {
		h, err := a.Publish(context.Background(), makeObject(t, time.Now(), time.Hour, wire.ObjectMsg, 50))
		if err != nil {
			t.Fatal(err)
		}
		missed = append(missed, h)
	}

	// Restart b over the same inventory and known nodes.
	bCfg.Logger = newTestLogger(t)
	b2 := startNode(t, bCfg)
	for _, h := range missed {
		waitAllHave(t, []*Node{b2}, h, 10*time.Second)
	}
	// What b already had is not downloaded again.
	if got := b2.Stats().ObjectsReceived; got != 5 {
		t.Fatalf("restarted node received %d objects, want the 5 it missed", got)
	}
	if b2.Stats().InventoryObjects != 6 {
		t.Fatalf("restarted node knows %d objects, want 6", b2.Stats().InventoryObjects)
	}
}

func TestNothingExpiredIsServed(t *testing.T) {
	cfg := testConfig(t)
	cfg.ExpireInterval = 100 * time.Millisecond
	inv := cfg.Inventory
	now := time.Now()
	put := func(obj []byte) wire.InvHash {
		o, err := wire.DecodeObject(obj)
		if err != nil {
			t.Fatal(err)
		}
		so := storedObject(o)
		if _, err := inv.Put(context.Background(), so); err != nil {
			t.Fatal(err)
		}
		return so.Hash
	}
	// Expired 10 minutes ago (kept for Retention), expired 4 h ago (due for
	// deletion), and live. PoW does not matter for stored objects.
	recent := put(wire.EncodeObject(1, uint64(now.Add(-10*time.Minute).Unix()), 2, 1, 1, []byte("recent")))
	old := put(wire.EncodeObject(1, uint64(now.Add(-4*time.Hour).Unix()), 2, 1, 1, []byte("old")))
	live := put(makeObject(t, now, time.Hour, 2, 20))
	n := startNode(t, cfg)

	waitFor(t, 5*time.Second, "old object deleted", func() bool { return !has(n, old) })
	if !has(n, recent) {
		t.Fatal("object expired 10 min ago deleted before expiresTime + 3 h")
	}
	r := dialRaw(t, addrOf(n))
	r.handshake()
	p := r.next(5*time.Second, wire.CmdInv)
	m, _ := wire.DecodeInv(p.payload)
	if len(m.Hashes) != 1 || m.Hashes[0] != live {
		t.Fatalf("inv on connect lists %d hashes; want only the live object", len(m.Hashes))
	}
	// Asking for the expired one yields nothing; the live one, requested
	// after it, arrives — so the expired request was processed and skipped.
	r.send(wire.CmdGetData, (&wire.MsgGetData{Hashes: []wire.InvHash{recent, live}}).Encode())
	p = r.next(5*time.Second, wire.CmdObject)
	if hashOf(p.payload) != live {
		t.Fatal("served an expired object")
	}
}
