package object

import (
	"fmt"

	"github.com/bmgate/bmgate/bmcore/address"
	"github.com/bmgate/bmgate/bmcore/wire"
)

// Getpubkey lengths PyBitmessage accepts, whole object with nonce
// (bmobject.checkGetpubkey, processgetpubkey).
const (
	minGetpubkeyLen = 42
	maxGetpubkeyLen = 200
)

// Getpubkey is a request for an address's pubkey (docs/protocol.md §10.1).
type Getpubkey struct {
	// Version and Stream are those of the requested address.
	Version, Stream uint64
	// Ripe is set for versions 2 and 3, Tag for version 4.
	Ripe [20]byte
	Tag  [32]byte
}

// BuildGetpubkey returns the headless getpubkey object asking for addr's
// pubkey: object version = address version, stream = address stream, then
// the ripe (v2, v3) or the tag (v4).
func BuildGetpubkey(addr address.Address, expires uint64) []byte {
	b := appendHeadless(make([]byte, 0, 64), expires, wire.ObjectGetPubkey, addr.Version, addr.Stream)
	if addr.Version >= 4 {
		tag := addr.Tag()
		return append(b, tag[:]...)
	}
	return append(b, addr.Ripe[:]...)
}

// ParseGetpubkey parses a getpubkey object with PyBitmessage's checks
// (processgetpubkey): at most 200 bytes, version 2 to 4, a 20-byte ripe or a
// 32-byte tag. Bytes after them are ignored, as PyBitmessage ignores them.
func ParseGetpubkey(o *wire.Object) (Getpubkey, error) {
	if err := checkDecoded(o); err != nil {
		return Getpubkey{}, fmt.Errorf("parse getpubkey: %w", err)
	}
	if o.Type != wire.ObjectGetPubkey {
		return Getpubkey{}, fmt.Errorf("parse getpubkey: %w %d", ErrType, o.Type)
	}
	if len(o.Raw) < minGetpubkeyLen || len(o.Raw) > maxGetpubkeyLen {
		return Getpubkey{}, fmt.Errorf("parse getpubkey: %w: %d bytes", ErrSize, len(o.Raw))
	}
	if o.Version < 2 || o.Version > 4 {
		return Getpubkey{}, fmt.Errorf("parse getpubkey: %w %d", ErrVersion, o.Version)
	}
	g := Getpubkey{Version: o.Version, Stream: o.Stream}
	r := &reader{b: o.Payload}
	if o.Version <= 3 {
		b, err := r.bytes(20, "ripe")
		if err != nil {
			return Getpubkey{}, fmt.Errorf("parse getpubkey: %w", err)
		}
		copy(g.Ripe[:], b)
		return g, nil
	}
	b, err := r.bytes(32, "tag")
	if err != nil {
		return Getpubkey{}, fmt.Errorf("parse getpubkey: %w", err)
	}
	copy(g.Tag[:], b)
	return g, nil
}

// For reports whether the request asks for a's pubkey: same version and
// stream, and a's ripe (v2, v3) or tag (v4) (processgetpubkey).
func (g Getpubkey) For(a address.Address) bool {
	if g.Version != a.Version || g.Stream != a.Stream {
		return false
	}
	if g.Version >= 4 {
		return g.Tag == a.Tag()
	}
	return g.Ripe == a.Ripe
}
