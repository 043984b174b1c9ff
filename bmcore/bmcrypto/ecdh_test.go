package bmcrypto

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"math/rand/v2"
	"os"
	"testing"
	"unsafe"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
)

// edgeScalars are scalars that stress the window arithmetic: the smallest and
// largest keys, powers of two on and off window boundaries, scalars with many
// zero windows and with all-ones windows.
func edgeScalars(t testing.TB) []*secp256k1.ModNScalar {
	t.Helper()
	n := secp256k1.S256().N
	var ints []*big.Int
	for _, v := range []int64{1, 2, 3, 255, 256, 4095, 4096, 4097} {
		ints = append(ints, big.NewInt(v))
	}
	for _, d := range []int64{1, 2, 3} {
		ints = append(ints, new(big.Int).Sub(n, big.NewInt(d)))
	}
	for _, k := range []uint{1, 7, 8, 9, 10, 11, 12, 13, 63, 64, 65, 127, 128, 200, 251, 252, 253, 254, 255} {
		p := new(big.Int).Lsh(big.NewInt(1), k)
		ints = append(ints, p, new(big.Int).Sub(p, big.NewInt(1)), new(big.Int).Add(p, big.NewInt(1)))
	}
	for _, h := range []string{
		"8000000000000000000000000000000000000000000000000000000000000001", // zero windows between
		"00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff",
		"ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00",
		"fff000fff000fff000fff000fff000fff000fff000fff000fff000fff000fff0",
		"0000000000000000000000000000000100000000000000000000000000000000",
		"fffffffffffffffffffffffffffffffe0fffffffffffffffffffffffffffffff", // all-ones windows below N
		"7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
		"0fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	} {
		v, _ := new(big.Int).SetString(h, 16)
		ints = append(ints, v)
	}
	var out []*secp256k1.ModNScalar
	for _, v := range ints {
		if v.Sign() <= 0 || v.Cmp(n) >= 0 {
			t.Fatalf("edge scalar %x out of range", v)
		}
		var b [32]byte
		v.FillBytes(b[:])
		var s secp256k1.ModNScalar
		if s.SetBytes(&b) != 0 {
			t.Fatalf("edge scalar %x overflows", v)
		}
		out = append(out, &s)
	}
	return out
}

// wantMul is k·R the generic way, in affine coordinates.
func wantMul(k *secp256k1.ModNScalar, r *secp256k1.PublicKey) affinePoint {
	var rj, p secp256k1.JacobianPoint
	r.AsJacobian(&rj)
	secp256k1.ScalarMultNonConst(k, &rj, &p)
	p.ToAffine()
	return affinePoint{x: p.X, y: p.Y}
}

func checkMulKeys(t *testing.T, tab *pointTable, s *trialScratch, r *secp256k1.PublicKey, ks []*secp256k1.ModNScalar) {
	t.Helper()
	out := make([]affinePoint, len(ks))
	tab.mulKeys(ks, out, s)
	for j, k := range ks {
		want := wantMul(k, r)
		if !out[j].x.Equals(&want.x) || !out[j].y.Equals(&want.y) {
			t.Fatalf("w=%d k=%x: (%v, %v), want (%v, %v)", tab.w, k.Bytes(), &out[j].x, &out[j].y, &want.x, &want.y)
		}
	}
}

