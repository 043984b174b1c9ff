package object

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The msgpack subset of extended messages (docs/protocol.md §12): writing a map of
// str keys to str or bin values, and reading any msgpack value, keeping the
// top-level map's text entries and skipping everything else.

// maxMsgpackDepth bounds nesting when skipping values nobody reads.
const maxMsgpackDepth = 32

var errMsgpack = errors.New("malformed msgpack")

func appendMapHeader(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, 0x80|byte(n))
	case n < 1<<16:
		return binary.BigEndian.AppendUint16(append(b, 0xde), uint16(n))
	default:
		return binary.BigEndian.AppendUint32(append(b, 0xdf), uint32(n))
	}
}

func appendArrayHeader(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, 0x90|byte(n))
	case n < 1<<16:
		return binary.BigEndian.AppendUint16(append(b, 0xdc), uint16(n))
	default:
		return binary.BigEndian.AppendUint32(append(b, 0xdd), uint32(n))
	}
}

func appendStr(b []byte, s string) []byte {
	switch n := len(s); {
	case n < 32:
		b = append(b, 0xa0|byte(n))
	case n < 1<<8:
		b = append(b, 0xd9, byte(n))
	case n < 1<<16:
		b = binary.BigEndian.AppendUint16(append(b, 0xda), uint16(n))
	default:
		b = binary.BigEndian.AppendUint32(append(b, 0xdb), uint32(n))
	}
	return append(b, s...)
}

func appendBin[T string | []byte](b []byte, s T) []byte {
	switch n := len(s); {
	case n < 1<<8:
		b = append(b, 0xc4, byte(n))
	case n < 1<<16:
		b = binary.BigEndian.AppendUint16(append(b, 0xc5), uint16(n))
	default:
		b = binary.BigEndian.AppendUint32(append(b, 0xc6), uint32(n))
	}
	return append(b, s...)
}

type mpKind int

const (
	kindScalar mpKind = iota // nil, bool, numbers, ext
	kindText                 // str or bin
	kindArray
	kindMap
)

// mpValue is one decoded item: text for str/bin (bin tells which), a
// count for array/map. raw is the whole encoded value, for the top-level
// map's entries only (unpackStringMap), so containers can be read again.
type mpValue struct {
	kind mpKind
	bin  bool
	text []byte
	n    int
	raw  []byte
}

type mpReader struct {
	b   []byte
	off int
}

func (r *mpReader) take(n int) ([]byte, error) {
	if n < 0 || len(r.b)-r.off < n {
		return nil, fmt.Errorf("%w: truncated", errMsgpack)
	}
	b := r.b[r.off : r.off+n]
	r.off += n
	return b, nil
}

func (r *mpReader) length(size int) (int, error) {
	b, err := r.take(size)
	if err != nil {
		return 0, err
	}
	var n uint64
	for _, c := range b {
		n = n<<8 | uint64(c)
	}
	if n > uint64(len(r.b)) {
		// No length or count can exceed the input: every element takes a byte.
		return 0, fmt.Errorf("%w: length %d beyond the input", errMsgpack, n)
	}
	return int(n), nil
}

// next reads one item's header; text items are read whole, containers only
// report their element count (pairs for a map).
func (r *mpReader) next() (mpValue, error) {
	h, err := r.take(1)
	if err != nil {
		return mpValue{}, err
	}
	c := h[0]
	text := func(size int) (mpValue, error) {
		n, err := r.length(size)
		if err != nil {
			return mpValue{}, err
		}
		b, err := r.take(n)
		return mpValue{kind: kindText, text: b}, err
	}
	container := func(kind mpKind, size int) (mpValue, error) {
		n, err := r.length(size)
		return mpValue{kind: kind, n: n}, err
	}
	scalar := func(size int) (mpValue, error) {
		_, err := r.take(size)
		return mpValue{kind: kindScalar}, err
	}
	switch {
	case c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3:
		return mpValue{kind: kindScalar}, nil
	case c&0xf0 == 0x80:
		return mpValue{kind: kindMap, n: int(c & 0x0f)}, nil
	case c&0xf0 == 0x90:
		return mpValue{kind: kindArray, n: int(c & 0x0f)}, nil
	case c&0xe0 == 0xa0:
		b, err := r.take(int(c & 0x1f))
		return mpValue{kind: kindText, text: b}, err
	}
	switch c {
	case 0xc4, 0xc5, 0xc6:
		v, err := text(1 << (c - 0xc4))
		v.bin = true
		return v, err
	case 0xd9:
		return text(1)
	case 0xda:
		return text(2)
	case 0xdb:
		return text(4)
	case 0xc7, 0xc8, 0xc9: // ext 8/16/32: length, type byte, data
		n, err := r.length(1 << (c - 0xc7))
		if err != nil {
			return mpValue{}, err
		}
		return scalar(1 + n)
	case 0xca, 0xce, 0xd2:
		return scalar(4)
	case 0xcb, 0xcf, 0xd3:
		return scalar(8)
	case 0xcc, 0xd0:
		return scalar(1)
	case 0xcd, 0xd1:
		return scalar(2)
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1/2/4/8/16 plus the type byte
		return scalar(1 + 1<<(c-0xd4))
	case 0xdc:
		return container(kindArray, 2)
	case 0xdd:
		return container(kindArray, 4)
	case 0xde:
		return container(kindMap, 2)
	case 0xdf:
		return container(kindMap, 4)
	}
	return mpValue{}, fmt.Errorf("%w: reserved byte %#x", errMsgpack, c)
}

// skip reads past the rest of a value whose header was v.
func (r *mpReader) skip(v mpValue, depth int) error {
	if v.kind != kindArray && v.kind != kindMap {
		return nil
	}
	if depth >= maxMsgpackDepth {
		return fmt.Errorf("%w: nested deeper than %d", errMsgpack, maxMsgpackDepth)
	}
	n := v.n
	if v.kind == kindMap {
		n *= 2
	}
	for i := 0; i < n; i++ {
		e, err := r.next()
		if err != nil {
			return err
		}
		if err := r.skip(e, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// unpackStringMap reads one msgpack map that must span all of b and returns
// its entries whose key is str or bin (the last one wins, as in a Python
// dict); other values are reported as kindScalar/kindArray/kindMap.
func unpackStringMap(b []byte) (map[string]mpValue, error) {
	r := &mpReader{b: b}
	top, err := r.next()
	if err != nil {
		return nil, err
	}
	if top.kind != kindMap {
		return nil, fmt.Errorf("%w: top level is not a map", errMsgpack)
	}
	out := make(map[string]mpValue, min(top.n, 16))
	for i := 0; i < top.n; i++ {
		k, err := r.next()
		if err != nil {
			return nil, err
		}
		if err := r.skip(k, 1); err != nil {
			return nil, err
		}
		start := r.off
		v, err := r.next()
		if err != nil {
			return nil, err
		}
		if err := r.skip(v, 1); err != nil {
			return nil, err
		}
		if k.kind == kindText {
			v.raw = b[start:r.off]
			out[string(k.text)] = v
		}
	}
	if r.off != len(b) {
		return nil, fmt.Errorf("%w: %d bytes after the map", errMsgpack, len(b)-r.off)
	}
	return out, nil
}
