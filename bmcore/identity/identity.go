package identity

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"io"

	"github.com/bmgate/bmgate/bmcore/address"
	"github.com/bmgate/bmgate/bmcore/wire"
	"github.com/decred/dcrd/dcrec/secp256k1/v4"
)

// BitfieldDoesAck is behaviour bit 31 (mask 1): the owner sends acks, so
// senders should embed one (docs/protocol.md §10).
const BitfieldDoesAck uint32 = 1

// Network minimum difficulty (docs/protocol.md §6.1). New identities demand exactly
// this; PyBitmessage raises any lower setting to it.
const (
	DefaultNonceTrialsPerByte = 1000
	DefaultExtraBytes         = 1000
)

// Errors.
var (
	ErrVersion     = errors.New("identity: unsupported address version")
	ErrPrivateKey  = errors.New("identity: invalid private key")
	ErrChanAddress = errors.New("identity: chan name does not match the address")
	ErrWIF         = errors.New("identity: invalid WIF private key")
)

// Identity is one of our addresses with its private keys.
type Identity struct {
	Address             address.Address
	Signing, Encryption *secp256k1.PrivateKey
	// NonceTrialsPerByte and ExtraBytes are the proof-of-work demand
	// published in v3/v4 pubkeys and sent in msgs and broadcasts.
	NonceTrialsPerByte, ExtraBytes uint64
	// Bitfield is the behaviour bitfield published with the keys.
	Bitfield uint32
}

// PublicSigning returns the public signing key as 64-byte X‖Y.
func (id *Identity) PublicSigning() []byte { return pubXY(id.Signing) }

// PublicEncryption returns the public encryption key as 64-byte X‖Y.
func (id *Identity) PublicEncryption() []byte { return pubXY(id.Encryption) }

func pubXY(k *secp256k1.PrivateKey) []byte {
	return k.PubKey().SerializeUncompressed()[1:]
}

func newIdentity(version, stream uint64, sign, enc *secp256k1.PrivateKey, ripe [20]byte) *Identity {
	return &Identity{
		Address:            address.Address{Version: version, Stream: stream, Ripe: ripe},
		Signing:            sign,
		Encryption:         enc,
		NonceTrialsPerByte: DefaultNonceTrialsPerByte,
		ExtraBytes:         DefaultExtraBytes,
		Bitfield:           BitfieldDoesAck,
	}
}

// NewRandom creates a random version 4 address in stream (docs/protocol.md §7.5): one
// random signing key, then random encryption keys until the ripe starts with
// a zero byte. rand defaults to crypto/rand.
func NewRandom(stream uint64, rnd io.Reader) (*Identity, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	sign, err := secp256k1.GeneratePrivateKeyFromRand(rnd)
	if err != nil {
		return nil, fmt.Errorf("generate signing key: %w", err)
	}
	pubSign := sign.PubKey().SerializeUncompressed()
	for {
		enc, err := secp256k1.GeneratePrivateKeyFromRand(rnd)
		if err != nil {
			return nil, fmt.Errorf("generate encryption key: %w", err)
		}
		ripe := address.RipeFromKeys(pubSign, enc.PubKey().SerializeUncompressed())
		if ripe[0] == 0 {
			return newIdentity(4, stream, sign, enc, ripe), nil
		}
	}
}

// deterministicKey is SHA512(passphrase ‖ varint(nonce))[0:32] (docs/protocol.md §7.6).
func deterministicKey(passphrase []byte, nonce uint64) *secp256k1.PrivateKey {
	h := sha512.New()
	h.Write(passphrase)
	h.Write(wire.AppendVarInt(nil, nonce))
	return secp256k1.PrivKeyFromBytes(h.Sum(nil)[:32])
}

// Deterministic derives count addresses of the given version (3 or 4) and
// stream from a passphrase (docs/protocol.md §7.6). Signing keys use even nonces and
// encryption keys odd ones, continuing across the addresses; a pair is kept
// when its ripe starts with one zero byte.
func Deterministic(passphrase []byte, version, stream uint64, count int) ([]*Identity, error) {
	if version != 3 && version != 4 {
		return nil, fmt.Errorf("deterministic address: %w %d (3 or 4)", ErrVersion, version)
	}
	ids := make([]*Identity, 0, max(count, 0))
	var signNonce, encNonce uint64 = 0, 1
	for len(ids) < count {
		sign := deterministicKey(passphrase, signNonce)
		enc := deterministicKey(passphrase, encNonce)
		signNonce += 2
		encNonce += 2
		ripe := address.RipeFromKeys(sign.PubKey().SerializeUncompressed(), enc.PubKey().SerializeUncompressed())
		if ripe[0] == 0 {
			ids = append(ids, newIdentity(version, stream, sign, enc, ripe))
		}
	}
	return ids, nil
}

