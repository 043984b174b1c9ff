package node

import (
	"context"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bmgate/bmgate/bmcore/wire"
)

// startNodeWith is startNode with a hook that runs between New and Start.
func startNodeWith(t testing.TB, cfg Config, hook func(*Node)) *Node {
	t.Helper()
	n, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	hook(n)
	if err := n.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}

// checkFetchTable verifies the fetch table's bounds and bookkeeping: at
// most maxItems objects (now and ever), every live peer's count is the
// number of objects listing it as a source and within its share, and no
// object lists a source twice or more than maxFetchSources.
func checkFetchTable(t testing.TB, f *fetcher) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.items) > f.maxItems || f.peak > f.maxItems {
		t.Fatalf("fetch table holds %d objects (peak %d), cap %d", len(f.items), f.peak, f.maxItems)
	}
	counts := map[*peer]int{}
	for h, it := range f.items {
		if len(it.sources) > maxFetchSources {
			t.Fatalf("object %s has %d sources", h.String()[:8], len(it.sources))
		}
		for i, s := range it.sources {
			if slices.Contains(it.sources[i+1:], s) {
				t.Fatalf("object %s lists a source twice", h.String()[:8])
			}
			counts[s]++
		}
	}
	for p, c := range counts {
		if p.isClosing() {
			continue
		}
		if p.fetchTracked != c {
			t.Fatalf("peer counted as source of %d objects, listed by %d", p.fetchTracked, c)
		}
		if c > f.perPeer {
			t.Fatalf("peer is source of %d objects, share %d", c, f.perPeer)
		}
		if _, ok := f.holders[p]; !ok {
			t.Fatal("source missing from holders")
		}
	}
	for p := range f.holders {
		if !p.isClosing() && counts[p] == 0 {
			t.Fatal("holder without objects")
		}
	}
}

// nodePeer returns the node's side of a raw peer's connection.
func nodePeer(t testing.TB, n *Node, r *rawPeer) *peer {
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	for p := range n.peers {
		if p.remote.Port() == r.localPort() {
			return p
		}
	}
	t.Fatalf("no connection for %s", r)
	return nil
}

func trackedOf(n *Node, p *peer) int {
	n.fetch.mu.Lock()
	defer n.fetch.mu.Unlock()
	return p.fetchTracked
}

// TestInvFloodDoesNotStarveFetch: three peers announce 5000 objects each
// that they never serve, against a fetch table of 3000 (scaled down from
// 250 000), then a fourth peer announces one real object. That object is
// requested and stored with the fetch clock standing still (no request
// needs to time out first), the table never exceeds its cap, and once the
// flooders' requests time out twice they are disconnected, scored and
// rated down, and their entries are gone. "share": each peer may hold a quarter
// of the table (the default), so the flooders fill 2250; "evict": a peer
// may hold the whole table, the flooders fill it, and the newcomer
// displaces an entry of the biggest holder.
func TestInvFloodDoesNotStarveFetch(t *testing.T) {
	const tableCap, announced = 3000, 5000
	for _, tc := range []struct {
		name         string
		perPeer      int
		wantFlooders int // objects each flooder holds before the real one comes
	}{
		{"share", 0, tableCap / defaultFetchShare},
		{"evict", tableCap, tableCap / 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newFakeClock(time.Now())
			cfg := testConfig(t)
			cfg.MaxFetching = tableCap
			cfg.MaxFetchingPerPeer = tc.perPeer
			cfg.GetDataRetry = time.Minute // on the fake fetch clock
			n := startNodeWith(t, cfg, func(n *Node) { n.fetch.now = clk.Now })
			start := clk.Now()

			var flooders []*rawPeer
			for range 3 {
				r := dialRaw(t, addrOf(n))
				r.handshake()
				r.send(wire.CmdInv, (&wire.MsgInv{Hashes: randomHashes(announced)}).Encode())
				r.sync(10 * time.Second) // the node has handled the inv
				checkFetchTable(t, n.fetch)
				flooders = append(flooders, r)
			}
			for i, r := range flooders {
				if got := trackedOf(n, nodePeer(t, n, r)); got != tc.wantFlooders {
					t.Fatalf("flooder %d holds %d objects, want %d", i, got, tc.wantFlooders)
				}
			}
			if got := n.Stats().Fetching; got != 3*tc.wantFlooders {
				t.Fatalf("fetching %d, want %d", got, 3*tc.wantFlooders)
			}

			good := dialRaw(t, addrOf(n))
			good.handshake()
			obj := makeObject(t, time.Now(), time.Hour, wire.ObjectMsg, 80)
			passes := n.fetchPasses.Load()
			good.send(wire.CmdInv, good.invOf(obj))
			if got := getdataOf(t, good.next(10*time.Second, wire.CmdGetData)); len(got) != 1 || got[0] != hashOf(obj) {
				t.Fatalf("getdata to the good peer: %v", got)
			}
			good.send(wire.CmdObject, obj)
			waitFor(t, 10*time.Second, "real object stored", func() bool { return has(n, hashOf(obj)) })
			// The inv wakes the fetch loop; the second-granularity ticker
			// may add a pass or two on a slow machine.
			if d := n.fetchPasses.Load() - passes; d > 10 {
				t.Fatalf("real object requested after %d fetch passes", d)
			}
			if !clk.Now().Equal(start) {
				t.Fatal("fetch clock moved")
			}
			checkFetchTable(t, n.fetch)

			// The flooders' requests time out: they answered none. They
			// are asked again (one stall is forgiven), and when those
			// requests time out too, they are disconnected.
			fl := make([]*peer, len(flooders))
			for i, r := range flooders {
				fl[i] = nodePeer(t, n, r)
			}
			clk.Advance(cfg.GetDataRetry + time.Second)
			n.fetch.kick()
			waitFor(t, 10*time.Second, "flooders' requests expired", func() bool {
				n.fetch.mu.Lock()
				defer n.fetch.mu.Unlock()
				for _, p := range fl {
					if p.fetchUnanswered < unansweredLimit || p.fetchPenalized {
						return false
					}
				}
				return true
			})
			// The pass that expired them has re-requested what is left.
			target := n.fetchPasses.Load() + 1
			waitFor(t, 10*time.Second, "a fetch loop pass", func() bool { return n.fetchPasses.Load() >= target })
			for i, r := range flooders {
				if r.isClosed() {
					t.Fatalf("flooder %d disconnected after one stall", i)
				}
			}
			clk.Advance(cfg.GetDataRetry + time.Second)
			n.fetch.kick()
			for i, r := range flooders {
				if !r.closed(10 * time.Second) {
					t.Fatalf("flooder %d not disconnected", i)
				}
			}
			waitFor(t, 10*time.Second, "flooders' objects forgotten", func() bool { return n.Stats().Fetching == 0 })
			checkFetchTable(t, n.fetch)
			for i, r := range flooders {
				key := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(r.localPort())))
				if s := n.bans.score(key, time.Now()); s < scoreUnanswered-1 {
					t.Fatalf("flooder %d score %v", i, s)
				}
				waitFor(t, 10*time.Second, "flooder rated down", func() bool {
					n.book.mu.Lock()
					defer n.book.mu.Unlock()
					kn := n.book.nodes[1][key]
					return kn != nil && kn.Rating < 0
				})
			}
			// The good peer is untouched.
			good.sync(10 * time.Second)
			if s := n.bans.score(nodePeer(t, n, good).banKey(), time.Now()); s != 0 {
				t.Fatalf("good peer scored %v", s)
			}
			if s := n.Stats(); s.ObjectsReceived != 1 || s.PeersInbound != 1 {
				t.Fatalf("stats %+v", s)
			}
		})
	}
}

