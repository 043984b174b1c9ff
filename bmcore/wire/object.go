package wire

import (
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
)

// Object types (docs/protocol.md §5.2).
const (
	ObjectGetPubkey uint32 = 0
	ObjectPubkey    uint32 = 1
	ObjectMsg       uint32 = 2
	ObjectBroadcast uint32 = 3
	ObjectOnionPeer uint32 = 0x746F72
)

// Size limits for objects (docs/protocol.md §5.3, §10.5).
const (
	// MaxObjectPayload is the receive cap on the bytes after the stream var_int.
	MaxObjectPayload = 1 << 18
	// MaxObjectSize is the send cap on a whole object, nonce included.
	MaxObjectSize = 1 << 18
	// MinObjectHeader is nonce + expiresTime + type + 1-byte version + 1-byte stream.
	MinObjectHeader = 8 + 8 + 4 + 1 + 1
)

// ErrObjectTooLarge is returned when an object exceeds the payload limit.
var ErrObjectTooLarge = errors.New("wire: object payload exceeds 2^18 bytes")

// InvHash is an object's inventory vector: the first 32 bytes of
// DSHA512(object) (docs/protocol.md §1.5).
type InvHash [32]byte

// String returns the hash in lowercase hex.
func (h InvHash) String() string { return hex.EncodeToString(h[:]) }

// ComputeInvHash returns the inventory hash of a complete object (nonce first).
func ComputeInvHash(object []byte) InvHash {
	first := sha512.Sum512(object)
	second := sha512.Sum512(first[:])
	var h InvHash
	copy(h[:], second[:32])
	return h
}

// Object is a decoded object: the header fields plus the type-specific
// payload. Raw keeps the exact bytes it was decoded from, so hashes and
// signatures are computed over what was received, never over a re-encoding.
type Object struct {
	Nonce       uint64
	ExpiresTime uint64
	Type        uint32
	Version     uint64
	Stream      uint64
	Payload     []byte // objectPayload: the bytes after the stream var_int
	Raw         []byte // the whole object, nonce included
	HeaderLen   int    // offset of Payload within Raw
}

// DecodeObject parses an object. The header var_ints must be minimal and
// complete and the payload at most MaxObjectPayload bytes (docs/protocol.md §5.3 step 0, 1).
// The returned Object aliases b.
func DecodeObject(b []byte) (*Object, error) {
	if len(b) < MinObjectHeader {
		return nil, fmt.Errorf("decode object: %w (%d bytes)", ErrTruncated, len(b))
	}
	o := &Object{
		Nonce:       binary.BigEndian.Uint64(b[0:8]),
		ExpiresTime: binary.BigEndian.Uint64(b[8:16]),
		Type:        binary.BigEndian.Uint32(b[16:20]),
		Raw:         b,
	}
	off := 20
	v, n, err := ReadVarInt(b[off:])
	if err != nil {
		return nil, fmt.Errorf("decode object version: %w", err)
	}
	o.Version = v
	off += n
	s, n, err := ReadVarInt(b[off:])
	if err != nil {
		return nil, fmt.Errorf("decode object stream: %w", err)
	}
	o.Stream = s
	off += n
	if len(b)-off > MaxObjectPayload {
		return nil, ErrObjectTooLarge
	}
	o.HeaderLen = off
	o.Payload = b[off:]
	return o, nil
}

// AppendObjectHeader appends nonce, expiresTime, type, version and stream.
func AppendObjectHeader(b []byte, nonce, expires uint64, typ uint32, version, stream uint64) []byte {
	b = binary.BigEndian.AppendUint64(b, nonce)
	b = binary.BigEndian.AppendUint64(b, expires)
	b = binary.BigEndian.AppendUint32(b, typ)
	b = AppendVarInt(b, version)
	return AppendVarInt(b, stream)
}

// EncodeObject builds a whole object from its fields.
func EncodeObject(nonce, expires uint64, typ uint32, version, stream uint64, payload []byte) []byte {
	b := make([]byte, 0, 20+VarIntLen(version)+VarIntLen(stream)+len(payload))
	b = AppendObjectHeader(b, nonce, expires, typ, version, stream)
	return append(b, payload...)
}

// InvHash returns the inventory hash of the object's raw bytes.
func (o *Object) InvHash() InvHash { return ComputeInvHash(o.Raw) }

// SignedHeader returns the header bytes covered by signatures: expiresTime
// through the stream var_int (docs/protocol.md §9.2; the nonce is never signed).
func (o *Object) SignedHeader() []byte { return o.Raw[8:o.HeaderLen] }