// The tabulated, batched affine ECDH gives exactly ScalarMultNonConst's point
// for every window size, on random and edge scalars.
func TestPointTable(t *testing.T) {
	rng := rand.NewChaCha8([32]byte{30})
	edge := edgeScalars(t)
	for w := uint(minWindow); w <= maxWindow; w++ {
		r := newKey(t, rng).PubKey()
		s := new(trialScratch)
		if !s.table.build(r, w, s) {
			t.Fatalf("w=%d: table build failed", w)
		}
		if len(s.table.points) != tableSize(w) || tableSize(w)*sizeofAffine > maxTableBytes {
			t.Fatalf("w=%d: %d points, want %d within %d bytes", w, len(s.table.points), tableSize(w), maxTableBytes)
		}
		// Every table entry is d·2^(w·i)·R.
		if w <= 5 {
			for i := 0; i < s.table.windows; i++ {
				for d := 1; d <= s.table.digits(i); d++ {
					var k secp256k1.ModNScalar
					k.SetInt(uint32(d))
					for range int(w) * i {
						k.Add(&k)
					}
					want := wantMul(&k, r)
					got := s.table.points[i*s.table.stride+d-1]
					if !got.x.Equals(&want.x) || !got.y.Equals(&want.y) {
						t.Fatalf("w=%d window %d digit %d wrong", w, i, d)
					}
				}
			}
		}
		ks := append([]*secp256k1.ModNScalar(nil), edge...)
		for range 100 {
			ks = append(ks, &newKey(t, rng).Key)
		}
		checkMulKeys(t, &s.table, s, r, ks)
		if s.slow != 0 {
			t.Errorf("w=%d: %d keys needed the generic way", w, s.slow)
		}

		// A batch of one and the same table reused for another point.
		checkMulKeys(t, &s.table, s, r, ks[:1])
		r2 := newKey(t, rng).PubKey()
		if !s.table.build(r2, w, s) {
			t.Fatal("rebuild failed")
		}
		checkMulKeys(t, &s.table, s, r2, ks[len(ks)-40:])
	}
}

// Many random scalars against the two table sizes TryDecrypt uses most.
func TestPointTableRandom(t *testing.T) {
	rng := rand.NewChaCha8([32]byte{33})
	for _, w := range []uint{chooseWindow(10000), chooseWindow(600)} {
		r := newKey(t, rng).PubKey()
		s := new(trialScratch)
		if !s.table.build(r, w, s) {
			t.Fatal("table build failed")
		}
		ks := make([]*secp256k1.ModNScalar, mulBatch+300)
		for i := range ks {
			ks[i] = &newKey(t, rng).Key
		}
		checkMulKeys(t, &s.table, s, r, ks[:mulBatch])
		checkMulKeys(t, &s.table, s, r, ks[mulBatch:])
	}
}

// An addition with equal x coordinates (impossible with a correct table) is
// not performed; the key is computed the generic way instead.
func TestPointTableExceptional(t *testing.T) {
	rng := rand.NewChaCha8([32]byte{34})
	r := newKey(t, rng).PubKey()
	s := new(trialScratch)
	const w = 4
	if !s.table.build(r, w, s) {
		t.Fatal("table build failed")
	}
	// Make T[1][1] (16·R) equal to T[0][3] (3·R) and T[2][1] (256·R) equal
	// to -(3·R): k = 0x13 then needs a doubling and k = 0x103 the sum
	// P + (-P); both must come out right the generic way, and k = 0x3 and
	// 0x23 (3·R + T[1][2] = 3·R + 32·R) are unaffected.
	tab := &s.table
	var three, six secp256k1.ModNScalar
	three.SetInt(3)
	six.SetInt(6)
	tab.points[tab.stride+0] = tab.points[2]
	neg3 := tab.points[2]
	neg3.y.Negate(1).Normalize()
	tab.points[2*tab.stride+0] = neg3
	var ks []*secp256k1.ModNScalar
	for _, v := range []uint32{0x13, 0x103, 0x3, 0x23} {
		ks = append(ks, new(secp256k1.ModNScalar).SetInt(v))
	}
	checkMulKeys(t, tab, s, r, ks)
	// The adder reports P + P and P + (-P) and leaves their outputs alone.
	a := &affineAdder{}
	p := wantMul(&three, r)
	neg := neg3
	q := wantMul(&six, r)
	var o1, o2, o3 affinePoint
	a.queue(&p, &p, &o1)
	a.queue(&p, &q, &o2)
	a.queue(&p, &neg, &o3)
	if bad := a.run(); bad != 2 || !a.failed[0] || a.failed[1] || !a.failed[2] {
		t.Fatalf("adder: %d failed %v", bad, a.failed[:3])
	}
	var nine secp256k1.ModNScalar
	nine.SetInt(9)
	if want := wantMul(&nine, r); !o2.x.Equals(&want.x) || !o2.y.Equals(&want.y) {
		t.Error("3R + 6R wrong")
	}
	if !o1.x.IsZero() || !o3.x.IsZero() {
		t.Error("failed additions wrote their output")
	}
}

