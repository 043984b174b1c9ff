package bmcrypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
)

// CurveID is OpenSSL's NID for secp256k1 (714), written before the ephemeral
// key. PyBitmessage does not check it on decryption and neither do we.
const CurveID = 0x02CA

// Overhead is what Encrypt adds besides padding: IV, ephemeral key, MAC.
const Overhead = 16 + 70 + 32

const (
	ivLen  = 16
	macLen = 32
	// minEnvelope is the shortest parseable input: IV, curve, two 1-byte
	// coordinates with their lengths, one cipher block and the MAC.
	minEnvelope = ivLen + 2 + 2 + 1 + 2 + 1 + aes.BlockSize + macLen
)

// Errors of decryption and key parsing.
var (
	// ErrMalformed means the input is not an ECIES envelope at all.
	ErrMalformed = errors.New("bmcrypto: malformed ciphertext")
	// ErrAuth means the MAC did not match: the data was not encrypted to this
	// key (the usual "not for us") or it was altered.
	ErrAuth = errors.New("bmcrypto: message authentication failed")
	// ErrPadding means the MAC matched but the plaintext padding is invalid,
	// which only a faulty sender produces.
	ErrPadding = errors.New("bmcrypto: invalid padding")
	// ErrPublicKey means a public key is not a point on secp256k1.
	ErrPublicKey = errors.New("bmcrypto: invalid public key")
	// ErrPrivateKey means a private key is zero or missing.
	ErrPrivateKey = errors.New("bmcrypto: invalid private key")
)

// ParsePublicKey parses a public key given as 64-byte X‖Y (the wire form) or
// 65-byte 04‖X‖Y, and checks that it lies on the curve.
func ParsePublicKey(xy []byte) (*secp256k1.PublicKey, error) {
	var buf [65]byte
	switch len(xy) {
	case 64:
		buf[0] = 4
		copy(buf[1:], xy)
	case 65:
		if xy[0] != 4 {
			return nil, fmt.Errorf("%w: format byte %#x, want 0x04", ErrPublicKey, xy[0])
		}
		copy(buf[:], xy)
	default:
		return nil, fmt.Errorf("%w: %d bytes, want 64 or 65", ErrPublicKey, len(xy))
	}
	pub, err := secp256k1.ParsePubKey(buf[:])
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPublicKey, err)
	}
	return pub, nil
}

// PublicKeyXY returns the 64-byte X‖Y wire form of a public key.
func PublicKeyXY(pub *secp256k1.PublicKey) [64]byte {
	var xy [64]byte
	copy(xy[:], pub.SerializeUncompressed()[1:])
	return xy
}

// Encrypt encrypts plaintext to pub with a fresh IV and ephemeral key read
// from rand (crypto/rand if nil), docs/protocol.md §8.1.
func Encrypt(plaintext []byte, pub *secp256k1.PublicKey, rnd io.Reader) ([]byte, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	var iv [ivLen]byte
	if _, err := io.ReadFull(rnd, iv[:]); err != nil {
		return nil, fmt.Errorf("encrypt: read IV: %w", err)
	}
	eph, err := secp256k1.GeneratePrivateKeyFromRand(rnd)
	if err != nil {
		return nil, fmt.Errorf("encrypt: ephemeral key: %w", err)
	}
	defer eph.Zero()
	return EncryptWith(plaintext, pub, iv, eph)
}

