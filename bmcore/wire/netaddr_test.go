package wire

import (
	"bytes"
	"errors"
	"testing"
)

func TestEncodeHostVectors(t *testing.T) {
	s := loadSamples(t)
	if len(s.Vectors.EncodeHost.Cases) != 5 {
		t.Fatalf("got %d encode_host cases", len(s.Vectors.EncodeHost.Cases))
	}
	for _, c := range s.Vectors.EncodeHost.Cases {
		ip, err := EncodeHost(c.Host)
		if err != nil {
			t.Fatalf("EncodeHost(%q): %v", c.Host, err)
		}
		if want := unhex(t, c.Hex); !bytes.Equal(ip[:], want) {
			t.Errorf("EncodeHost(%q) = %x, want %x", c.Host, ip, want)
		}
		// Round trip through the text form (IPv6 comes back in canonical
		// lower-case form, so compare encodings).
		back, err := EncodeHost(HostString(ip))
		if err != nil || back != ip {
			t.Errorf("HostString(%x) = %q does not encode back: %v", ip, HostString(ip), err)
		}
	}
	onion, _ := EncodeHost("quzwelsuziwqgpt2.onion")
	if !IsOnion(onion) || HostString(onion) != "quzwelsuziwqgpt2.onion" {
		t.Errorf("onion round trip: %q", HostString(onion))
	}
	for _, bad := range []string{"", "example.com", "abc.onion", "fe80::1%eth0",
		"vww6ybal4bd7szmgncyruucpgfkqahzddi37ktceo3ah7ngmcopnpyyd.onion"} {
		if _, err := EncodeHost(bad); !errors.Is(err, ErrBadHost) {
			t.Errorf("EncodeHost(%q): %v, want ErrBadHost", bad, err)
		}
	}
}

func TestNetAddrEntry(t *testing.T) {
	// docs/protocol.md §1.4, PyB samples.py.
	want := unhex(t, "0000000060f420b3"+"00000001"+"0000000000000001"+"00000000000000000000ffff7f000001"+"20fc")
	ip, _ := EncodeHost("127.0.0.1")
	a := NetAddr{Time: 1626611891, Stream: 1, Services: 1, IP: ip, Port: 8444}
	got := a.Append(nil)
	if !bytes.Equal(got, want) {
		t.Fatalf("net_addr = %x, want %x", got, want)
	}
	back, err := DecodeNetAddr(got)
	if err != nil || back != a || back.Host() != "127.0.0.1" || back.LastSeen().Unix() != 1626611891 {
		t.Fatalf("DecodeNetAddr = %+v, %v", back, err)
	}
	checkTruncations(t, got, func(b []byte) error { _, err := DecodeNetAddr(b); return err })

	sa := ShortAddr{Services: 1, IP: ip, Port: 8444}
	short := sa.Append(nil)
	if !bytes.Equal(short, want[12:]) {
		t.Fatalf("short net_addr = %x", short)
	}
	checkTruncations(t, short, func(b []byte) error { _, err := DecodeShortAddr(b); return err })
}