func TestChooseWindow(t *testing.T) {
	prev := uint(0)
	for _, n := range []int{0, 1, 2, 8, 16, 31, 32, 33, 64, 128, 511, 512, 513, 1000, 5000, 10000, 20000, 1 << 20} {
		w := chooseWindow(n)
		if w != 0 && (w < minWindow || w > maxWindow || tableSize(w)*sizeofAffine > maxTableBytes) {
			t.Errorf("%d keys: window %d", n, w)
		}
		if w < prev {
			t.Errorf("%d keys: window %d smaller than %d for fewer keys", n, w, prev)
		}
		prev = w
		t.Logf("%d keys: window %d", n, w)
	}
	if unsafe.Sizeof(affinePoint{}) != sizeofAffine {
		t.Errorf("affinePoint is %d bytes, sizeofAffine says %d", unsafe.Sizeof(affinePoint{}), sizeofAffine)
	}
	if chooseWindow(1) != 0 {
		t.Error("a table for one key")
	}
}

// refTryDecrypt is what TryDecrypt must return: the result of the first key
// whose Decrypt succeeds, or ErrAuth and -1.
func refTryDecrypt(e *Envelope, keys []*secp256k1.PrivateKey) ([]byte, int, error) {
	for i, k := range keys {
		if pt, err := e.Decrypt(k); err == nil {
			return pt, i, nil
		}
	}
	return nil, -1, ErrAuth
}

func sameTry(t testing.TB, what string, e *Envelope, keys []*secp256k1.PrivateKey) {
	t.Helper()
	pt, idx, err := e.TryDecrypt(keys)
	wpt, widx, werr := refTryDecrypt(e, keys)
	if idx != widx || !bytes.Equal(pt, wpt) || (err == nil) != (werr == nil) || (err != nil && !errors.Is(err, werr)) {
		t.Fatalf("%s (%d keys): TryDecrypt = %q, %d, %v; per-key Decrypt = %q, %d, %v", what, len(keys), pt, idx, err, wpt, widx, werr)
	}
}

// TryDecrypt agrees with the per-key Decrypt loop for key counts around every
// threshold and batch boundary, with the right key first, in the middle, last
// or absent, among nil, zero and duplicate keys.
func TestTryDecryptAgrees(t *testing.T) {
	rng := rand.NewChaCha8([32]byte{35})
	pool := make([]*secp256k1.PrivateKey, 2*mulBatch+10)
	for i := range pool {
		pool[i] = newKey(t, rng)
	}
	counts := []int{1, 2, 3, 15, 16, 17, 31, 32, 33, 64, 511, 512, 513}
	if !testing.Short() {
		counts = append(counts, mulBatch-1, mulBatch, mulBatch+1, 2*mulBatch+10)
	}
	for n := 1; n <= 1100; n++ {
		if w := chooseWindow(n); w != chooseWindow(n-1) {
			counts = append(counts, n-1, n, n+1)
		}
	}
	for _, n := range counts {
		keys := append([]*secp256k1.PrivateKey(nil), pool[:n]...)
		// Above a few hundred keys the per-key Decrypt loop is slow; there
		// the expected result is the one known: the index of the key the
		// envelope was encrypted to, and its plaintext.
		check := func(what string, e *Envelope, keys []*secp256k1.PrivateKey, to int, pt string) {
			t.Helper()
			if n <= 600 {
				sameTry(t, what, e, keys)
				return
			}
			got, idx, err := e.TryDecrypt(keys)
			if to < 0 && (got != nil || idx != -1 || !errors.Is(err, ErrAuth)) ||
				to >= 0 && (err != nil || idx != to || string(got) != pt) {
				t.Fatalf("%s (%d keys): %q, %d, %v; want %q, %d", what, len(keys), got, idx, err, pt, to)
			}
		}
		for _, to := range []int{0, n / 2, n - 1} {
			pt := fmt.Sprintf("to %d of %d", to, n)
			ct, _ := Encrypt([]byte(pt), keys[to].PubKey(), rng)
			e, err := ParseEnvelope(ct)
			if err != nil {
				t.Fatal(err)
			}
			check(fmt.Sprintf("key at %d", to), e, keys, to, pt)
			if to == n/2 && n > 2 {
				// Without the right key; with nil and zero keys and a
				// duplicate of the right key after it (the first wins).
				check("absent", e, append(append([]*secp256k1.PrivateKey(nil), keys[:to]...), keys[to+1:]...), -1, "")
				mixed := append([]*secp256k1.PrivateKey{nil, {}}, keys...)
				mixed[1+n/3] = nil
				mixed = append(mixed, nil, keys[to], &secp256k1.PrivateKey{})
				check("mixed", e, mixed, 2+to, pt)
				if _, idx, _ := e.TryDecrypt(mixed); idx != 2+to {
					t.Fatalf("duplicate key: index %d, want the first, %d", idx, 2+to)
				}
			}
		}
	}
}