// EncryptWith is Encrypt with a given IV and ephemeral key, for test vectors.
// Output: IV ‖ 02CA ‖ 0020 ‖ R.X ‖ 0020 ‖ R.Y ‖ AES-256-CBC ‖ HMAC-SHA256.
func EncryptWith(plaintext []byte, pub *secp256k1.PublicKey, iv [16]byte, ephemeral *secp256k1.PrivateKey) ([]byte, error) {
	if pub == nil {
		return nil, fmt.Errorf("encrypt: %w: nil", ErrPublicKey)
	}
	if ephemeral == nil || ephemeral.Key.IsZero() {
		return nil, fmt.Errorf("encrypt: %w", ErrPrivateKey)
	}
	keyE, keyM := deriveKeys(secp256k1.GenerateSharedSecret(ephemeral, pub))
	pad := aes.BlockSize - len(plaintext)%aes.BlockSize
	out := make([]byte, 0, Overhead+len(plaintext)+pad)
	out = append(out, iv[:]...)
	rxy := PublicKeyXY(ephemeral.PubKey())
	out = binary.BigEndian.AppendUint16(out, CurveID)
	out = binary.BigEndian.AppendUint16(out, 32)
	out = append(out, rxy[:32]...)
	out = binary.BigEndian.AppendUint16(out, 32)
	out = append(out, rxy[32:]...)
	start := len(out)
	out = append(out, plaintext...)
	for i := 0; i < pad; i++ {
		out = append(out, byte(pad))
	}
	block, err := aes.NewCipher(keyE[:])
	if err != nil {
		return nil, fmt.Errorf("encrypt: %w", err)
	}
	cipher.NewCBCEncrypter(block, iv[:]).CryptBlocks(out[start:], out[start:])
	mac := hmac.New(sha256.New, keyM[:])
	mac.Write(out)
	return mac.Sum(out), nil
}

// deriveKeys hashes the ECDH X coordinate into the AES and HMAC keys.
func deriveKeys(x []byte) (keyE, keyM [32]byte) {
	h := sha512.Sum512(x)
	copy(keyE[:], h[:32])
	copy(keyM[:], h[32:])
	return keyE, keyM
}

// Envelope is a parsed ECIES ciphertext. Parsing checks the layout and the
// ephemeral point once; Matches then costs one ECDH and one HMAC per key.
type Envelope struct {
	iv         [ivLen]byte
	ephemeral  *secp256k1.PublicKey
	authed     []byte // everything before the MAC, as received
	ciphertext []byte
	mac        []byte
}

// ParseEnvelope parses an ECIES ciphertext (docs/protocol.md §8.2). Ephemeral
// coordinates of 1 to 32 bytes are accepted and left-padded, as older
// PyBitmessage wrote them unpadded; 0 or more than 32 bytes are rejected.
// The returned Envelope aliases data.
func ParseEnvelope(data []byte) (*Envelope, error) {
	if len(data) < minEnvelope {
		return nil, fmt.Errorf("%w: %d bytes", ErrMalformed, len(data))
	}
	e := &Envelope{
		authed: data[:len(data)-macLen],
		mac:    data[len(data)-macLen:],
	}
	copy(e.iv[:], data)
	off := ivLen + 2 // the curve id is not checked, as in PyBitmessage
	var point [65]byte
	point[0] = 4
	for i := 0; i < 2; i++ {
		if len(e.authed)-off < 2 {
			return nil, fmt.Errorf("%w: truncated ephemeral key", ErrMalformed)
		}
		n := int(binary.BigEndian.Uint16(data[off:]))
		off += 2
		if n == 0 || n > 32 {
			return nil, fmt.Errorf("%w: ephemeral coordinate of %d bytes", ErrMalformed, n)
		}
		if len(e.authed)-off < n {
			return nil, fmt.Errorf("%w: truncated ephemeral key", ErrMalformed)
		}
		copy(point[1+32*i+32-n:1+32*(i+1)], data[off:off+n])
		off += n
	}
	e.ciphertext = e.authed[off:]
	if len(e.ciphertext) == 0 || len(e.ciphertext)%aes.BlockSize != 0 {
		return nil, fmt.Errorf("%w: ciphertext of %d bytes", ErrMalformed, len(e.ciphertext))
	}
	pub, err := secp256k1.ParsePubKey(point[:])
	if err != nil {
		return nil, fmt.Errorf("%w: ephemeral key: %w", ErrMalformed, err)
	}
	e.ephemeral = pub
	return e, nil
}