func testFetchPeer() *peer {
	return &peer{log: slog.New(slog.DiscardHandler)}
}

// TestFetcherEvictsOnlyOverShare: in a full table a newcomer displaces
// objects only the biggest holder announced, never one another peer also
// announced, and a peer at its fair share displaces nothing.
func TestFetcherEvictsOnlyOverShare(t *testing.T) {
	f := newFetcher(100, 100, time.Minute)
	a, b, c := testFetchPeer(), testFetchPeer(), testFetchPeer()
	shared := randomHashes(10)
	f.announce(a, shared)
	f.announce(b, shared)
	f.announce(a, randomHashes(200)) // a fills the table: 100 objects
	if f.pending() != 100 || a.fetchTracked != 100 || b.fetchTracked != 10 {
		t.Fatalf("pending %d, a %d, b %d", f.pending(), a.fetchTracked, b.fetchTracked)
	}
	// Three holders: a fair share is 33.
	f.announce(c, randomHashes(100))
	if c.fetchTracked != 33 || a.fetchTracked != 67 || b.fetchTracked != 10 || f.pending() != 100 {
		t.Fatalf("after the newcomer: a %d, b %d, c %d, pending %d", a.fetchTracked, b.fetchTracked, c.fetchTracked, f.pending())
	}
	for _, h := range shared {
		if it := f.items[h]; it == nil || len(it.sources) != 2 {
			t.Fatal("an object two peers announced was evicted")
		}
	}
	// c is at its fair share: more from c is dropped, nothing evicted.
	before := f.evicted
	f.announce(c, randomHashes(10))
	if c.fetchTracked != 33 || f.evicted != before {
		t.Fatalf("peer at its fair share evicted: c %d, evicted %d", c.fetchTracked, f.evicted-before)
	}
	checkFetchTable(t, f)
	f.peerGone(a)
	if f.pending() != 10+33 {
		t.Fatalf("after a left: pending %d", f.pending())
	}
	checkFetchTable(t, f)
}