// Edge scalars as private keys, end to end through the tables.
func TestTryDecryptEdgeKeys(t *testing.T) {
	rng := rand.NewChaCha8([32]byte{36})
	var keys []*secp256k1.PrivateKey
	for _, s := range edgeScalars(t) {
		keys = append(keys, secp256k1.NewPrivateKey(s))
	}
	for len(keys) < 600 {
		keys = append(keys, newKey(t, rng))
	}
	for _, to := range []int{0, 1, 10, 20, 30, 40, 50, 60, 70} {
		ct, _ := Encrypt([]byte("edge"), keys[to].PubKey(), rng)
		e, err := ParseEnvelope(ct)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []int{to + 1, 40, 600} {
			if n > to {
				sameTry(t, fmt.Sprintf("edge key %d", to), e, keys[:n])
			}
		}
	}
}

// The msg test vector opens with the chan key among many others, as with
// Decrypt.
func TestTryDecryptVector(t *testing.T) {
	data := fuzzSeedMsg(t)
	e, err := ParseEnvelope(data)
	if err != nil {
		t.Fatal(err)
	}
	chanKey := secp256k1.PrivKeyFromBytes(mustHex("114ec0e2dca24a826a0eed064b0405b0ac148abc3b1d52729697f4d7b873fdc6"))
	want, err := e.Decrypt(chanKey)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.NewChaCha8([32]byte{37})
	keys := make([]*secp256k1.PrivateKey, 700)
	for i := range keys {
		keys[i] = newKey(t, rng)
	}
	for _, at := range []int{0, 350, 699} {
		ks := append([]*secp256k1.PrivateKey(nil), keys...)
		ks[at] = chanKey
		for _, n := range []int{at + 1, 700} {
			pt, idx, err := e.TryDecrypt(ks[:n])
			if err != nil || idx != at || !bytes.Equal(pt, want) {
				t.Fatalf("chan key at %d of %d: %d, %v", at, n, idx, err)
			}
		}
	}
}

// A MAC-valid envelope with bad padding: Decrypt says ErrPadding, TryDecrypt
// (which filters on the padding first) ErrAuth, as documented.
func TestTryDecryptBadPadding(t *testing.T) {
	rng := rand.NewChaCha8([32]byte{38})
	priv := newKey(t, rng)
	ct, _ := EncryptWith(bytes.Repeat([]byte{'a'}, 16), priv.PubKey(), [16]byte{}, newKey(t, rng))
	e, _ := ParseEnvelope(ct)
	body := append([]byte(nil), ct[:len(ct)-32-16]...)
	body = append(body, make([]byte, 16)...)
	_, keyM := deriveKeys(secp256k1.GenerateSharedSecret(priv, e.Ephemeral()))
	bad, err := ParseEnvelope(append(body, hmacSHA256(keyM[:], body)...))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bad.Decrypt(priv); !errors.Is(err, ErrPadding) {
		t.Fatalf("Decrypt: %v", err)
	}
	for _, n := range []int{1, 100} {
		keys := []*secp256k1.PrivateKey{priv}
		for len(keys) < n {
			keys = append(keys, newKey(t, rng))
		}
		if pt, idx, err := bad.TryDecrypt(keys); pt != nil || idx != -1 || !errors.Is(err, ErrAuth) {
			t.Errorf("%d keys: %q, %d, %v", n, pt, idx, err)
		}
	}
}

