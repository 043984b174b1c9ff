package wire

import (
	"bytes"
	"errors"
	"testing"
)

func TestObjectSample(t *testing.T) {
	v := loadSamples(t).Vectors.ObjectSample
	raw := unhex(t, v.ObjectHex)
	o, err := DecodeObject(raw)
	if err != nil {
		t.Fatal(err)
	}
	if o.Nonce != v.Nonce || o.ExpiresTime != v.ExpiresTime || o.Type != v.ObjectType ||
		o.Version != v.ObjectVersion || o.Stream != v.Stream || string(o.Payload) != v.PayloadASCII {
		t.Fatalf("decoded %+v", o)
	}
	if o.InvHash().String() != v.InvHex {
		t.Fatalf("inv hash %s, want %s", o.InvHash(), v.InvHex)
	}
	if !bytes.Equal(EncodeObject(o.Nonce, o.ExpiresTime, o.Type, o.Version, o.Stream, o.Payload), raw) {
		t.Fatal("EncodeObject does not rebuild the sample")
	}
	if !bytes.Equal(o.SignedHeader(), raw[8:o.HeaderLen]) || o.HeaderLen != 22 {
		t.Fatalf("header length %d", o.HeaderLen)
	}
	// Every cut inside the header fails; cuts inside the payload are just
	// shorter objects.
	checkTruncations(t, raw[:o.HeaderLen], func(b []byte) error { _, err := DecodeObject(b); return err })
}

func TestObjectComposite(t *testing.T) {
	for name, v := range loadComposite(t) {
		raw := unhex(t, v.Object)
		o, err := DecodeObject(raw)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if o.InvHash().String() != v.Inv {
			t.Errorf("%s: inv %s, want %s", name, o.InvHash(), v.Inv)
		}
		if v.Length != len(raw) {
			t.Errorf("%s: length %d, want %d", name, len(raw), v.Length)
		}
		if o.Stream != 1 {
			t.Errorf("%s: stream %d", name, o.Stream)
		}
	}
}

func TestObjectHeaderRules(t *testing.T) {
	base := EncodeObject(1, 2, ObjectMsg, 1, 1, []byte("x"))
	// docs/protocol.md §5.3 step 0: non-minimal version or stream var_int.
	nonMinVersion := append(bytes.Clone(base[:20]), 0xfd, 0x00, 0x01, 0x01, 'x')
	if _, err := DecodeObject(nonMinVersion); !errors.Is(err, ErrNonMinimalVarInt) {
		t.Errorf("non-minimal version: %v", err)
	}
	nonMinStream := append(bytes.Clone(base[:21]), 0xfe, 0x00, 0x00, 0x00, 0x01, 'x')
	if _, err := DecodeObject(nonMinStream); !errors.Is(err, ErrNonMinimalVarInt) {
		t.Errorf("non-minimal stream: %v", err)
	}
	// Step 1: objectPayload over 2^18.
	if _, err := DecodeObject(EncodeObject(1, 2, 2, 1, 1, make([]byte, MaxObjectPayload))); err != nil {
		t.Errorf("2^18 payload: %v", err)
	}
	if _, err := DecodeObject(EncodeObject(1, 2, 2, 1, 1, make([]byte, MaxObjectPayload+1))); !errors.Is(err, ErrObjectTooLarge) {
		t.Errorf("2^18+1 payload: %v", err)
	}
}

func FuzzDecodeObject(f *testing.F) {
	f.Add(EncodeObject(0x1be7fc, 1712271487, 42, 1, 2, []byte("HELLO")))
	f.Add(EncodeObject(1, 2, ObjectOnionPeer, 1<<40, 1<<63, nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		o, err := DecodeObject(data)
		if err != nil {
			return
		}
		if len(o.Payload) > MaxObjectPayload {
			t.Fatalf("payload %d bytes", len(o.Payload))
		}
		// Minimal var_ints make the header canonical: re-encoding is exact.
		if !bytes.Equal(EncodeObject(o.Nonce, o.ExpiresTime, o.Type, o.Version, o.Stream, o.Payload), data) {
			t.Fatal("re-encoding differs")
		}
	})
}