// TestFetcherUnanswered: a peer that delivers nothing for two retry times
// is reported once it passes unansweredLimit; one that is slow but
// delivering is not blamed and keeps its objects.
func TestFetcherUnanswered(t *testing.T) {
	clk := newFakeClock(time.Now())
	f := newFetcher(10000, 10000, time.Minute)
	f.now = clk.Now
	mute, slow := testFetchPeer(), testFetchPeer()
	muteHs, slowHs := randomHashes(unansweredLimit), randomHashes(unansweredLimit)
	f.announce(mute, muteHs)
	f.announce(slow, slowHs)
	got := f.schedule([]*peer{mute, slow})
	if len(got[mute]) != unansweredLimit || len(got[slow]) != unansweredLimit {
		t.Fatalf("scheduled %d and %d", len(got[mute]), len(got[slow]))
	}
	clk.Advance(30 * time.Second)
	f.received(slowHs[0], slow)
	if off := f.expire(); off != nil {
		t.Fatalf("offenders before any deadline: %v", off)
	}
	clk.Advance(31 * time.Second)
	// One stall is forgiven: both are asked again.
	if off := f.expire(); off != nil {
		t.Fatalf("offenders after one stall: %+v", off)
	}
	if mute.fetchUnanswered != unansweredLimit || len(mute.retry) != unansweredLimit {
		t.Fatalf("mute peer: unanswered %d, retry %d", mute.fetchUnanswered, len(mute.retry))
	}
	if slow.fetchUnanswered != 0 || slow.fetchDelivered != 1 || len(slow.retry) != unansweredLimit-1 {
		t.Fatalf("slow peer: unanswered %d, delivered %d, retry %d", slow.fetchUnanswered, slow.fetchDelivered, len(slow.retry))
	}
	got = f.schedule([]*peer{mute, slow})
	if len(got[mute]) != unansweredLimit || len(got[slow]) != unansweredLimit-1 {
		t.Fatalf("re-requested %d and %d", len(got[mute]), len(got[slow]))
	}
	clk.Advance(10 * time.Second)
	f.received(slowHs[1], slow)
	clk.Advance(51 * time.Second)
	off := f.expire()
	if len(off) != 1 || off[0].p != mute || off[0].unanswered != 2*unansweredLimit || off[0].delivered != 0 {
		t.Fatalf("offenders %+v", off)
	}
	if slow.fetchUnanswered != 0 {
		t.Fatalf("slow peer blamed: %d", slow.fetchUnanswered)
	}
	// Reported once.
	f.schedule([]*peer{mute})
	clk.Advance(2 * time.Minute)
	if off := f.expire(); len(off) != 0 {
		t.Fatalf("reported again: %+v", off)
	}
	checkFetchTable(t, f)
}

// TestVersionNoSharedStream: a version that lists only streams we do not
// serve (0 and 2^64−1) is refused, inbound and outbound, before the
// connection is established or claims its address.
func TestVersionNoSharedStream(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := testConfig(t)
	cfg.Peers = []string{ln.Addr().String()}
	var established atomic.Int32
	n := startNodeWith(t, cfg, func(n *Node) {
		n.testHookEstablished = func(*peer) { established.Add(1) }
	})
	badStreams := []uint64{0, 1<<64 - 1}
	refused := func(t *testing.T, r *rawPeer) {
		t.Helper()
		p := r.next(5*time.Second, wire.CmdError, wire.CmdVerack)
		if p.cmd != wire.CmdError {
			t.Fatalf("got %s, want error", p.cmd)
		}
		if e, err := wire.DecodeError(p.payload); err != nil || e.Fatal != wire.ErrorFatal {
			t.Fatalf("error message %+v, %v", e, err)
		}
		if !r.closed(5 * time.Second) {
			t.Fatal("connection not closed after refusal")
		}
		if _, ok := r.tryNext(time.Second, wire.CmdVerack); ok {
			t.Fatal("verack after refusal")
		}
	}

	t.Run("outbound", func(t *testing.T) {
		conn, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		r := newRawPeer(t, conn)
		r.next(5*time.Second, wire.CmdVersion)
		v := r.version(time.Now())
		v.Streams = badStreams
		r.send(wire.CmdVerack, nil)
		r.send(wire.CmdVersion, v.Encode())
		refused(t, r)
		n.book.mu.Lock()
		kn := n.book.nodes[1][ln.Addr().String()]
		n.book.mu.Unlock()
		if kn != nil && kn.Rating > 0 {
			t.Fatalf("refused peer recorded as connected: %+v", *kn)
		}
	})
	t.Run("inbound", func(t *testing.T) {
		r := dialRaw(t, addrOf(n))
		v := r.version(time.Now())
		v.Streams = badStreams
		r.send(wire.CmdVersion, v.Encode())
		refused(t, r)
		key := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(r.localPort())))
		n.mu.Lock()
		claimed := n.byKey[key] != nil
		n.mu.Unlock()
		if claimed {
			t.Fatal("refused peer claimed its address")
		}
	})
	if got := established.Load(); got != 0 {
		t.Fatalf("%d refused connections established", got)
	}
	// A version sharing stream 1 among others is accepted.
	r := dialRaw(t, addrOf(n))
	v := r.version(time.Now())
	v.Streams = []uint64{0, 1, 1<<64 - 1}
	r.send(wire.CmdVersion, v.Encode())
	r.next(5*time.Second, wire.CmdVerack)
}
