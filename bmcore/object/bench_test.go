package object

import (
	"math/rand/v2"
	"testing"

	"github.com/bmgate/bmgate/bmcore/identity"
	"github.com/bmgate/bmgate/bmcore/wire"
)

// BenchmarkDecryptMsg is the receive path for a msg among many identities:
// trial decryption with every key, then parsing and the signature check for
// the one that matches. ns/identity is the figure that scales.
func BenchmarkDecryptMsg(b *testing.B) {
	const n = 256
	rng := rand.NewChaCha8([32]byte{20})
	keys := make([]*identity.Identity, n)
	for i := range keys {
		var s, e [32]byte
		rng.Read(s[:])
		rng.Read(e[:])
		id, err := identity.FromKeys(4, 1, s[:], e[:])
		if err != nil {
			b.Fatal(err)
		}
		keys[i] = id
	}
	to, from := keys[n/2], keys[0]
	headless, err := BuildMsg(from, PubkeyOf(to), to.Address, MsgContent{Encoding: 2, Message: make([]byte, 2000)}, 1700000000, rng)
	if err != nil {
		b.Fatal(err)
	}
	raw := withNonce(0, headless)
	b.ResetTimer()
	for b.Loop() {
		o, err := wire.DecodeObject(raw)
		if err != nil {
			b.Fatal(err)
		}
		if _, id, err := DecryptMsg(o, keys); err != nil || id != to {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/identity")
}
