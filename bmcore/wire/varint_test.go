package wire

import (
	"bytes"
	"errors"
	"strconv"
	"testing"
)

func TestVarIntVectors(t *testing.T) {
	s := loadSamples(t)
	if len(s.Vectors.Varint.Cases) != 9 {
		t.Fatalf("got %d varint cases, want 9", len(s.Vectors.Varint.Cases))
	}
	for _, c := range s.Vectors.Varint.Cases {
		v, err := strconv.ParseUint(c.Value, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		want := unhex(t, c.Hex)
		if got := AppendVarInt(nil, v); !bytes.Equal(got, want) {
			t.Errorf("AppendVarInt(%d) = %x, want %x", v, got, want)
		}
		if VarIntLen(v) != len(want) {
			t.Errorf("VarIntLen(%d) = %d, want %d", v, VarIntLen(v), len(want))
		}
		got, n, err := ReadVarInt(append(want, 0xAA))
		if err != nil || got != v || n != len(want) {
			t.Errorf("ReadVarInt(%x) = %d, %d, %v; want %d, %d", want, got, n, err, v, len(want))
		}
		checkTruncations(t, want, func(b []byte) error { _, _, err := ReadVarInt(b); return err })
	}
}

func TestVarIntObjectTypes(t *testing.T) {
	// PyB test_packets: decoding "\xfeaddr" and "\xfe\x00tor" gives the
	// object type numbers of the addr proposal and onionpeer.
	v, _, err := ReadVarInt([]byte("\xfeaddr"))
	if err != nil || v != 1633969266 {
		t.Fatalf("fe'addr' = %d, %v", v, err)
	}
	v, _, err = ReadVarInt([]byte("\xfe\x00tor"))
	if err != nil || v != uint64(ObjectOnionPeer) {
		t.Fatalf("fe00'tor' = %d, %v", v, err)
	}
}

func TestVarIntNonMinimal(t *testing.T) {
	for _, h := range []string{"fd0006", "fd00fc", "fe0000ffff", "fe00000001", "ff00000000ffffffff", "ff0000000000000000"} {
		if _, _, err := ReadVarInt(unhex(t, h)); !errors.Is(err, ErrNonMinimalVarInt) {
			t.Errorf("ReadVarInt(%s): err = %v, want ErrNonMinimalVarInt", h, err)
		}
	}
}

func TestVarStrAndList(t *testing.T) {
	b := AppendVarStr(nil, []byte("hello"))
	s, n, err := ReadVarStr(b, 5)
	if err != nil || string(s) != "hello" || n != 6 {
		t.Fatalf("ReadVarStr = %q, %d, %v", s, n, err)
	}
	if _, _, err := ReadVarStr(b, 4); !errors.Is(err, ErrTooLong) {
		t.Fatalf("limit not enforced: %v", err)
	}
	if got := AppendVarStr(nil, nil); !bytes.Equal(got, []byte{0}) {
		t.Fatalf("empty var_str = %x", got)
	}
	checkTruncations(t, b, func(b []byte) error { _, _, err := ReadVarStr(b, 100); return err })

	l := AppendVarIntList(nil, []uint64{1, 253, 1 << 40})
	vs, n, err := ReadVarIntList(l, 3)
	if err != nil || n != len(l) || len(vs) != 3 || vs[2] != 1<<40 {
		t.Fatalf("ReadVarIntList = %v, %d, %v", vs, n, err)
	}
	if _, _, err := ReadVarIntList(l, 2); !errors.Is(err, ErrTooLong) {
		t.Fatalf("list limit not enforced: %v", err)
	}
	checkTruncations(t, l, func(b []byte) error { _, _, err := ReadVarIntList(b, 3); return err })
	// A count larger than the remaining bytes is refused before allocating.
	lie := AppendVarInt(nil, 100000)
	if n := allocBytes(10, func() { _, _, _ = ReadVarIntList(lie, MaxStreams) }); n > 16<<10 {
		t.Fatalf("lying count cost %d bytes", n)
	}
}
