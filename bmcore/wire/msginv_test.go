package wire

import (
	"bytes"
	"errors"
	"testing"
)

func testHashes(n int) []InvHash {
	hs := make([]InvHash, n)
	for i := range hs {
		hs[i][0], hs[i][1], hs[i][31] = byte(i>>8), byte(i), 0xAB
	}
	return hs
}

func TestInvRoundTrip(t *testing.T) {
	m := &MsgInv{Hashes: testHashes(3)}
	p := m.Encode()
	if len(p) != 1+3*32 || p[0] != 3 {
		t.Fatalf("inv payload %x", p)
	}
	back, err := DecodeInv(p)
	if err != nil || len(back.Hashes) != 3 || back.Hashes[2] != m.Hashes[2] {
		t.Fatalf("DecodeInv: %v", err)
	}
	checkTruncations(t, p, func(b []byte) error { _, err := DecodeInv(b); return err })
	if _, err := DecodeInv(append(p, 0)); !errors.Is(err, ErrTrailingData) {
		t.Fatalf("trailing byte: %v", err)
	}
}

func TestInvLimits(t *testing.T) {
	// The largest inv we send fits the packet cap (docs/protocol.md §2: 1 599 971 bytes).
	send := (&MsgInv{Hashes: testHashes(MaxInvSend)}).Encode()
	if len(send) != 1599971 || len(send) > MaxPayload {
		t.Fatalf("49999-entry inv is %d bytes", len(send))
	}
	accept := (&MsgInv{Hashes: testHashes(MaxInvPerMsg)}).Encode()
	if len(accept) > MaxPayload {
		t.Fatalf("50000-entry inv is %d bytes", len(accept))
	}
	if m, err := DecodeInv(accept); err != nil || len(m.Hashes) != MaxInvPerMsg {
		t.Fatalf("50000 hashes: %v", err)
	}
	if _, err := DecodeInv((&MsgInv{Hashes: testHashes(MaxInvPerMsg + 1)}).Encode()); !errors.Is(err, ErrTooLong) {
		t.Fatalf("50001 hashes: %v", err)
	}
	// Count checks come before allocation: a huge claimed count and a count
	// larger than the bytes present cost nothing.
	for _, lie := range [][]byte{AppendVarInt(nil, 1<<40), AppendVarInt(nil, MaxInvPerMsg)} {
		if n := allocBytes(10, func() { _, _ = DecodeInv(lie) }); n > 16<<10 {
			t.Fatalf("lying count %x cost %d bytes", lie, n)
		}
	}
	if _, err := DecodeInv([]byte{0xfe, 0, 0, 0, 1}); !errors.Is(err, ErrNonMinimalVarInt) {
		t.Fatalf("non-minimal count: %v", err)
	}
}

func FuzzDecodeInv(f *testing.F) {
	f.Add((&MsgInv{Hashes: testHashes(2)}).Encode())
	f.Add([]byte{0})
	f.Add([]byte{0xfd, 0xc3, 0x50})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := DecodeInv(data)
		if err != nil {
			return
		}
		if len(m.Hashes) > MaxInvPerMsg || !bytes.Equal(m.Encode(), data) {
			t.Fatalf("bad accept of %d bytes", len(data))
		}
	})
}