// Ephemeral returns the sender's ephemeral public key.
func (e *Envelope) Ephemeral() *secp256k1.PublicKey { return e.ephemeral }

// keys runs ECDH with priv and checks the MAC; it returns the AES key when the
// MAC matches.
func (e *Envelope) keys(priv *secp256k1.PrivateKey) ([32]byte, bool) {
	if priv == nil || priv.Key.IsZero() {
		return [32]byte{}, false
	}
	return e.check(secp256k1.GenerateSharedSecret(priv, e.ephemeral))
}

// check derives the keys from the ECDH X coordinate and checks the MAC in
// constant time.
func (e *Envelope) check(x []byte) ([32]byte, bool) {
	keyE, keyM := deriveKeys(x)
	mac := hmac.New(sha256.New, keyM[:])
	mac.Write(e.authed)
	var sum [sha256.Size]byte
	return keyE, hmac.Equal(mac.Sum(sum[:0]), e.mac)
}

// Matches reports whether the envelope was encrypted to priv (its MAC checks
// out), without decrypting.
func (e *Envelope) Matches(priv *secp256k1.PrivateKey) bool {
	_, ok := e.keys(priv)
	return ok
}

// Decrypt checks the MAC for priv and, only if it matches, decrypts.
func (e *Envelope) Decrypt(priv *secp256k1.PrivateKey) ([]byte, error) {
	if priv == nil || priv.Key.IsZero() {
		return nil, fmt.Errorf("decrypt: %w", ErrPrivateKey)
	}
	keyE, ok := e.keys(priv)
	if !ok {
		return nil, ErrAuth
	}
	return e.open(keyE)
}

func (e *Envelope) open(keyE [32]byte) ([]byte, error) {
	block, err := aes.NewCipher(keyE[:])
	if err != nil {
		return nil, fmt.Errorf("decrypt: %w", err)
	}
	out := make([]byte, len(e.ciphertext))
	cipher.NewCBCDecrypter(block, e.iv[:]).CryptBlocks(out, e.ciphertext)
	// The MAC already authenticated the data, so the padding check need not
	// be constant-time.
	if !validPadding(out) {
		return nil, ErrPadding
	}
	return out[:len(out)-int(out[len(out)-1])], nil
}

