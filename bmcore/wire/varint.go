package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Errors returned by the primitive decoders.
var (
	// ErrTruncated means the input ended before the value was complete.
	ErrTruncated = errors.New("wire: truncated input")
	// ErrNonMinimalVarInt means a var_int used a longer form than needed
	// (docs/protocol.md §1.1: the shortest form is mandatory since protocol v3).
	ErrNonMinimalVarInt = errors.New("wire: non-minimal var_int")
	// ErrTooLong means a length field exceeds the limit the caller allowed.
	ErrTooLong = errors.New("wire: length exceeds limit")
)

// VarIntLen returns the number of bytes VarInt encoding of v takes.
func VarIntLen(v uint64) int {
	switch {
	case v < 0xfd:
		return 1
	case v <= 0xffff:
		return 3
	case v <= 0xffffffff:
		return 5
	default:
		return 9
	}
}

// AppendVarInt appends the minimal var_int encoding of v to b.
func AppendVarInt(b []byte, v uint64) []byte {
	switch {
	case v < 0xfd:
		return append(b, byte(v))
	case v <= 0xffff:
		return binary.BigEndian.AppendUint16(append(b, 0xfd), uint16(v))
	case v <= 0xffffffff:
		return binary.BigEndian.AppendUint32(append(b, 0xfe), uint32(v))
	default:
		return binary.BigEndian.AppendUint64(append(b, 0xff), v)
	}
}

// ReadVarInt decodes a var_int from the start of b and returns the value and
// the number of bytes consumed. Truncated and non-minimal encodings fail.
func ReadVarInt(b []byte) (uint64, int, error) {
	if len(b) == 0 {
		return 0, 0, ErrTruncated
	}
	switch p := b[0]; p {
	case 0xfd:
		if len(b) < 3 {
			return 0, 0, ErrTruncated
		}
		v := uint64(binary.BigEndian.Uint16(b[1:]))
		if v < 0xfd {
			return 0, 0, ErrNonMinimalVarInt
		}
		return v, 3, nil
	case 0xfe:
		if len(b) < 5 {
			return 0, 0, ErrTruncated
		}
		v := uint64(binary.BigEndian.Uint32(b[1:]))
		if v <= 0xffff {
			return 0, 0, ErrNonMinimalVarInt
		}
		return v, 5, nil
	case 0xff:
		if len(b) < 9 {
			return 0, 0, ErrTruncated
		}
		v := binary.BigEndian.Uint64(b[1:])
		if v <= 0xffffffff {
			return 0, 0, ErrNonMinimalVarInt
		}
		return v, 9, nil
	default:
		return uint64(p), 1, nil
	}
}

// AppendVarStr appends varint(len(s)) || s.
func AppendVarStr(b, s []byte) []byte {
	return append(AppendVarInt(b, uint64(len(s))), s...)
}

// ReadVarStr decodes a var_str from the start of b. The length is checked
// against max before anything is sliced; the returned slice aliases b.
func ReadVarStr(b []byte, max int) ([]byte, int, error) {
	n, k, err := ReadVarInt(b)
	if err != nil {
		return nil, 0, err
	}
	if n > uint64(max) {
		return nil, 0, fmt.Errorf("%w: var_str of %d bytes, limit %d", ErrTooLong, n, max)
	}
	if uint64(len(b)-k) < n {
		return nil, 0, ErrTruncated
	}
	return b[k : k+int(n)], k + int(n), nil
}

// AppendVarIntList appends varint(len(vs)) followed by each value as a var_int.
func AppendVarIntList(b []byte, vs []uint64) []byte {
	b = AppendVarInt(b, uint64(len(vs)))
	for _, v := range vs {
		b = AppendVarInt(b, v)
	}
	return b
}

// ReadVarIntList decodes a var_int_list of at most max entries.
func ReadVarIntList(b []byte, max int) ([]uint64, int, error) {
	n, k, err := ReadVarInt(b)
	if err != nil {
		return nil, 0, err
	}
	if n > uint64(max) {
		return nil, 0, fmt.Errorf("%w: var_int_list of %d entries, limit %d", ErrTooLong, n, max)
	}
	// Each entry is at least one byte: a count larger than the input is a lie.
	if n > uint64(len(b)-k) {
		return nil, 0, ErrTruncated
	}
	vs := make([]uint64, 0, n)
	for i := uint64(0); i < n; i++ {
		v, m, err := ReadVarInt(b[k:])
		if err != nil {
			return nil, 0, err
		}
		vs = append(vs, v)
		k += m
	}
	return vs, k, nil
}
