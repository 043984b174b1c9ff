package bmcrypto

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	"github.com/decred/dcrd/dcrec/secp256k1/v4/ecdsa"
)

const (
	samplesPath = "../testdata/pybitmessage_samples.json"
	vectorsPath = "../testdata/test-vectors.json"
)

type eciesSample struct {
	K          string `json:"recipient_pubkey_K_hex"`
	IV         string `json:"iv_hex"`
	R          string `json:"ephemeral_privkey_r_hex"`
	RPub       string `json:"ephemeral_pubkey_R_hex"`
	RBin       string `json:"ephemeral_pubkey_R_bin_hex"`
	KeyE       string `json:"key_e_hex"`
	KeyM       string `json:"key_m_hex"`
	Plaintext  string `json:"plaintext_hex"`
	Ciphertext string `json:"ciphertext_hex"`
	MAC        string `json:"mac_hex"`
	Full       string `json:"full_payload_hex"`
}

type sigSample struct {
	Pub    string `json:"pub_signing_key_hex"`
	Msg    string `json:"msg_hex"`
	SHA256 string `json:"sig_sha256_der_hex"`
	SHA1   string `json:"sig_sha1_der_hex"`
}

func loadSamples(t testing.TB) (eciesSample, sigSample) {
	t.Helper()
	b, err := os.ReadFile(samplesPath)
	if err != nil {
		t.Fatalf("read samples: %v", err)
	}
	var s struct {
		Vectors struct {
			ECIES eciesSample `json:"ecies_encryption_parts"`
			Sigs  sigSample   `json:"ecdsa_signatures"`
		} `json:"vectors"`
	}
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("parse samples: %v", err)
	}
	return s.Vectors.ECIES, s.Vectors.Sigs
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// docs/protocol.md §8.3 / pyelliptic test_ecc.py, every intermediate value.
func TestECIESVector(t *testing.T) {
	v, _ := loadSamples(t)
	pub, err := ParsePublicKey(unhex(t, v.K))
	if err != nil {
		t.Fatal(err)
	}
	r := secp256k1.PrivKeyFromBytes(unhex(t, v.R))
	if got := r.PubKey().SerializeUncompressed(); hex.EncodeToString(got) != v.RPub {
		t.Errorf("R = %x", got)
	}
	x := secp256k1.GenerateSharedSecret(r, pub)
	if hex.EncodeToString(x) != "0db8e3ad8c0cd73fa2b34671b7b247729b101141579d199e0dc0bd024eaefd89" {
		t.Errorf("P.x = %x", x)
	}
	keyE, keyM := deriveKeys(x)
	if hex.EncodeToString(keyE[:]) != v.KeyE || hex.EncodeToString(keyM[:]) != v.KeyM {
		t.Errorf("key_e %x key_m %x", keyE, keyM)
	}
	var iv [16]byte
	copy(iv[:], unhex(t, v.IV))
	out, err := EncryptWith(unhex(t, v.Plaintext), pub, iv, r)
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(out) != v.Full {
		t.Fatalf("ciphertext\n got %x\nwant %s", out, v.Full)
	}
	if got := hex.EncodeToString(out[16:86]); got != v.RBin {
		t.Errorf("Renc = %s", got)
	}
	if got := hex.EncodeToString(out[86 : len(out)-32]); got != v.Ciphertext {
		t.Errorf("C = %s", got)
	}
	if got := hex.EncodeToString(out[len(out)-32:]); got != v.MAC {
		t.Errorf("MAC = %s", got)
	}
	// The envelope parses back to the same ephemeral key.
	e, err := ParseEnvelope(out)
	if err != nil {
		t.Fatal(err)
	}
	if !e.Ephemeral().IsEqual(r.PubKey()) {
		t.Error("ephemeral key differs")
	}
}