// Chan creates the chan with this name: the deterministic v4, stream 1
// address of the name's UTF-8 bytes (docs/protocol.md §7.6). The caller marks it as
// a chan: no pubkey is published and no acks are sent or requested.
func Chan(name string) (*Identity, error) {
	ids, err := Deterministic([]byte(name), 4, 1, 1)
	if err != nil {
		return nil, err
	}
	return ids[0], nil
}

// JoinChan derives the chan name with addr's version and stream, as
// PyBitmessage's joinChan does, and fails unless the result is addr.
func JoinChan(name string, addr address.Address) (*Identity, error) {
	ids, err := Deterministic([]byte(name), addr.Version, addr.Stream, 1)
	if err != nil {
		return nil, fmt.Errorf("join chan: %w", err)
	}
	if ids[0].Address != addr {
		return nil, fmt.Errorf("join chan %q: %w %s (the name gives %s)", name, ErrChanAddress, addr, ids[0].Address)
	}
	return ids[0], nil
}

// parsePrivateKey accepts a 32-byte big-endian scalar in [1, N-1].
func parsePrivateKey(b []byte) (*secp256k1.PrivateKey, error) {
	if len(b) != 32 {
		return nil, fmt.Errorf("%w: %d bytes, want 32", ErrPrivateKey, len(b))
	}
	var k secp256k1.ModNScalar
	if overflow := k.SetByteSlice(b); overflow || k.IsZero() {
		return nil, fmt.Errorf("%w: out of range", ErrPrivateKey)
	}
	return secp256k1.NewPrivateKey(&k), nil
}

// FromKeys rebuilds an identity from its two 32-byte private keys (e.g. from
// keys.dat), computing the address of the given version (2, 3 or 4) and stream.
func FromKeys(version, stream uint64, signingPriv, encryptionPriv []byte) (*Identity, error) {
	if version < 2 || version > 4 {
		return nil, fmt.Errorf("identity from keys: %w %d", ErrVersion, version)
	}
	sign, err := parsePrivateKey(signingPriv)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	enc, err := parsePrivateKey(encryptionPriv)
	if err != nil {
		return nil, fmt.Errorf("encryption key: %w", err)
	}
	ripe := address.RipeFromKeys(sign.PubKey().SerializeUncompressed(), enc.PubKey().SerializeUncompressed())
	return newIdentity(version, stream, sign, enc, ripe), nil
}

// EncodeWIF writes a private key as keys.dat does: base58 of
// 80 ‖ key ‖ SHA256(SHA256(80 ‖ key))[0:4] (docs/protocol.md §7.1).
func EncodeWIF(priv []byte) string {
	b := append([]byte{0x80}, priv...)
	sum := doubleSHA256(b)
	return address.EncodeBase58(append(b, sum[:4]...))
}

// DecodeWIF reads a WIF private key and returns its 32 bytes.
func DecodeWIF(s string) ([]byte, error) {
	if len(s) > 60 { // 37 bytes take 51 characters
		return nil, fmt.Errorf("%w: %d characters", ErrWIF, len(s))
	}
	b, ok := address.DecodeBase58(s)
	if !ok {
		return nil, fmt.Errorf("%w: characters outside the base58 alphabet", ErrWIF)
	}
	if len(b) < 5 {
		return nil, fmt.Errorf("%w: too short", ErrWIF)
	}
	body, checksum := b[:len(b)-4], b[len(b)-4:]
	if sum := doubleSHA256(body); string(sum[:4]) != string(checksum) {
		return nil, fmt.Errorf("%w: checksum does not match", ErrWIF)
	}
	if body[0] != 0x80 {
		return nil, fmt.Errorf("%w: prefix %#x, want 0x80", ErrWIF, body[0])
	}
	if len(body) != 33 {
		return nil, fmt.Errorf("%w: key of %d bytes, want 32", ErrWIF, len(body)-1)
	}
	return append([]byte(nil), body[1:]...), nil
}

func doubleSHA256(b []byte) [32]byte {
	h := sha256.Sum256(b)
	return sha256.Sum256(h[:])
}
