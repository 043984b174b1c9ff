package node

import (
	"sync"
	"testing"
	"time"

	"github.com/bmgate/bmgate/bmcore/params"
	"github.com/bmgate/bmgate/bmcore/wire"
)

// benchPool holds objects reused across benchmark runs (each run uses a
// fresh node, so they are new to it).
var benchPool struct {
	sync.Mutex
	objs [][]byte
	byH  map[wire.InvHash][]byte
}

func benchObjects(b *testing.B, k int) [][]byte {
	benchPool.Lock()
	defer benchPool.Unlock()
	if benchPool.byH == nil {
		benchPool.byH = map[wire.InvHash][]byte{}
	}
	for len(benchPool.objs) < k {
		// A day of TTL: the pool outlives one benchmark invocation.
		o := makeObject(b, time.Now(), 24*time.Hour, wire.ObjectMsg, 300)
		benchPool.objs = append(benchPool.objs, o)
		benchPool.byH[hashOf(o)] = o
	}
	return benchPool.objs[:k]
}

// BenchmarkIngest measures objects per second taken from one peer over
// loopback: inv → getdata (≤ 1000 per message) → object → validation (PoW
// at the network minimum) → Inventory.Put → inv to a second peer.
func BenchmarkIngest(b *testing.B) {
	objs := benchObjects(b, b.N)
	cfg := testConfig(b)
	cfg.Logger = nil
	n := startNode(b, cfg)
	sink := dialRaw(b, addrOf(n))
	sink.handshake()
	src := dialRaw(b, addrOf(n))
	src.handshake()

	b.ResetTimer()
	start := time.Now()
	for i := 0; i < len(objs); i += wire.MaxInvSend {
		src.send(wire.CmdInv, src.invOf(objs[i:min(i+wire.MaxInvSend, len(objs))]...))
	}
	served := 0
	for served < b.N {
		m, err := wire.DecodeGetData(src.next(30*time.Second, wire.CmdGetData).payload)
		if err != nil {
			b.Fatal(err)
		}
		var buf []byte
		benchPool.Lock()
		for _, h := range m.Hashes {
			buf = append(buf, wire.EncodePacket(src.magic, wire.CmdObject, benchPool.byH[h])...)
		}
		benchPool.Unlock()
		src.sendRaw(buf)
		served += len(m.Hashes)
	}
	deadline := time.Now().Add(60 * time.Second)
	for n.Stats().ObjectsReceived < uint64(b.N) {
		if time.Now().After(deadline) {
			b.Fatalf("stored %d of %d", n.Stats().ObjectsReceived, b.N)
		}
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "objects/s")
	if s := n.Stats(); s.ObjectsInvalid != 0 {
		b.Fatalf("%d invalid", s.ObjectsInvalid)
	}
}

// BenchmarkCheckObject is validation alone (decode, expiry, stream, PoW),
// the floor under BenchmarkIngest.
func BenchmarkCheckObject(b *testing.B) {
	objs := benchObjects(b, 1000)
	now := time.Now()
	b.ResetTimer()
	for i := range b.N {
		if _, err := CheckObject(objs[i%len(objs)], now, params.Testnet, []uint64{1}); err != nil {
			b.Fatal(err)
		}
	}
}
