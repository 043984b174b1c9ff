package object

import (
	"bytes"
	"math"
	"math/rand/v2"
	"testing"
)

// TestAckDataOfSizes: AckDataOf accepts exactly the sizes NewAckData makes.
// Before it was the one rule, the gateway looked up only these sizes while
// AckDataOf accepted any object of 32 bytes or more.
func TestAckDataOfSizes(t *testing.T) {
	rnd := rand.NewChaCha8([32]byte{1})
	for _, stream := range []uint64{1, 0xfc, 0xfd, math.MaxUint32, math.MaxUint64} {
		d := NewAckData(stream, rnd)
		if len(d) < minAckDataLen || len(d) > maxAckDataLen {
			t.Fatalf("stream %d: ack data of %d bytes", stream, len(d))
		}
		got, ok := AckDataOf(withNonce(42, BuildAck(d, testNow)))
		if !ok || !bytes.Equal(got, d) {
			t.Errorf("stream %d: AckDataOf = %x, %v", stream, got, ok)
		}
	}
	if n := len(NewAckData(1, rnd)); n != minAckDataLen {
		t.Errorf("smallest ack data %d bytes, want %d", n, minAckDataLen)
	}
	if n := len(NewAckData(math.MaxUint64, rnd)); n != maxAckDataLen {
		t.Errorf("largest ack data %d bytes, want %d", n, maxAckDataLen)
	}
	for n := 0; n < 16+maxAckDataLen+8; n++ {
		_, ok := AckDataOf(make([]byte, n))
		if want := n >= 16+minAckDataLen && n <= 16+maxAckDataLen; ok != want {
			t.Errorf("AckDataOf(%d bytes) = %v, want %v", n, ok, want)
		}
	}
}
