package wire

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

const mainMagic = 0xE9BEB4D9

func TestEmptyPacketsGolden(t *testing.T) {
	s := loadSamples(t)
	for _, tc := range []struct {
		msg  Message
		want string
	}{
		// docs/protocol.md §2.
		{MsgVerack{}, "e9beb4d976657261636b00000000000000000000cf83e135"},
		{MsgPong{}, "e9beb4d9706f6e67000000000000000000000000cf83e135"},
		// pybitmessage_samples.json packet_header.
		{MsgPing{}, s.Vectors.PacketHeader.PingPacketHex},
	} {
		got := EncodePacket(mainMagic, tc.msg.Command(), tc.msg.Encode())
		if !bytes.Equal(got, unhex(t, tc.want)) {
			t.Errorf("%s packet = %x, want %s", tc.msg.Command(), got, tc.want)
		}
		cmd, payload, err := ReadPacket(bytes.NewReader(got), mainMagic)
		if err != nil || cmd != tc.msg.Command() || len(payload) != 0 {
			t.Errorf("ReadPacket(%s) = %q, %x, %v", tc.msg.Command(), cmd, payload, err)
		}
		var buf bytes.Buffer
		if err := WritePacket(&buf, mainMagic, tc.msg.Command(), tc.msg.Encode()); err != nil || !bytes.Equal(buf.Bytes(), got) {
			t.Errorf("WritePacket(%s) = %x, %v", tc.msg.Command(), buf.Bytes(), err)
		}
	}
}

func TestReadPacketErrors(t *testing.T) {
	good := EncodePacket(mainMagic, CmdInv, (&MsgInv{Hashes: []InvHash{{1}, {2}}}).Encode())

	if _, _, err := ReadPacket(bytes.NewReader(good), 0x0B17E570); !errors.Is(err, ErrBadMagic) {
		t.Errorf("wrong magic: %v", err)
	}

	bad := bytes.Clone(good)
	bad[len(bad)-1] ^= 1
	if _, _, err := ReadPacket(bytes.NewReader(bad), mainMagic); !errors.Is(err, ErrBadChecksum) {
		t.Errorf("payload flip: %v", err)
	}
	bad = bytes.Clone(good)
	bad[20] ^= 1
	if _, _, err := ReadPacket(bytes.NewReader(bad), mainMagic); !errors.Is(err, ErrBadChecksum) {
		t.Errorf("checksum flip: %v", err)
	}

	// An oversized length is refused from the header alone: nothing follows
	// it, so an attempt to read or allocate the payload would show up as
	// ErrTruncated or as allocations.
	huge := EncodePacket(mainMagic, CmdObject, nil)
	huge[16], huge[17], huge[18], huge[19] = 0xFF, 0xFF, 0xFF, 0xFF
	var err error
	n := allocBytes(5, func() { _, _, err = ReadPacket(bytes.NewReader(huge), mainMagic) })
	if !errors.Is(err, ErrPayloadTooLarge) {
		t.Errorf("oversized: %v", err)
	}
	if n > 1024 {
		t.Errorf("oversized header cost %d bytes", n)
	}
	justOver := EncodePacket(mainMagic, CmdObject, nil)
	justOver[16], justOver[17], justOver[18], justOver[19] = 0x00, 0x18, 0x6A, 0x65 // 1600101
	if _, _, err := ReadPacket(bytes.NewReader(justOver), mainMagic); !errors.Is(err, ErrPayloadTooLarge) {
		t.Errorf("MaxPayload+1: %v", err)
	}

	if _, _, err := ReadPacket(bytes.NewReader(nil), mainMagic); err != io.EOF {
		t.Errorf("empty stream: %v, want io.EOF", err)
	}
}

func TestReadPacketMaxPayload(t *testing.T) {
	payload := make([]byte, MaxPayload)
	payload[0] = 7
	pkt := EncodePacket(mainMagic, CmdObject, payload)
	cmd, got, err := ReadPacket(bytes.NewReader(pkt), mainMagic)
	if err != nil || cmd != CmdObject || !bytes.Equal(got, payload) {
		t.Fatalf("MaxPayload packet: %q, %d bytes, %v", cmd, len(got), err)
	}
	// A stream that ends inside the payload, at several sizes around the
	// read chunk.
	for _, n := range []int{HeaderSize + 1, HeaderSize + readChunk, HeaderSize + readChunk + 1, len(pkt) - 1} {
		if _, _, err := ReadPacket(bytes.NewReader(pkt[:n]), mainMagic); !errors.Is(err, ErrTruncated) {
			t.Errorf("cut at %d: %v", n, err)
		}
	}
}

func TestReadPacketStallingPeer(t *testing.T) {
	// A header that claims MaxPayload followed by only 100 bytes costs about
	// one read chunk, not 1.6 MB.
	pkt := EncodePacket(mainMagic, CmdObject, make([]byte, MaxPayload))[:HeaderSize+100]
	var err error
	n := allocBytes(5, func() { _, _, err = ReadPacket(bytes.NewReader(pkt), mainMagic) })
	if !errors.Is(err, ErrTruncated) {
		t.Fatalf("err = %v", err)
	}
	if n > 2*readChunk {
		t.Fatalf("stalled 1.6 MB packet cost %d bytes", n)
	}
}

