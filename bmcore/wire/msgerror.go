package wire

import "fmt"

// Error severities (docs/protocol.md §4.7).
const (
	ErrorWarning uint64 = 0
	ErrorError   uint64 = 1
	ErrorFatal   uint64 = 2 // the sender drops the connection
)

// MaxErrorInvVector bounds the inventory-vector field of an error message.
const MaxErrorInvVector = 32

// MsgError is the error message (docs/protocol.md §4.7).
type MsgError struct {
	Fatal     uint64
	BanTime   uint64 // seconds
	InvVector []byte // 32-byte hash of the object concerned, or empty
	Text      string
}

// Command returns "error".
func (m *MsgError) Command() string { return CmdError }

// Encode returns the payload.
func (m *MsgError) Encode() []byte {
	b := AppendVarInt(nil, m.Fatal)
	b = AppendVarInt(b, m.BanTime)
	b = AppendVarStr(b, m.InvVector)
	return AppendVarStr(b, []byte(m.Text))
}

// DecodeError parses an error payload.
func DecodeError(b []byte) (*MsgError, error) {
	m := &MsgError{}
	var n, off int
	var err error
	if m.Fatal, n, err = ReadVarInt(b); err != nil {
		return nil, fmt.Errorf("decode error fatal: %w", err)
	}
	off += n
	if m.BanTime, n, err = ReadVarInt(b[off:]); err != nil {
		return nil, fmt.Errorf("decode error ban time: %w", err)
	}
	off += n
	iv, n, err := ReadVarStr(b[off:], MaxErrorInvVector)
	if err != nil {
		return nil, fmt.Errorf("decode error inventory vector: %w", err)
	}
	off += n
	if len(iv) > 0 {
		m.InvVector = append([]byte(nil), iv...)
	}
	text, n, err := ReadVarStr(b[off:], MaxPayload)
	if err != nil {
		return nil, fmt.Errorf("decode error text: %w", err)
	}
	if off+n != len(b) {
		return nil, fmt.Errorf("decode error: %w", ErrTrailingData)
	}
	m.Text = string(text)
	return m, nil
}
