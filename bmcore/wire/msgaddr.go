package wire

import "fmt"

// MaxAddrPerMsg is the most entries an addr message may carry (docs/protocol.md §4.2).
const MaxAddrPerMsg = 1000

// MsgAddr is the addr message: known nodes (docs/protocol.md §4.2, §15.2).
type MsgAddr struct {
	Addrs []NetAddr
}

// Command returns "addr".
func (m *MsgAddr) Command() string { return CmdAddr }

// Encode returns the payload. Callers split lists longer than MaxAddrPerMsg.
func (m *MsgAddr) Encode() []byte {
	b := make([]byte, 0, VarIntLen(uint64(len(m.Addrs)))+len(m.Addrs)*NetAddrSize)
	b = AppendVarInt(b, uint64(len(m.Addrs)))
	for i := range m.Addrs {
		b = m.Addrs[i].Append(b)
	}
	return b
}

// DecodeAddr parses an addr payload. The count is checked against
// MaxAddrPerMsg and against the bytes present before the list is allocated.
func DecodeAddr(b []byte) (*MsgAddr, error) {
	n, k, err := ReadVarInt(b)
	if err != nil {
		return nil, fmt.Errorf("decode addr count: %w", err)
	}
	if n > MaxAddrPerMsg {
		return nil, fmt.Errorf("decode addr: %w: %d entries, limit %d", ErrTooLong, n, MaxAddrPerMsg)
	}
	rest := b[k:]
	switch need := int(n) * NetAddrSize; {
	case len(rest) < need:
		return nil, fmt.Errorf("decode addr: %w", ErrTruncated)
	case len(rest) > need:
		return nil, fmt.Errorf("decode addr: %w", ErrTrailingData)
	}
	m := &MsgAddr{Addrs: make([]NetAddr, n)}
	for i := range m.Addrs {
		m.Addrs[i], _ = DecodeNetAddr(rest[i*NetAddrSize:])
	}
	return m, nil
}
