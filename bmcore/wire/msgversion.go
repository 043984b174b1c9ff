package wire

import (
	"encoding/binary"
	"fmt"
)

// ProtocolVersion is the protocol version bmgate speaks (docs/protocol.md §3.1).
const ProtocolVersion = 3

// Limits on a version message (docs/protocol.md §3.1).
const (
	MaxUserAgent = 5000
	MaxStreams   = 160000
)

// Services bits (docs/protocol.md §3.2).
const (
	ServiceNetwork   uint64 = 0x01
	ServiceSSL       uint64 = 0x02
	ServicePOW       uint64 = 0x04
	ServiceDandelion uint64 = 0x08
)

// versionFixed is the size of the fields before the user agent.
const versionFixed = 4 + 8 + 8 + 2*ShortAddrSize + 8

// MsgVersion is the version message (docs/protocol.md §3.1).
type MsgVersion struct {
	ProtocolVersion uint32
	Services        uint64
	Timestamp       int64
	AddrRecv        ShortAddr // the remote's address as the sender sees it
	AddrFrom        ShortAddr // the sender's services and listening port
	Nonce           uint64
	UserAgent       string
	Streams         []uint64
}

// Command returns "version".
func (m *MsgVersion) Command() string { return CmdVersion }

// Encode returns the payload.
func (m *MsgVersion) Encode() []byte {
	b := make([]byte, 0, versionFixed+VarIntLen(uint64(len(m.UserAgent)))+len(m.UserAgent)+1+len(m.Streams))
	b = binary.BigEndian.AppendUint32(b, m.ProtocolVersion)
	b = binary.BigEndian.AppendUint64(b, m.Services)
	b = binary.BigEndian.AppendUint64(b, uint64(m.Timestamp))
	b = m.AddrRecv.Append(b)
	b = m.AddrFrom.Append(b)
	b = binary.BigEndian.AppendUint64(b, m.Nonce)
	b = AppendVarStr(b, []byte(m.UserAgent))
	return AppendVarIntList(b, m.Streams)
}

// DecodeVersion parses a version payload. Bytes after the stream list are
// ignored, as PyB does, so a future version may append fields.
func DecodeVersion(b []byte) (*MsgVersion, error) {
	if len(b) < versionFixed {
		return nil, fmt.Errorf("decode version: %w", ErrTruncated)
	}
	m := &MsgVersion{
		ProtocolVersion: binary.BigEndian.Uint32(b[0:4]),
		Services:        binary.BigEndian.Uint64(b[4:12]),
		Timestamp:       int64(binary.BigEndian.Uint64(b[12:20])),
	}
	m.AddrRecv, _ = DecodeShortAddr(b[20:46])
	m.AddrFrom, _ = DecodeShortAddr(b[46:72])
	m.Nonce = binary.BigEndian.Uint64(b[72:80])
	ua, n, err := ReadVarStr(b[versionFixed:], MaxUserAgent)
	if err != nil {
		return nil, fmt.Errorf("decode version user agent: %w", err)
	}
	m.UserAgent = string(ua)
	streams, _, err := ReadVarIntList(b[versionFixed+n:], MaxStreams)
	if err != nil {
		return nil, fmt.Errorf("decode version streams: %w", err)
	}
	m.Streams = streams
	return m, nil
}
