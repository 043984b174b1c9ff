package object

import (
	"fmt"
	"io"

	"github.com/bmgate/bmgate/bmcore/address"
	"github.com/bmgate/bmgate/bmcore/bmcrypto"
	"github.com/bmgate/bmgate/bmcore/identity"
	"github.com/bmgate/bmgate/bmcore/wire"
)

// Pubkey lengths PyBitmessage accepts, whole object with nonce
// (bmobject.checkPubkey, processpubkey; docs/protocol.md §10.2).
const (
	minPubkeyLen   = 146
	minPubkeyV3Len = 170
	minPubkeyV4Len = 350
	maxPubkeyLen   = 440
)

// BuildPubkey returns the headless pubkey object of id, in the form its
// address version calls for (docs/protocol.md §10.2): v2 plain and unsigned, v3
// signed, v4 signed and encrypted to the address's tag key with the tag in
// clear. Chans never publish a pubkey; that is the caller's rule.
func BuildPubkey(id *identity.Identity, expires uint64, rand io.Reader) ([]byte, error) {
	return buildPubkey(id, expires, newSealer(rand))
}

func buildPubkey(id *identity.Identity, expires uint64, s sealer) ([]byte, error) {
	a := id.Address
	if a.Version < 2 || a.Version > 4 {
		return nil, fmt.Errorf("build pubkey: %w %d", ErrVersion, a.Version)
	}
	pd := PubkeyOf(id)
	b := appendHeadless(make([]byte, 0, 400), expires, wire.ObjectPubkey, a.Version, a.Stream)
	switch a.Version {
	case 2:
		return checkSize(pd.appendKeyBlock(b))
	case 3:
		b = pd.appendKeyBlock(b)
		return checkSize(wire.AppendVarStr(b, s.sign(id.Signing, b)))
	}
	tag := a.Tag()
	b = append(b, tag[:]...)
	plain := pd.appendKeyBlock(nil)
	sig := s.sign(id.Signing, append(b[:len(b):len(b)], plain...))
	plain = wire.AppendVarStr(plain, sig)
	ct, err := s.encrypt(plain, keyFromBytes(a.TagKey()).PubKey())
	if err != nil {
		return nil, fmt.Errorf("build pubkey: %w", err)
	}
	return checkSize(append(b, ct...))
}

// PubkeyTag returns the tag of a v4 pubkey object, which names the address
// it belongs to, so the caller can find the address it asked for.
func PubkeyTag(o *wire.Object) ([32]byte, bool) {
	var tag [32]byte
	if checkDecoded(o) != nil || o.Type != wire.ObjectPubkey || o.Version < 4 || len(o.Payload) < 32 {
		return tag, false
	}
	copy(tag[:], o.Payload)
	return tag, true
}

// ParsePubkey parses and checks a pubkey object the way PyBitmessage's
// processpubkey and decryptAndCheckPubkeyPayload do (docs/protocol.md §10.2).
//
// want is the address whose pubkey the caller is waiting for. A v4 pubkey
// needs it: its tag must match, it is decrypted with want's tag key, its
// version and stream must equal want's and its keys must hash to want's
// ripe. For v2 and v3 want may be the zero Address, and the caller takes the
// address from PubkeyData.Address(); otherwise the derived address must be
// want. v3 and v4 signatures are verified (SHA-1 or SHA-256), and both keys
// must be points on the curve.
func ParsePubkey(o *wire.Object, want address.Address) (PubkeyData, error) {
	pd, err := parsePubkey(o, want)
	if err != nil {
		return PubkeyData{}, fmt.Errorf("parse pubkey: %w", err)
	}
	return pd, nil
}

func parsePubkey(o *wire.Object, want address.Address) (PubkeyData, error) {
	if err := checkDecoded(o); err != nil {
		return PubkeyData{}, err
	}
	if o.Type != wire.ObjectPubkey {
		return PubkeyData{}, fmt.Errorf("%w %d", ErrType, o.Type)
	}
	if len(o.Raw) < minPubkeyLen || len(o.Raw) > maxPubkeyLen {
		return PubkeyData{}, fmt.Errorf("%w: %d bytes", ErrSize, len(o.Raw))
	}
	if o.Version < 2 || o.Version > 4 {
		return PubkeyData{}, fmt.Errorf("%w: address version %d", ErrVersion, o.Version)
	}
	pd := PubkeyData{Version: o.Version, Stream: o.Stream}
	if o.Version == 4 {
		return parsePubkeyV4(o, want, pd)
	}
	if o.Version == 3 && len(o.Raw) < minPubkeyV3Len {
		return PubkeyData{}, fmt.Errorf("%w: %d bytes for a v3 pubkey", ErrSize, len(o.Raw))
	}
	r := &reader{b: o.Payload}
	if err := pd.readKeyBlock(r); err != nil {
		return PubkeyData{}, err
	}
	if err := pd.checkKeys(); err != nil {
		return PubkeyData{}, err
	}
	if o.Version == 3 {
		signed := o.Raw[8 : o.HeaderLen+r.off]
		sig, err := r.varstr("signature")
		if err != nil {
			return PubkeyData{}, err
		}
		if err := signedBy(&pd.SigningKey, signed, sig); err != nil {
			return PubkeyData{}, err
		}
	}
	if want != (address.Address{}) && pd.Address() != want {
		return PubkeyData{}, fmt.Errorf("%w: pubkey of %s", ErrNotWanted, pd.Address())
	}
	return pd, nil
}

func parsePubkeyV4(o *wire.Object, want address.Address, pd PubkeyData) (PubkeyData, error) {
	if len(o.Raw) < minPubkeyV4Len {
		return PubkeyData{}, fmt.Errorf("%w: %d bytes for a v4 pubkey", ErrSize, len(o.Raw))
	}
	tag, _ := PubkeyTag(o)
	if want.Version < 4 || tag != want.Tag() {
		return PubkeyData{}, fmt.Errorf("%w: tag %x", ErrNotWanted, tag)
	}
	if o.Version != want.Version || o.Stream != want.Stream {
		return PubkeyData{}, fmt.Errorf("%w: object version %d stream %d, address %s", ErrMismatch, o.Version, o.Stream, want)
	}
	plain, err := bmcrypto.Decrypt(o.Payload[32:], keyFromBytes(want.TagKey()))
	if err != nil {
		return PubkeyData{}, fmt.Errorf("%w: does not decrypt with the tag key: %w", ErrMismatch, err)
	}
	r := &reader{b: plain}
	if err := pd.readKeyBlock(r); err != nil {
		return PubkeyData{}, err
	}
	if err := pd.checkKeys(); err != nil {
		return PubkeyData{}, err
	}
	signed := append(o.Raw[8:o.HeaderLen+32:o.HeaderLen+32], plain[:r.off]...)
	sig, err := r.varstr("signature")
	if err != nil {
		return PubkeyData{}, err
	}
	if err := signedBy(&pd.SigningKey, signed, sig); err != nil {
		return PubkeyData{}, err
	}
	if pd.Ripe() != want.Ripe {
		return PubkeyData{}, fmt.Errorf("%w: keys do not hash to the ripe of %s", ErrMismatch, want)
	}
	return pd, nil
}
