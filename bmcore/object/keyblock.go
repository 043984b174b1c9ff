package object

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/bmgate/bmgate/bmcore/address"
	"github.com/bmgate/bmgate/bmcore/bmcrypto"
	"github.com/bmgate/bmgate/bmcore/identity"
	"github.com/bmgate/bmgate/bmcore/wire"
	"github.com/decred/dcrd/dcrec/secp256k1/v4"
)

// PubkeyData is an address's public key block (docs/protocol.md §10): what a pubkey
// object publishes and what msgs and broadcasts carry for their sender.
type PubkeyData struct {
	// Version and Stream are the address's.
	Version, Stream uint64
	Bitfield        uint32
	// SigningKey and EncryptionKey are 64-byte X‖Y.
	SigningKey, EncryptionKey [64]byte
	// NonceTrialsPerByte and ExtraBytes are the proof of work the owner
	// demands, as published (not raised to the network minimum); both are
	// 0 for version 2, which carries none.
	NonceTrialsPerByte, ExtraBytes uint64
}

// Ripe returns the RIPE hash of the two keys.
func (p PubkeyData) Ripe() [20]byte { return address.RipeFromKeys(p.SigningKey[:], p.EncryptionKey[:]) }

// Address returns the address the keys belong to.
func (p PubkeyData) Address() address.Address {
	return address.Address{Version: p.Version, Stream: p.Stream, Ripe: p.Ripe()}
}

// DoesAck reports whether the owner sends acks (bitfield bit 31), so a msg
// to it should embed one.
func (p PubkeyData) DoesAck() bool { return p.Bitfield&identity.BitfieldDoesAck != 0 }

// PubkeyOf returns the public key block of one of our identities.
func PubkeyOf(id *identity.Identity) PubkeyData {
	p := PubkeyData{
		Version:            id.Address.Version,
		Stream:             id.Address.Stream,
		Bitfield:           id.Bitfield,
		NonceTrialsPerByte: id.NonceTrialsPerByte,
		ExtraBytes:         id.ExtraBytes,
	}
	copy(p.SigningKey[:], id.PublicSigning())
	copy(p.EncryptionKey[:], id.PublicEncryption())
	if p.Version < 3 {
		p.NonceTrialsPerByte, p.ExtraBytes = 0, 0
	}
	return p
}

// AppendBinary appends PyBitmessage's stored pubkey form (its pubkeys table):
// varint(version) ‖ varint(stream) ‖ key block.
func (p PubkeyData) AppendBinary(b []byte) ([]byte, error) {
	b = wire.AppendVarInt(b, p.Version)
	b = wire.AppendVarInt(b, p.Stream)
	return p.appendKeyBlock(b), nil
}

// DecodePubkeyData reads the form AppendBinary writes.
func DecodePubkeyData(b []byte) (PubkeyData, error) {
	r := &reader{b: b}
	var p PubkeyData
	var err error
	if p.Version, err = r.varint("version"); err != nil {
		return PubkeyData{}, err
	}
	if p.Version < 2 || p.Version > 4 {
		return PubkeyData{}, fmt.Errorf("%w: address version %d", ErrVersion, p.Version)
	}
	if p.Stream, err = r.varint("stream"); err != nil {
		return PubkeyData{}, err
	}
	if err := p.readKeyBlock(r); err != nil {
		return PubkeyData{}, err
	}
	if len(r.rest()) != 0 {
		return PubkeyData{}, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(r.rest()))
	}
	return p, nil
}

// appendKeyBlock appends bitfield ‖ signKey ‖ encKey, then NTPB ‖ EXTRA for
// address version 3 and above (docs/protocol.md §10).
func (p *PubkeyData) appendKeyBlock(b []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, p.Bitfield)
	b = append(b, p.SigningKey[:]...)
	b = append(b, p.EncryptionKey[:]...)
	if p.Version >= 3 {
		b = wire.AppendVarInt(b, p.NonceTrialsPerByte)
		b = wire.AppendVarInt(b, p.ExtraBytes)
	}
	return b
}

// readKeyBlock reads what appendKeyBlock writes, for p.Version.
func (p *PubkeyData) readKeyBlock(r *reader) error {
	var err error
	if p.Bitfield, err = r.uint32("bitfield"); err != nil {
		return err
	}
	k, err := r.bytes(64, "signing key")
	if err != nil {
		return err
	}
	copy(p.SigningKey[:], k)
	if k, err = r.bytes(64, "encryption key"); err != nil {
		return err
	}
	copy(p.EncryptionKey[:], k)
	if p.Version >= 3 {
		if p.NonceTrialsPerByte, err = r.varint("nonce trials per byte"); err != nil {
			return err
		}
		if p.ExtraBytes, err = r.varint("extra bytes"); err != nil {
			return err
		}
	}
	return nil
}

// checkKeys checks that both keys are points on the curve. PyBitmessage
// finds a bad encryption key only when it tries to send ("badkey"); refusing
// it on receipt gives the same outcome sooner.
func (p *PubkeyData) checkKeys() error {
	if _, err := bmcrypto.ParsePublicKey(p.SigningKey[:]); err != nil {
		return fmt.Errorf("%w: signing key: %w", ErrBadKey, err)
	}
	if _, err := bmcrypto.ParsePublicKey(p.EncryptionKey[:]); err != nil {
		return fmt.Errorf("%w: encryption key: %w", ErrBadKey, err)
	}
	return nil
}

// sealer signs and encrypts for the builders. Tests fix the IV, ephemeral
// key and signature to reproduce the vectors byte for byte.
type sealer struct {
	rand      io.Reader
	iv        *[16]byte
	ephemeral *secp256k1.PrivateKey
	signature []byte
}

func newSealer(rnd io.Reader) sealer {
	if rnd == nil {
		rnd = rand.Reader
	}
	return sealer{rand: rnd}
}

func (s sealer) sign(priv *secp256k1.PrivateKey, data []byte) []byte {
	if s.signature != nil {
		return s.signature
	}
	return bmcrypto.Sign(priv, data)
}

func (s sealer) encrypt(plaintext []byte, pub *secp256k1.PublicKey) ([]byte, error) {
	if s.iv != nil {
		return bmcrypto.EncryptWith(plaintext, pub, *s.iv, s.ephemeral)
	}
	return bmcrypto.Encrypt(plaintext, pub, s.rand)
}

// keyFromBytes turns a derived 32-byte key (tag key, broadcast key) into a
// private key.
func keyFromBytes(k [32]byte) *secp256k1.PrivateKey { return secp256k1.PrivKeyFromBytes(k[:]) }

// signedBy verifies sig over data with the 64-byte signing key.
func signedBy(signingKey *[64]byte, data, sig []byte) error {
	if !bmcrypto.Verify(signingKey[:], data, sig) {
		return ErrSignature
	}
	return nil
}

// sigHash is DSHA512(signature)[32:64], PyBitmessage's duplicate detector
// for msgs and broadcasts.
func sigHash(sig []byte) [32]byte {
	h := address.DoubleSHA512(sig)
	var s [32]byte
	copy(s[:], h[32:])
	return s
}