// TryDecrypt tries every key, always all of them so that the time taken does
// not tell which one matched (as PyBitmessage does, docs/protocol.md §16), and
// decrypts with the first that matches. It returns the plaintext and that
// key's index, or ErrAuth and -1 when none matches; nil and zero keys never
// match.
//
// A key matches when the last cipher block, decrypted with its AES key, ends
// in valid PKCS#7 padding and the MAC checks out: the padding, one AES block,
// filters out all but about 1/256 of the wrong keys before the HMAC over the
// whole message, so that the cost per key does not grow with the message.
// The result is what Decrypt gives for the first key whose Decrypt succeeds,
// with one difference: an envelope whose MAC is valid but whose padding is
// not (only a faulty sender makes one) yields ErrAuth and -1 here where
// Decrypt says ErrPadding. Both mean the message is not delivered.
//
// With more than a dozen keys it computes the ECDH of all of them at once
// (ecdh.go): a table of multiples of the ephemeral point, sized for the
// number of keys, and batches of keys added up in lockstep in affine
// coordinates with one field inversion per window. At 10 000 keys that makes
// a key about ten times cheaper than Matches for a 1 KB message and twenty
// times for 200 KB (BenchmarkTrialDecrypt). Concurrent calls are fine; each
// takes its table and scratch memory (up to about 8 MiB) from a sync.Pool.
func (e *Envelope) TryDecrypt(keys []*secp256k1.PrivateKey) ([]byte, int, error) {
	valid := 0
	for _, k := range keys {
		if k != nil && !k.Key.IsZero() {
			valid++
		}
	}
	s := trialPool.Get().(*trialScratch)
	defer trialPool.Put(s)
	var t *pointTable
	if w := chooseWindow(valid); w > 0 && s.table.build(e.ephemeral, w, s) {
		t = &s.table
	}
	var r secp256k1.JacobianPoint
	e.ephemeral.AsJacobian(&r)
	found := -1
	var keyE [32]byte
	batch := func() {
		n := len(s.scalar)
		if cap(s.out) < n {
			s.out = make([]affinePoint, n, max(n, mulBatch))
		}
		out := s.out[:n]
		if t != nil {
			t.mulKeys(s.scalar, out, s)
		} else {
			if cap(s.jac) < n {
				s.jac = make([]secp256k1.JacobianPoint, n, max(n, mulBatch))
			}
			jac := s.jac[:n]
			for j, k := range s.scalar {
				secp256k1.ScalarMultNonConst(k, &r, &jac[j])
			}
			// k·R is never the point at infinity for k in [1, N-1], which
			// toAffineBatch relies on.
			toAffineBatch(jac)
			for j := range jac {
				out[j].x.Set(&jac[j].X)
			}
			clear(jac)
		}
		for j := range out {
			if ke, ok := e.trial(out[j].x.Bytes()); ok && found < 0 {
				found, keyE = s.keyIdx[j], ke
			}
		}
		clear(out) // no ECDH results stay in the pool
		s.scalar, s.keyIdx = s.scalar[:0], s.keyIdx[:0]
	}
	s.scalar, s.keyIdx = s.scalar[:0], s.keyIdx[:0]
	for i, k := range keys {
		if k == nil || k.Key.IsZero() {
			continue
		}
		s.scalar = append(s.scalar, &k.Key)
		s.keyIdx = append(s.keyIdx, i)
		if len(s.scalar) == mulBatch {
			batch()
		}
	}
	if len(s.scalar) > 0 {
		batch()
	}
	clear(s.scalar[:cap(s.scalar)]) // the pool keeps no pointers to keys
	if found < 0 {
		return nil, -1, ErrAuth
	}
	pt, err := e.open(keyE)
	if err != nil {
		return nil, found, err
	}
	return pt, found, nil
}

var trialPool = sync.Pool{New: func() any { return new(trialScratch) }}

// trial derives the keys from the ECDH X coordinate and reports whether they
// open the envelope: the last block's padding first, then the MAC in
// constant time. The padding only saves the HMAC for wrong keys; which of the
// two failed is never reported, though the time differs by one HMAC over the
// message (and about 1 wrong key in 256 passes the padding anyway).
func (e *Envelope) trial(x *[32]byte) ([32]byte, bool) {
	keyE, keyM := deriveKeys(x[:])
	block, err := aes.NewCipher(keyE[:])
	if err != nil {
		return keyE, false
	}
	c := e.ciphertext
	prev := e.iv[:]
	if len(c) > aes.BlockSize {
		prev = c[len(c)-2*aes.BlockSize : len(c)-aes.BlockSize]
	}
	var last [aes.BlockSize]byte
	block.Decrypt(last[:], c[len(c)-aes.BlockSize:])
	for i := range last {
		last[i] ^= prev[i]
	}
	if !validPadding(last[:]) {
		return keyE, false
	}
	mac := hmac.New(sha256.New, keyM[:])
	mac.Write(e.authed)
	var sum [sha256.Size]byte
	return keyE, hmac.Equal(mac.Sum(sum[:0]), e.mac)
}

// validPadding checks PKCS#7 padding as OpenSSL does.
func validPadding(out []byte) bool {
	pad := int(out[len(out)-1])
	if pad == 0 || pad > aes.BlockSize || pad > len(out) {
		return false
	}
	for _, b := range out[len(out)-pad:] {
		if int(b) != pad {
			return false
		}
	}
	return true
}

// Decrypt decrypts an ECIES ciphertext with priv (docs/protocol.md §8.2).
func Decrypt(data []byte, priv *secp256k1.PrivateKey) ([]byte, error) {
	e, err := ParseEnvelope(data)
	if err != nil {
		return nil, err
	}
	return e.Decrypt(priv)
}
