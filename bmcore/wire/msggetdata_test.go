package wire

import (
	"errors"
	"testing"
)

func TestGetDataRoundTrip(t *testing.T) {
	m := &MsgGetData{Hashes: testHashes(1000)}
	p := m.Encode()
	if p[0] != 0xfd || p[1] != 0x03 || p[2] != 0xe8 {
		t.Fatalf("count prefix %x", p[:3])
	}
	back, err := DecodeGetData(p)
	if err != nil || len(back.Hashes) != 1000 || back.Hashes[999] != m.Hashes[999] {
		t.Fatalf("DecodeGetData: %v", err)
	}
	short := (&MsgGetData{Hashes: testHashes(2)}).Encode()
	checkTruncations(t, short, func(b []byte) error { _, err := DecodeGetData(b); return err })
	if _, err := DecodeGetData((&MsgGetData{Hashes: testHashes(MaxInvPerMsg + 1)}).Encode()); !errors.Is(err, ErrTooLong) {
		t.Fatalf("50001 hashes: %v", err)
	}
}