func TestCommandPadding(t *testing.T) {
	pkt := EncodePacket(mainMagic, "getdata", nil)
	if !bytes.Equal(pkt[4:16], []byte("getdata\x00\x00\x00\x00\x00")) {
		t.Fatalf("command field %q", pkt[4:16])
	}
	// Only trailing NULs are stripped (PyB rstrip): an inner NUL stays.
	raw := bytes.Clone(pkt)
	copy(raw[4:16], "ping\x00x\x00\x00\x00\x00\x00\x00")
	raw[20], raw[21], raw[22], raw[23] = 0xcf, 0x83, 0xe1, 0x35
	cmd, _, err := ReadPacket(bytes.NewReader(raw), mainMagic)
	if err != nil || cmd != "ping\x00x" {
		t.Fatalf("cmd = %q, %v", cmd, err)
	}
}

// errInjected is returned by failingReader/failingWriter at the chosen offset.
var errInjected = errors.New("injected I/O error")

type failingReader struct {
	data []byte
	n    int // bytes to deliver before failing
	eof  bool
}

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		if r.eof {
			return 0, io.EOF
		}
		return 0, errInjected
	}
	k := min(len(p), r.n, len(r.data))
	copy(p, r.data[:k])
	r.data, r.n = r.data[k:], r.n-k
	return k, nil
}

type failingWriter struct{ n int }

func (w *failingWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		k := w.n
		w.n = 0
		return k, errInjected
	}
	w.n -= len(p)
	return len(p), nil
}

// TestPacketIOErrorAtEveryOffset is btcd's fixedIO test: the stream fails at
// every byte offset, and the failure surfaces as the injected error (or, for
// a clean end, ErrTruncated / io.EOF), never as a partial success.
func TestPacketIOErrorAtEveryOffset(t *testing.T) {
	v := goldenVersion()
	pkt := EncodePacket(mainMagic, CmdVersion, v.Encode())
	for i := 0; i < len(pkt); i++ {
		_, _, err := ReadPacket(&failingReader{data: pkt, n: i}, mainMagic)
		if !errors.Is(err, errInjected) {
			t.Fatalf("read error at %d: got %v", i, err)
		}
		_, _, err = ReadPacket(&failingReader{data: pkt, n: i, eof: true}, mainMagic)
		want := ErrTruncated
		if i == 0 {
			want = io.EOF
		}
		if !errors.Is(err, want) {
			t.Fatalf("EOF at %d: got %v, want %v", i, err, want)
		}
		if err := WritePacket(&failingWriter{n: i}, mainMagic, CmdVersion, v.Encode()); !errors.Is(err, errInjected) {
			t.Fatalf("write error at %d: got %v", i, err)
		}
	}
}

func TestDecodePacket(t *testing.T) {
	vs := loadComposite(t)
	ack := vs["ack"]
	pkt := unhex(t, ack.Packet)
	cmd, payload, err := DecodePacket(pkt, mainMagic)
	if err != nil || cmd != CmdObject || !bytes.Equal(payload, unhex(t, ack.Object)) {
		t.Fatalf("ack packet: %q, %x, %v", cmd, payload, err)
	}
	checkTruncations(t, pkt, func(b []byte) error { _, _, err := DecodePacket(b, mainMagic); return err })
	if _, _, err := DecodePacket(append(bytes.Clone(pkt), 0), mainMagic); !errors.Is(err, ErrTrailingData) {
		t.Fatalf("trailing byte: %v", err)
	}
	bad := bytes.Clone(pkt)
	bad[30] ^= 0x80
	if _, _, err := DecodePacket(bad, mainMagic); !errors.Is(err, ErrBadChecksum) {
		t.Fatalf("bad checksum: %v", err)
	}
	if _, _, err := DecodePacket(pkt, 1); !errors.Is(err, ErrBadMagic) {
		t.Fatalf("bad magic: %v", err)
	}
}

func FuzzReadPacket(f *testing.F) {
	f.Add(EncodePacket(mainMagic, CmdVerack, nil))
	f.Add(EncodePacket(mainMagic, CmdInv, (&MsgInv{Hashes: []InvHash{{1}}}).Encode()))
	f.Add(EncodePacket(mainMagic, CmdVersion, goldenVersion().Encode()))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		for {
			cmd, payload, err := ReadPacket(r, mainMagic)
			if err != nil {
				return
			}
			if len(payload) > MaxPayload || len(cmd) > CommandSize {
				t.Fatalf("accepted %q with %d bytes", cmd, len(payload))
			}
			// Whatever was accepted re-encodes to a packet that reads back.
			again := EncodePacket(mainMagic, cmd, payload)
			c2, p2, err := DecodePacket(again, mainMagic)
			if err != nil || c2 != cmd || !bytes.Equal(p2, payload) {
				t.Fatalf("re-encode of %q: %v", cmd, err)
			}
		}
	})
}