func newKey(t testing.TB, rng *rand.ChaCha8) *secp256k1.PrivateKey {
	t.Helper()
	k, err := secp256k1.GeneratePrivateKeyFromRand(rng)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestEncryptDecryptRoundTrip(t *testing.T) {
	rng := rand.NewChaCha8([32]byte{1})
	priv := newKey(t, rng)
	other := newKey(t, rng)
	for _, n := range []int{0, 1, 15, 16, 17, 100, 4096} {
		pt := bytes.Repeat([]byte{byte(n)}, n)
		ct, err := Encrypt(pt, priv.PubKey(), rng)
		if err != nil {
			t.Fatal(err)
		}
		if want := Overhead + (n/16+1)*16; len(ct) != want {
			t.Errorf("len %d: ciphertext %d bytes, want %d", n, len(ct), want)
		}
		got, err := Decrypt(ct, priv)
		if err != nil || !bytes.Equal(got, pt) {
			t.Errorf("len %d: Decrypt = %x, %v", n, got, err)
		}
		if _, err := Decrypt(ct, other); !errors.Is(err, ErrAuth) {
			t.Errorf("len %d: wrong key: %v", n, err)
		}
		if n > 100 {
			continue
		}
		// Any altered byte fails authentication or parsing, never decrypts.
		for i := range ct {
			bad := append([]byte(nil), ct...)
			bad[i] ^= 0x40
			if _, err := Decrypt(bad, priv); err == nil {
				t.Fatalf("len %d: byte %d altered, still decrypted", n, i)
			}
		}
	}
}

// reseal rewrites an envelope's ephemeral key encoding and recomputes the MAC
// with the key the ECDH gives, as an old PyBitmessage would have sent it.
func reseal(t *testing.T, ct []byte, priv *secp256k1.PrivateKey, xLen, yLen int) []byte {
	t.Helper()
	e, err := ParseEnvelope(ct)
	if err != nil {
		t.Fatal(err)
	}
	xy := PublicKeyXY(e.Ephemeral())
	out := append([]byte(nil), ct[:18]...)
	out = binary.BigEndian.AppendUint16(out, uint16(xLen))
	out = append(out, xy[32-xLen:32]...)
	out = binary.BigEndian.AppendUint16(out, uint16(yLen))
	out = append(out, xy[64-yLen:]...)
	out = append(out, e.ciphertext...)
	_, keyM := deriveKeys(secp256k1.GenerateSharedSecret(priv, e.Ephemeral()))
	return append(out, hmacSHA256(keyM[:], out)...)
}

// docs/protocol.md §8.2: coordinates written without left padding (PyB before 2024)
// must be accepted, lengths 0 and over 32 rejected.
func TestShortEphemeralCoordinates(t *testing.T) {
	rng := rand.NewChaCha8([32]byte{2})
	priv := newKey(t, rng)
	pt := []byte("short coordinates")
	// An ephemeral key whose X and Y both start with a zero byte (found by
	// search), so the envelope can carry 31-byte coordinates.
	eph := secp256k1.PrivKeyFromBytes(mustHex("d5397387543645b3df6613bf3e498448a4b4fa71ad4e9cadf3c82d82bef96681"))
	xy := PublicKeyXY(eph.PubKey())
	if xy[0] != 0 || xy[32] != 0 {
		t.Fatalf("ephemeral key %x lacks leading zero bytes", xy)
	}
	ct, err := EncryptWith(pt, priv.PubKey(), [16]byte{9}, eph)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range [][2]int{{31, 32}, {32, 31}, {31, 31}} {
		short := reseal(t, ct, priv, l[0], l[1])
		got, err := Decrypt(short, priv)
		if err != nil || !bytes.Equal(got, pt) {
			t.Errorf("lengths %v: %q, %v", l, got, err)
		}
	}
	// Length 0 and 33 are refused before any key is tried.
	zero := append(append(append([]byte(nil), ct[:18]...), 0, 0, 0, 32), ct[54:]...)
	if _, err := ParseEnvelope(zero); !errors.Is(err, ErrMalformed) {
		t.Errorf("zero-length X: %v", err)
	}
	long := append(append([]byte(nil), ct[:18]...), 0, 33, 0)
	long = append(long, ct[20:]...)
	if _, err := ParseEnvelope(long); !errors.Is(err, ErrMalformed) {
		t.Errorf("33-byte X: %v", err)
	}
}

func TestParseEnvelopeErrors(t *testing.T) {
	rng := rand.NewChaCha8([32]byte{3})
	priv := newKey(t, rng)
	ct, _ := Encrypt([]byte("x"), priv.PubKey(), rng)
	// Every truncation fails cleanly.
	for i := 0; i < len(ct); i++ {
		if _, err := Decrypt(ct[:i], priv); err == nil {
			t.Fatalf("truncated to %d bytes, still decrypted", i)
		}
	}
	// A point not on the curve.
	bad := append([]byte(nil), ct...)
	bad[30] ^= 1
	if _, err := ParseEnvelope(bad); !errors.Is(err, ErrMalformed) {
		t.Errorf("off-curve point: %v", err)
	}
	// Curve id is ignored, like PyB: changing it changes only the MAC input.
	other := append([]byte(nil), ct...)
	other[17] = 0xcb
	if _, err := ParseEnvelope(other); err != nil {
		t.Errorf("curve id checked: %v", err)
	}
	if _, err := Decrypt(ct, nil); !errors.Is(err, ErrPrivateKey) {
		t.Errorf("nil key: %v", err)
	}
}

func TestTryDecrypt(t *testing.T) {
	rng := rand.NewChaCha8([32]byte{4})
	keys := make([]*secp256k1.PrivateKey, 5)
	for i := range keys {
		keys[i] = newKey(t, rng)
	}
	ct, _ := Encrypt([]byte("for key 3"), keys[3].PubKey(), rng)
	e, err := ParseEnvelope(ct)
	if err != nil {
		t.Fatal(err)
	}
	pt, idx, err := e.TryDecrypt(append([]*secp256k1.PrivateKey{nil}, keys...))
	if err != nil || idx != 4 || string(pt) != "for key 3" {
		t.Fatalf("TryDecrypt = %q, %d, %v", pt, idx, err)
	}
	if !e.Matches(keys[3]) || e.Matches(keys[2]) {
		t.Error("Matches wrong")
	}
	if _, idx, err := e.TryDecrypt(keys[:3]); !errors.Is(err, ErrAuth) || idx != -1 {
		t.Errorf("no key: %d, %v", idx, err)
	}
}

// A MAC-valid envelope with bad padding is refused (only a faulty sender
// produces it).
func TestBadPadding(t *testing.T) {
	rng := rand.NewChaCha8([32]byte{5})
	priv := newKey(t, rng)
	eph := newKey(t, rng)
	var iv [16]byte
	ct, _ := EncryptWith(bytes.Repeat([]byte{'a'}, 16), priv.PubKey(), iv, eph)
	// Replace the last (padding-only) block with a zero block and reseal.
	e, _ := ParseEnvelope(ct)
	body := append([]byte(nil), ct[:len(ct)-32-16]...)
	body = append(body, make([]byte, 16)...)
	_, keyM := deriveKeys(secp256k1.GenerateSharedSecret(priv, e.Ephemeral()))
	bad := append(body, hmacSHA256(keyM[:], body)...)
	if _, err := Decrypt(bad, priv); !errors.Is(err, ErrPadding) {
		t.Errorf("bad padding: %v", err)
	}
}

// docs/protocol.md §9.1 / PyB samples.py: a SHA-256 and a SHA-1 signature (the latter
// with a high S), each valid under its own digest only.
func TestVerifySamples(t *testing.T) {
	_, s := loadSamples(t)
	pub, msg := unhex(t, s.Pub), unhex(t, s.Msg)
	sig256, sig1 := unhex(t, s.SHA256), unhex(t, s.SHA1)
	if !Verify(pub, msg, sig256) || !Verify(pub[1:], msg, sig256) {
		t.Error("SHA-256 signature rejected")
	}
	if !Verify(pub, msg, sig1) {
		t.Error("SHA-1 signature rejected")
	}
	key, _ := ParsePublicKey(pub)
	h1, h256 := sha1.Sum(msg), sha256.Sum256(msg)
	p256, _ := ecdsa.ParseDERSignature(sig256)
	p1, _ := ecdsa.ParseDERSignature(sig1)
	if p256.Verify(h1[:], key) || !p256.Verify(h256[:], key) {
		t.Error("SHA-256 signature must verify only with SHA-256")
	}
	if !p1.Verify(h1[:], key) || p1.Verify(h256[:], key) {
		t.Error("SHA-1 signature must verify only with SHA-1")
	}
	// The SHA-1 sample has a high S: accepted as OpenSSL accepts it.
	if sv := p1.S(); !sv.IsOverHalfOrder() {
		t.Error("expected the SHA-1 sample to have a high S")
	}
	bad := append([]byte(nil), msg...)
	bad[0] ^= 1
	if Verify(pub, bad, sig256) || Verify(pub, bad, sig1) {
		t.Error("altered data verified")
	}
}

// High and low S of the same signature both verify.
func TestVerifyHighS(t *testing.T) {
	rng := rand.NewChaCha8([32]byte{6})
	priv := newKey(t, rng)
	data := []byte("high S")
	sig := Sign(priv, data)
	p, err := ecdsa.ParseDERSignature(sig)
	if err != nil {
		t.Fatal(err)
	}
	s := p.S()
	if s.IsOverHalfOrder() {
		t.Fatal("decred should sign with low S")
	}
	r := p.R()
	high := ecdsa.NewSignature(&r, new(secp256k1.ModNScalar).NegateVal(&s)).Serialize()
	pub := PublicKeyXY(priv.PubKey())
	if !Verify(pub[:], data, sig) || !Verify(pub[:], data, high) {
		t.Error("low or high S rejected")
	}
	if Verify(pub[:], []byte("other"), high) {
		t.Error("wrong data verified")
	}
	if Verify(pub[:10], data, sig) || Verify(pub[:], data, sig[:len(sig)-1]) || Verify(pub[:], data, nil) {
		t.Error("malformed input verified")
	}
}

func TestParsePublicKey(t *testing.T) {
	v, _ := loadSamples(t)
	k := unhex(t, v.K)
	if _, err := ParsePublicKey(k); err != nil {
		t.Error(err)
	}
	if _, err := ParsePublicKey(k[1:]); err != nil {
		t.Error(err)
	}
	for _, bad := range [][]byte{k[:64], append([]byte{6}, k[1:]...), make([]byte, 64), k[2:]} {
		if _, err := ParsePublicKey(bad); !errors.Is(err, ErrPublicKey) {
			t.Errorf("ParsePublicKey(%x) = %v", bad, err)
		}
	}
}

func FuzzDecrypt(f *testing.F) {
	// The chan "bitmessage" encryption key decrypts the msg vector's payload.
	b, err := os.ReadFile(vectorsPath)
	if err != nil {
		f.Fatal(err)
	}
	var v struct {
		Msg struct {
			Object string `json:"object"`
		} `json:"msg"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		f.Fatal(err)
	}
	obj, _ := hex.DecodeString(v.Msg.Object)
	f.Add(obj[22:])
	priv := secp256k1.PrivKeyFromBytes(mustHex("114ec0e2dca24a826a0eed064b0405b0ac148abc3b1d52729697f4d7b873fdc6"))
	f.Fuzz(func(t *testing.T, data []byte) {
		pt, err := Decrypt(data, priv)
		if err != nil {
			return
		}
		if len(pt) > len(data)-Overhead {
			t.Fatalf("plaintext of %d bytes from %d", len(pt), len(data))
		}
	})
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// BenchmarkTrialDecrypt is the cost per identity of trying an incoming
// object against n private keys, none of which matches, for a 1 KB and a
// 200 KB message: "naive" is a Matches loop (ECDH and an HMAC over the whole
// message per key), "fast" is TryDecrypt. Each reports wall time (ns/key)
// and, where the platform tells, process CPU time (cpu-ns/key, the better
// measure on a busy machine); the fast variant also reports its speedup over
// the naive one of the same run by both measures (x-naive, x-naive-cpu).
//
//	go test -run XXX -bench TrialDecrypt -benchtime=3x ./bmcore/bmcrypto/
func BenchmarkTrialDecrypt(b *testing.B) {
	rng := rand.NewChaCha8([32]byte{7})
	to := newKey(b, rng)
	keys := make([]*secp256k1.PrivateKey, 20000)
	for i := range keys {
		keys[i] = newKey(b, rng)
	}
	// measure runs f b.N times and returns wall and CPU ns per key.
	measure := func(b *testing.B, n int, f func()) (wall, cpu float64) {
		c0 := processCPU()
		for b.Loop() {
			f()
		}
		per := float64(b.N) * float64(n)
		wall = float64(b.Elapsed().Nanoseconds()) / per
		b.ReportMetric(wall, "ns/key")
		if c := processCPU() - c0; c > 0 {
			cpu = float64(c.Nanoseconds()) / per
			b.ReportMetric(cpu, "cpu-ns/key")
		}
		return wall, cpu
	}
	for _, size := range []int{1 << 10, 200 << 10} {
		ct, _ := Encrypt(make([]byte, size-1), to.PubKey(), rng)
		e, err := ParseEnvelope(ct)
		if err != nil {
			b.Fatal(err)
		}
		for _, n := range []int{1, 32, 1000, 10000, 20000} {
			var naive, naiveCPU float64
			b.Run(fmt.Sprintf("msg=%dKB/keys=%d/naive", size>>10, n), func(b *testing.B) {
				naive, naiveCPU = measure(b, n, func() {
					for _, k := range keys[:n] {
						if e.Matches(k) {
							b.Fatal("unexpected match")
						}
					}
				})
			})
			b.Run(fmt.Sprintf("msg=%dKB/keys=%d/fast", size>>10, n), func(b *testing.B) {
				fast, fastCPU := measure(b, n, func() {
					if _, _, err := e.TryDecrypt(keys[:n]); !errors.Is(err, ErrAuth) {
						b.Fatal("unexpected match")
					}
				})
				if naive > 0 {
					b.ReportMetric(naive/fast, "x-naive")
				}
				if naiveCPU > 0 && fastCPU > 0 {
					b.ReportMetric(naiveCPU/fastCPU, "x-naive-cpu")
				}
			})
		}
	}
}

// BenchmarkDecryptFull is parse + ECDH + HMAC + AES with a one-shot Decrypt,
// the cost BenchmarkTrialDecrypt avoids per non-matching key.
func BenchmarkDecryptFull(b *testing.B) {
	rng := rand.NewChaCha8([32]byte{8})
	to := newKey(b, rng)
	ct, _ := Encrypt(make([]byte, 400), to.PubKey(), rng)
	for b.Loop() {
		if _, err := Decrypt(ct, to); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerify is one signature check with the SHA-256 digest, the worst
// case for Verify (SHA-1 is tried first and fails).
func BenchmarkVerify(b *testing.B) {
	rng := rand.NewChaCha8([32]byte{9})
	priv := newKey(b, rng)
	data := make([]byte, 500)
	sig := Sign(priv, data)
	pub := PublicKeyXY(priv.PubKey())
	for b.Loop() {
		if !Verify(pub[:], data, sig) {
			b.Fatal("verify failed")
		}
	}
}

func BenchmarkSign(b *testing.B) {
	rng := rand.NewChaCha8([32]byte{10})
	priv := newKey(b, rng)
	data := make([]byte, 500)
	for b.Loop() {
		Sign(priv, data)
	}
}

func hmacSHA256(key, data []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(data)
	return m.Sum(nil)
}
