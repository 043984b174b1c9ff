package wire

import (
	"bytes"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"testing"
)

func TestAddrVector(t *testing.T) {
	v := loadSamples(t).Vectors.AddrMessagePayload
	ip, err := EncodeHost(v.Host)
	if err != nil {
		t.Fatal(err)
	}
	m := &MsgAddr{}
	for range v.Count {
		m.Addrs = append(m.Addrs, NetAddr{Time: v.Time, Stream: v.Stream, Services: v.Services, IP: ip, Port: v.Port})
	}
	payload := m.Encode()
	if !bytes.HasPrefix(payload, unhex(t, v.CountHex+v.EntryHex)) {
		t.Fatalf("addr payload starts %x", payload[:41])
	}
	sum := sha512.Sum512(payload)
	if got := hex.EncodeToString(sum[:]); got != v.PayloadSHA {
		t.Fatalf("addr payload sha512 = %s, want %s", got, v.PayloadSHA)
	}
	back, err := DecodeAddr(payload)
	if err != nil || len(back.Addrs) != v.Count || back.Addrs[499] != m.Addrs[0] {
		t.Fatalf("DecodeAddr: %v", err)
	}
	checkTruncations(t, payload, func(b []byte) error { _, err := DecodeAddr(b); return err })
}

func TestAddrLimits(t *testing.T) {
	m := &MsgAddr{Addrs: make([]NetAddr, MaxAddrPerMsg)}
	if _, err := DecodeAddr(m.Encode()); err != nil {
		t.Fatalf("1000 entries: %v", err)
	}
	m.Addrs = append(m.Addrs, NetAddr{})
	if _, err := DecodeAddr(m.Encode()); !errors.Is(err, ErrTooLong) {
		t.Fatalf("1001 entries: %v", err)
	}
	if _, err := DecodeAddr(append((&MsgAddr{Addrs: make([]NetAddr, 2)}).Encode(), 0)); !errors.Is(err, ErrTrailingData) {
		t.Fatalf("trailing byte: %v", err)
	}
	if _, err := DecodeAddr([]byte{0xfd, 0x00, 0x05}); !errors.Is(err, ErrNonMinimalVarInt) {
		t.Fatalf("non-minimal count: %v", err)
	}
	// A count the bytes cannot hold is refused before the list is allocated.
	lie := AppendVarInt(nil, MaxAddrPerMsg)
	if n := allocBytes(10, func() { _, _ = DecodeAddr(lie) }); n > 16<<10 {
		t.Fatalf("lying count cost %d bytes", n)
	}
}

func FuzzDecodeAddr(f *testing.F) {
	f.Add((&MsgAddr{Addrs: []NetAddr{{Time: 1626611891, Stream: 1, Services: 1, Port: 8444}}}).Encode())
	f.Add([]byte{0})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := DecodeAddr(data)
		if err != nil {
			return
		}
		if len(m.Addrs) > MaxAddrPerMsg {
			t.Fatalf("%d entries", len(m.Addrs))
		}
		if !bytes.Equal(m.Encode(), data) {
			t.Fatalf("round trip differs")
		}
	})
}
