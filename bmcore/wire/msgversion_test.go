package wire

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// goldenVersion is the worked example of docs/protocol.md §3.1.
func goldenVersion() *MsgVersion {
	recv, _ := EncodeHost("1.2.3.4")
	from, _ := EncodeHost("127.0.0.1")
	return &MsgVersion{
		ProtocolVersion: 3,
		Services:        0x0B,
		Timestamp:       1700000000,
		AddrRecv:        ShortAddr{Services: 1, IP: recv, Port: 8444},
		AddrFrom:        ShortAddr{Services: 0x0B, IP: from, Port: 8444},
		Nonce:           0x0102030405060708,
		UserAgent:       "/PyBitmessage:0.6.3.2/",
		Streams:         []uint64{1},
	}
}

const goldenVersionPacket = "e9beb4d9" + "76657273696f6e0000000000" + "00000069" + "89348ca5" +
	"00000003" + "000000000000000b" + "000000006553f100" +
	"0000000000000001" + "00000000000000000000ffff01020304" + "20fc" +
	"000000000000000b" + "00000000000000000000ffff7f000001" + "20fc" +
	"0102030405060708" + "16" + "2f50794269746d6573736167653a302e362e332e322f" + "01" + "01"

func TestVersionGolden(t *testing.T) {
	v := goldenVersion()
	pkt := EncodePacket(mainMagic, v.Command(), v.Encode())
	if want := unhex(t, goldenVersionPacket); !bytes.Equal(pkt, want) {
		t.Fatalf("version packet\n got %x\nwant %x", pkt, want)
	}
	cmd, payload, err := ReadPacket(bytes.NewReader(pkt), mainMagic)
	if err != nil || cmd != CmdVersion || len(payload) != 105 {
		t.Fatalf("ReadPacket: %q, %d, %v", cmd, len(payload), err)
	}
	got, err := DecodeVersion(payload)
	if err != nil {
		t.Fatal(err)
	}
	if got.ProtocolVersion != 3 || got.Services != 0x0B || got.Timestamp != 1700000000 ||
		got.AddrRecv != v.AddrRecv || got.AddrFrom != v.AddrFrom || got.Nonce != v.Nonce ||
		got.UserAgent != v.UserAgent || len(got.Streams) != 1 || got.Streams[0] != 1 {
		t.Fatalf("decoded %+v", got)
	}
	if got.AddrRecv.Host() != "1.2.3.4" || got.AddrFrom.Host() != "127.0.0.1" {
		t.Fatalf("hosts %s %s", got.AddrRecv.Host(), got.AddrFrom.Host())
	}
	checkTruncations(t, payload, func(b []byte) error { _, err := DecodeVersion(b); return err })
	// Extra bytes after the stream list are ignored (PyB).
	if _, err := DecodeVersion(append(bytes.Clone(payload), 1, 2, 3)); err != nil {
		t.Fatalf("trailing bytes: %v", err)
	}
}

func TestVersionLimits(t *testing.T) {
	v := goldenVersion()
	v.UserAgent = strings.Repeat("a", MaxUserAgent)
	if _, err := DecodeVersion(v.Encode()); err != nil {
		t.Fatalf("5000-byte user agent: %v", err)
	}
	v.UserAgent += "a"
	if _, err := DecodeVersion(v.Encode()); !errors.Is(err, ErrTooLong) {
		t.Fatalf("5001-byte user agent: %v", err)
	}
	v = goldenVersion()
	v.Streams = make([]uint64, MaxStreams)
	if m, err := DecodeVersion(v.Encode()); err != nil || len(m.Streams) != MaxStreams {
		t.Fatalf("160000 streams: %v", err)
	}
	v.Streams = append(v.Streams, 1)
	if _, err := DecodeVersion(v.Encode()); !errors.Is(err, ErrTooLong) {
		t.Fatalf("160001 streams: %v", err)
	}
	// A non-minimal stream var_int is refused.
	p := goldenVersion().Encode()
	p = append(p[:len(p)-1], 0xfd, 0x00, 0x01)
	if _, err := DecodeVersion(p); !errors.Is(err, ErrNonMinimalVarInt) {
		t.Fatalf("non-minimal stream: %v", err)
	}
}

func FuzzDecodeVersion(f *testing.F) {
	f.Add(goldenVersion().Encode())
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := DecodeVersion(data)
		if err != nil {
			return
		}
		if len(m.UserAgent) > MaxUserAgent || len(m.Streams) > MaxStreams {
			t.Fatalf("limits exceeded: %d, %d", len(m.UserAgent), len(m.Streams))
		}
		// The re-encoding is a prefix of the input (trailing bytes are ignored).
		if enc := m.Encode(); !bytes.HasPrefix(data, enc) {
			t.Fatalf("re-encoding %x is not a prefix of %x", enc, data)
		}
	})
}
