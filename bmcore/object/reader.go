package object

import (
	"encoding/binary"
	"fmt"

	"github.com/bmgate/bmgate/bmcore/wire"
)

// reader walks a byte slice; every read checks the remaining length first
// and fails with ErrMalformed.
type reader struct {
	b   []byte
	off int
}

func (r *reader) rest() []byte { return r.b[r.off:] }

func (r *reader) bytes(n int, what string) ([]byte, error) {
	if n < 0 || len(r.b)-r.off < n {
		return nil, fmt.Errorf("%w: %s truncated", ErrMalformed, what)
	}
	b := r.b[r.off : r.off+n]
	r.off += n
	return b, nil
}

func (r *reader) uint32(what string) (uint32, error) {
	b, err := r.bytes(4, what)
	if err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint32(b), nil
}

func (r *reader) varint(what string) (uint64, error) {
	v, n, err := wire.ReadVarInt(r.rest())
	if err != nil {
		return 0, fmt.Errorf("%w: %s: %w", ErrMalformed, what, err)
	}
	r.off += n
	return v, nil
}

// varstr reads a var_str; its length cannot exceed what is left.
func (r *reader) varstr(what string) ([]byte, error) {
	b, n, err := wire.ReadVarStr(r.rest(), len(r.b)-r.off)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrMalformed, what, err)
	}
	r.off += n
	return b, nil
}

// appendHeadless appends expiresTime, type, version and stream: an object
// header without its nonce (docs/protocol.md §5.1).
func appendHeadless(b []byte, expires uint64, typ uint32, version, stream uint64) []byte {
	b = binary.BigEndian.AppendUint64(b, expires)
	b = binary.BigEndian.AppendUint32(b, typ)
	b = wire.AppendVarInt(b, version)
	return wire.AppendVarInt(b, stream)
}

// checkSize applies the sender's whole-object cap (docs/protocol.md §5.3, §18.3).
func checkSize(headless []byte) ([]byte, error) {
	if 8+len(headless) > wire.MaxObjectSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrTooLarge, 8+len(headless))
	}
	return headless, nil
}

// checkDecoded guards against an Object not made by wire.DecodeObject, whose
// offsets the parsers rely on.
func checkDecoded(o *wire.Object) error {
	if o == nil || o.HeaderLen < wire.MinObjectHeader || o.HeaderLen > len(o.Raw) || len(o.Payload) != len(o.Raw)-o.HeaderLen {
		return fmt.Errorf("%w: object not decoded by wire.DecodeObject", ErrMalformed)
	}
	return nil
}
