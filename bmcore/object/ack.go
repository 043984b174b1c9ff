package object

import (
	"crypto/rand"
	"encoding/binary"
	"io"

	"github.com/bmgate/bmgate/bmcore/wire"
)

// Sizes of the ack data NewAckData makes: type, version, the stream as a
// varint of 1 to 9 bytes, and 32 random bytes.
const (
	minAckDataLen = 4 + 1 + 1 + 32
	maxAckDataLen = 4 + 1 + 9 + 32
)

// NewAckData returns the ack data a sender stores and embeds (docs/protocol.md §11,
// PyBitmessage stealth level 0): uint32(2) ‖ varint(1) ‖ varint(stream) ‖
// 32 random bytes, i.e. an ack object's type, version, stream and payload.
// stream is the recipient's. rand defaults to crypto/rand; NewAckData
// returns nil if it fails.
func NewAckData(stream uint64, rnd io.Reader) []byte {
	if rnd == nil {
		rnd = rand.Reader
	}
	b := binary.BigEndian.AppendUint32(make([]byte, 0, maxAckDataLen), wire.ObjectMsg)
	b = wire.AppendVarInt(b, 1)
	b = wire.AppendVarInt(b, stream)
	var r [32]byte
	if _, err := io.ReadFull(rnd, r[:]); err != nil {
		return nil
	}
	return append(b, r[:]...)
}

// BuildAck returns the headless ack object: expiresTime ‖ ackData. After
// proof of work at the network minimum, the caller wraps it as an "object"
// packet and puts that packet in the msg's ack field.
func BuildAck(ackData []byte, expires uint64) []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(ackData)), expires)
	return append(b, ackData...)
}

// AckTTL returns the ack's TTL for a msg TTL in seconds: one of three buckets
// so the ack is harder to link to its msg (docs/protocol.md §5.4,
// generateFullAckMessage): 1 day below 1 day, 7 days below 7 days, else
// 28 days. PyBitmessage adds ±300 s of jitter; that is the caller's choice.
func AckTTL(msgTTL int64) int64 {
	const day = 24 * 60 * 60
	switch {
	case msgTTL < day:
		return day
	case msgTTL < 7*day:
		return 7 * day
	default:
		return 28 * day
	}
}

// AckExpires returns the ack's expiresTime for a msg sent at now (Unix
// seconds) with msgTTL.
func AckExpires(now, msgTTL int64) uint64 { return uint64(now + AckTTL(msgTTL)) }

// AckDataOf returns what a sender compares with its stored ack data: every
// received object, of any type, minus its nonce and expiresTime
// (checkackdata). It is the one rule for which objects may be acks:
// PyBitmessage looks up every object of 32 bytes or more, but only a
// remainder of the size NewAckData makes (38 to 46 bytes) can equal ack
// data this sender stored, so for any other size AckDataOf reports false
// and spares the caller the lookup.
func AckDataOf(object []byte) ([]byte, bool) {
	if n := len(object) - 16; n < minAckDataLen || n > maxAckDataLen {
		return nil, false
	}
	return object[16:], true
}