// FuzzTryDecrypt compares TryDecrypt with the per-key Decrypt loop for
// fuzzed keys (32 bytes each, reduced mod N; zero never matches), the
// envelope encrypted to one of them, among extra random keys so that the
// tables are used.
func FuzzTryDecrypt(f *testing.F) {
	rng := rand.NewChaCha8([32]byte{39})
	extra := make([]*secp256k1.PrivateKey, 300)
	for i := range extra {
		extra[i] = newKey(f, rng)
	}
	n := secp256k1.S256().N.Bytes()
	f.Add(mustHex("0000000000000000000000000000000000000000000000000000000000000001"), uint8(0), uint16(0), false)
	f.Add(append(make([]byte, 32), n...), uint8(1), uint16(40), true)
	f.Add(append(mustHex("8000000000000000000000000000000000000000000000000000000000000001"), n...), uint8(0), uint16(300), false)
	f.Fuzz(func(t *testing.T, keyData []byte, target uint8, more uint16, dup bool) {
		var keys []*secp256k1.PrivateKey
		for len(keyData) > 0 && len(keys) < 64 {
			c := keyData[:min(32, len(keyData))]
			keyData = keyData[len(c):]
			keys = append(keys, secp256k1.PrivKeyFromBytes(c))
		}
		if len(keys) == 0 {
			return
		}
		to := keys[int(target)%len(keys)]
		if to.Key.IsZero() {
			to = extra[0]
		}
		if dup {
			keys = append(keys, keys...)
		}
		keys = append(keys, extra[:int(more)%len(extra)]...)
		ct, err := Encrypt([]byte("fuzz"), to.PubKey(), rand.NewChaCha8([32]byte{byte(len(keys))}))
		if err != nil {
			t.Fatal(err)
		}
		e, err := ParseEnvelope(ct)
		if err != nil {
			t.Fatal(err)
		}
		sameTry(t, "fuzz", e, keys)
	})
}

func fuzzSeedMsg(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(vectorsPath)
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Msg struct {
			Object string `json:"object"`
		} `json:"msg"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	obj, _ := hex.DecodeString(v.Msg.Object)
	return obj[22:]
}

// Concurrent calls share pooled tables of different sizes without mixing
// them up.
func TestTryDecryptConcurrent(t *testing.T) {
	rng := rand.NewChaCha8([32]byte{40})
	keys := make([]*secp256k1.PrivateKey, 1000)
	for i := range keys {
		keys[i] = newKey(t, rng)
	}
	type job struct {
		e     *Envelope
		n, to int
	}
	var jobs []job
	for i, n := range []int{40, 300, 1000, 17, 600, 1000, 200, 64} {
		to := (i * 97) % n
		ct, _ := Encrypt([]byte(fmt.Sprint(i)), keys[to].PubKey(), rng)
		e, err := ParseEnvelope(ct)
		if err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, job{e, n, to})
	}
	errs := make(chan error, 4)
	for g := range 4 {
		go func() {
			for r := range 3 {
				for i := range jobs {
					j := jobs[(i+g+r)%len(jobs)]
					pt, idx, err := j.e.TryDecrypt(keys[:j.n])
					if err != nil || idx != j.to || string(pt) != fmt.Sprint((i+g+r)%len(jobs)) {
						errs <- fmt.Errorf("job %d: %q, %d, %v", (i+g+r)%len(jobs), pt, idx, err)
						return
					}
				}
			}
			errs <- nil
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
