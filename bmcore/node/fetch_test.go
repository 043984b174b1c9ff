package node

import (
	"context"
	"testing"
	"time"

	"github.com/bmgate/bmgate/bmcore/inventory"
	"github.com/bmgate/bmgate/bmcore/wire"
)

func getdataOf(t *testing.T, p rawPacket) []wire.InvHash {
	t.Helper()
	m, err := wire.DecodeGetData(p.payload)
	if err != nil {
		t.Fatalf("node sent a bad getdata: %v", err)
	}
	return m.Hashes
}

// TestGetDataRetrySamePeer: a peer that drops our first getdata, as PyB does
// during its anti-intersection window, is asked again (docs/protocol.md §4.4).
func TestGetDataRetrySamePeer(t *testing.T) {
	cfg := testConfig(t)
	cfg.GetDataRetry = 300 * time.Millisecond
	n := startNode(t, cfg)
	r := dialRaw(t, addrOf(n))
	r.handshake()
	obj := makeObject(t, time.Now(), time.Hour, wire.ObjectMsg, 80)
	r.send(wire.CmdInv, r.invOf(obj))
	first := getdataOf(t, r.next(5*time.Second, wire.CmdGetData))
	if len(first) != 1 || first[0] != hashOf(obj) {
		t.Fatalf("getdata %v", first)
	}
	start := time.Now()
	// Ignore it; the node asks again after GetDataRetry.
	again := getdataOf(t, r.next(5*time.Second, wire.CmdGetData))
	if len(again) != 1 || again[0] != hashOf(obj) {
		t.Fatalf("second getdata %v", again)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("re-requested after %v, before the retry time", d)
	}
	r.send(wire.CmdObject, obj)
	waitFor(t, 5*time.Second, "object stored", func() bool { return has(n, hashOf(obj)) })
}

// TestGetDataRetryOtherPeer: the re-request goes to another peer that
// announced the object.
func TestGetDataRetryOtherPeer(t *testing.T) {
	cfg := testConfig(t)
	cfg.GetDataRetry = 300 * time.Millisecond
	n := startNode(t, cfg)
	a, b := dialRaw(t, addrOf(n)), dialRaw(t, addrOf(n))
	a.handshake()
	b.handshake()
	obj := makeObject(t, time.Now(), time.Hour, wire.ObjectMsg, 80)
	a.send(wire.CmdInv, a.invOf(obj))
	a.next(5*time.Second, wire.CmdGetData)
	b.send(wire.CmdInv, b.invOf(obj))
	// a stays silent; b gets the request.
	if got := getdataOf(t, b.next(5*time.Second, wire.CmdGetData)); len(got) != 1 || got[0] != hashOf(obj) {
		t.Fatalf("getdata to b: %v", got)
	}
	b.send(wire.CmdObject, obj)
	waitFor(t, 5*time.Second, "object stored", func() bool { return has(n, hashOf(obj)) })
	// Once stored, nobody is asked again: the fetcher forgot the object,
	// a pass of the fetch loop that started before it was stored has
	// queued what it had to, and a's pong follows any such getdata.
	waitFor(t, 5*time.Second, "fetch finished", func() bool { return n.Stats().Fetching == 0 })
	target := n.fetchPasses.Load() + 1
	waitFor(t, 5*time.Second, "a fetch loop pass", func() bool { return n.fetchPasses.Load() >= target })
	for _, p := range a.sync(5 * time.Second) {
		if p.cmd == wire.CmdGetData {
			t.Fatalf("a asked again after delivery: %v", getdataOf(t, p))
		}
	}
}

// TestGetDataChunks: at most 1000 hashes per getdata (docs/protocol.md §4.4, §16),
// and everything announced is fetched.
func TestGetDataChunks(t *testing.T) {
	n := startNode(t, testConfig(t))
	r := dialRaw(t, addrOf(n))
	r.handshake()
	const k = 2500
	objs := map[wire.InvHash][]byte{}
	var list [][]byte
	for range k {
		o := makeObject(t, time.Now(), time.Hour, wire.ObjectGetPubkey, 20)
		objs[hashOf(o)] = o
		list = append(list, o)
	}
	r.send(wire.CmdInv, r.invOf(list...))
	served := 0
	for served < k {
		hs := getdataOf(t, r.next(10*time.Second, wire.CmdGetData))
		if len(hs) == 0 || len(hs) > 1000 {
			t.Fatalf("getdata with %d hashes", len(hs))
		}
		for _, h := range hs {
			o, ok := objs[h]
			if !ok {
				t.Fatalf("asked for an unannounced hash")
			}
			delete(objs, h)
			r.send(wire.CmdObject, o)
			served++
		}
	}
	waitFor(t, 10*time.Second, "all stored", func() bool { return n.Stats().ObjectsReceived == k })
	if n.Stats().Fetching != 0 {
		t.Fatalf("still fetching %d", n.Stats().Fetching)
	}
}

