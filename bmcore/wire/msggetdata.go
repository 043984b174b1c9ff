package wire

import "fmt"

// MsgGetData is the getdata message: hashes the sender wants as object
// packets (docs/protocol.md §4.4). Same layout and limits as inv.
type MsgGetData struct {
	Hashes []InvHash
}

// Command returns "getdata".
func (m *MsgGetData) Command() string { return CmdGetData }

// Encode returns the payload. Callers keep len(Hashes) <= MaxInvSend.
func (m *MsgGetData) Encode() []byte { return encodeInvList(m.Hashes) }

// DecodeGetData parses a getdata payload.
func DecodeGetData(b []byte) (*MsgGetData, error) {
	hs, err := decodeInvList(b)
	if err != nil {
		return nil, fmt.Errorf("decode getdata: %w", err)
	}
	return &MsgGetData{Hashes: hs}, nil
}
