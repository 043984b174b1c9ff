package wire

import "fmt"

// Limits on inv, getdata and dinv (docs/protocol.md §4).
const (
	// MaxInvPerMsg is the most hashes accepted in one message (PyB head).
	MaxInvPerMsg = 50000
	// MaxInvSend is the most hashes put in one message: PyB 0.6.3.2 drops an
	// inv of 50 000 or more.
	MaxInvSend = 49999
)

// MsgInv is the inv message: hashes of objects the sender has (docs/protocol.md §4.3).
type MsgInv struct {
	Hashes []InvHash
}

// Command returns "inv".
func (m *MsgInv) Command() string { return CmdInv }

// Encode returns the payload. Callers keep len(Hashes) <= MaxInvSend.
func (m *MsgInv) Encode() []byte { return encodeInvList(m.Hashes) }

// DecodeInv parses an inv (or dinv) payload.
func DecodeInv(b []byte) (*MsgInv, error) {
	hs, err := decodeInvList(b)
	if err != nil {
		return nil, fmt.Errorf("decode inv: %w", err)
	}
	return &MsgInv{Hashes: hs}, nil
}

func encodeInvList(hs []InvHash) []byte {
	b := make([]byte, 0, VarIntLen(uint64(len(hs)))+len(hs)*len(InvHash{}))
	b = AppendVarInt(b, uint64(len(hs)))
	for i := range hs {
		b = append(b, hs[i][:]...)
	}
	return b
}

// decodeInvList checks the count against MaxInvPerMsg and the bytes present
// before allocating.
func decodeInvList(b []byte) ([]InvHash, error) {
	n, k, err := ReadVarInt(b)
	if err != nil {
		return nil, fmt.Errorf("count: %w", err)
	}
	if n > MaxInvPerMsg {
		return nil, fmt.Errorf("%w: %d hashes, limit %d", ErrTooLong, n, MaxInvPerMsg)
	}
	rest := b[k:]
	const size = len(InvHash{})
	switch need := int(n) * size; {
	case len(rest) < need:
		return nil, ErrTruncated
	case len(rest) > need:
		return nil, ErrTrailingData
	}
	hs := make([]InvHash, n)
	for i := range hs {
		hs[i] = InvHash(rest[i*size:])
	}
	return hs, nil
}