// TestBigInvChunks: the inv sent on connect is split at 49 999 hashes,
// because PyB 0.6.3.2 drops an inv of 50 000 (docs/protocol.md §4).
func TestBigInvChunks(t *testing.T) {
	cfg := testConfig(t)
	ctx := context.Background()
	exp := time.Now().Add(time.Hour)
	const k = wire.MaxInvSend + 2
	for i := range k {
		var h wire.InvHash
		h[0], h[1], h[2] = byte(i>>16), byte(i>>8), byte(i)
		if _, err := cfg.Inventory.Put(ctx, inventory.StoredObject{Hash: h, Stream: 1, Expires: exp, Raw: []byte{}}); err != nil {
			t.Fatal(err)
		}
	}
	n := startNode(t, cfg)
	r := dialRaw(t, addrOf(n))
	r.handshake()
	total := 0
	var sizes []int
	for total < k {
		m, err := wire.DecodeInv(r.next(10*time.Second, wire.CmdInv).payload)
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Hashes) > wire.MaxInvSend {
			t.Fatalf("inv of %d hashes", len(m.Hashes))
		}
		sizes = append(sizes, len(m.Hashes))
		total += len(m.Hashes)
	}
	if total != k || len(sizes) != 2 {
		t.Fatalf("inv sizes %v", sizes)
	}
}

// TestRelayToOthersNotBack: an object received from one peer is announced
// to the others and not back to its source.
func TestRelayToOthersNotBack(t *testing.T) {
	n := startNode(t, testConfig(t))
	// With one object stored, each greeting ends with an inv: once it came,
	// the full inv of the new connection (which lists whatever is stored
	// by then) is out of the way.
	if _, err := n.Publish(context.Background(), makeObject(t, time.Now(), time.Hour, 2, 10)); err != nil {
		t.Fatal(err)
	}
	src, dst := dialRaw(t, addrOf(n)), dialRaw(t, addrOf(n))
	src.handshake()
	dst.handshake()
	src.next(5*time.Second, wire.CmdInv)
	dst.next(5*time.Second, wire.CmdInv)
	obj := makeObject(t, time.Now(), time.Hour, wire.ObjectMsg, 64)
	obj2 := makeObject(t, time.Now(), time.Hour, wire.ObjectMsg, 64)
	src.send(wire.CmdObject, obj) // unsolicited objects are accepted (docs/protocol.md §5.3)
	m, err := wire.DecodeInv(dst.next(5*time.Second, wire.CmdInv).payload)
	if err != nil || len(m.Hashes) != 1 || m.Hashes[0] != hashOf(obj) {
		t.Fatalf("relay inv %v, %v", m, err)
	}
	dst.send(wire.CmdGetData, (&wire.MsgGetData{Hashes: m.Hashes}).Encode())
	if p := dst.next(5*time.Second, wire.CmdObject); hashOf(p.payload) != hashOf(obj) {
		t.Fatal("wrong object served")
	}
	// src's pong: the node handled src's object, so an announcement back
	// to src would be queued by now. A second object, from dst, is then
	// announced to src after it (announcements go out in order): every
	// inv src gets up to that one must leave out the first object.
	notBack := func(ps []rawPacket) bool {
		found := false
		for _, p := range ps {
			if p.cmd != wire.CmdInv {
				continue
			}
			m, err := wire.DecodeInv(p.payload)
			if err != nil {
				t.Fatal(err)
			}
			for _, h := range m.Hashes {
				if h == hashOf(obj) {
					t.Fatal("object announced back to its source")
				}
				found = found || h == hashOf(obj2)
			}
		}
		return found
	}
	notBack(src.sync(5 * time.Second))
	dst.send(wire.CmdObject, obj2)
	for done := false; !done; {
		done = notBack([]rawPacket{src.next(5*time.Second, wire.CmdInv)})
	}
	// The relay counter moves just after the object was written.
	waitFor(t, 5*time.Second, "relay counted", func() bool { return n.Stats().ObjectsRelayed >= 1 })
	if s := n.Stats(); s.ObjectsReceived != 2 || s.ObjectsRelayed != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// TestGetDataDelay: no getdata to a PyBitmessage peer in the first seconds
// after the handshake, when it would discard it (docs/protocol.md §4.4).
func TestGetDataDelay(t *testing.T) {
	cfg := testConfig(t)
	cfg.GetDataDelay = 500 * time.Millisecond
	n := startNode(t, cfg)
	r := dialRaw(t, addrOf(n))
	r.userAgent = "/PyBitmessage:0.6.3.2/"
	r.handshake()
	start := time.Now()
	obj := makeObject(t, time.Now(), time.Hour, wire.ObjectMsg, 10)
	r.send(wire.CmdInv, r.invOf(obj))
	r.next(5*time.Second, wire.CmdGetData)
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Fatalf("getdata %v after the handshake", d)
	}
}

func TestGetDataDelayOnlyForPyBitmessage(t *testing.T) {
	cfg := testConfig(t)
	cfg.GetDataDelay = time.Hour
	n := startNode(t, cfg)
	r := dialRaw(t, addrOf(n))
	r.handshake() // user agent /rawpeer:1.0/
	obj := makeObject(t, time.Now(), time.Hour, wire.ObjectMsg, 10)
	r.send(wire.CmdInv, r.invOf(obj))
	r.next(5*time.Second, wire.CmdGetData)
}
