package bmcrypto

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
)

// The tabulated ECDH gives exactly GenerateSharedSecret's X coordinate.
func TestPointTable(t *testing.T) {
	rng := rand.NewChaCha8([32]byte{30})
	edge := [][]byte{
		{1}, {2}, {0xff}, {1, 0}, // small scalars, one non-zero window
		mustHex("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364140"), // N-1
		mustHex("8000000000000000000000000000000000000000000000000000000000000000"), // 2^255
		mustHex("00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff"),
	}
	for round := 0; round < 3; round++ {
		r := newKey(t, rng).PubKey()
		tables := []*pointTable{newPointTable(r, 4), newPointTable(r, 8)}
		keys := make([]*secp256k1.PrivateKey, 0, 40)
		for _, e := range edge {
			keys = append(keys, secp256k1.PrivKeyFromBytes(e))
		}
		for i := 0; i < 30; i++ {
			keys = append(keys, newKey(t, rng))
		}
		for _, k := range keys {
			want := secp256k1.GenerateSharedSecret(k, r)
			for _, tab := range tables {
				if got := tab.sharedX(&k.Key); !bytes.Equal(got, want) {
					t.Fatalf("w=%d k=%x: %x, want %x", tab.w, k.Serialize(), got, want)
				}
			}
		}
	}
}

// TryDecrypt finds the right key with each table size.
func TestTryDecryptManyKeys(t *testing.T) {
	rng := rand.NewChaCha8([32]byte{31})
	for _, n := range []int{smallTableMinKeys - 1, smallTableMinKeys, largeTableMinKeys} {
		keys := make([]*secp256k1.PrivateKey, n)
		for i := range keys {
			keys[i] = newKey(t, rng)
		}
		keys[n/3] = nil
		to := n - 2
		ct, _ := Encrypt([]byte("many keys"), keys[to].PubKey(), rng)
		e, err := ParseEnvelope(ct)
		if err != nil {
			t.Fatal(err)
		}
		pt, idx, err := e.TryDecrypt(keys)
		if err != nil || idx != to || string(pt) != "many keys" {
			t.Errorf("%d keys: %q, %d, %v", n, pt, idx, err)
		}
		if _, idx, err := e.TryDecrypt(keys[:to]); idx != -1 || err == nil {
			t.Errorf("%d keys without the right one: %d, %v", to, idx, err)
		}
	}
}
