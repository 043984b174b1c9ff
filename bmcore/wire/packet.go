package wire

import (
	"bytes"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
)

// Packet framing limits (docs/protocol.md §2).
const (
	// MaxPayload is the receive cap on a packet payload: PyB's
	// MAX_MESSAGE_SIZE, sized for a 50 000-entry inv.
	MaxPayload = 1600100
	// HeaderSize is the length of the packet header.
	HeaderSize = 24
	// CommandSize is the length of the NUL-padded command field.
	CommandSize = 12
)

// Commands (docs/protocol.md §2). dinv and portcheck are PyB extensions.
const (
	CmdVersion   = "version"
	CmdVerack    = "verack"
	CmdAddr      = "addr"
	CmdInv       = "inv"
	CmdGetData   = "getdata"
	CmdObject    = "object"
	CmdPing      = "ping"
	CmdPong      = "pong"
	CmdError     = "error"
	CmdDinv      = "dinv"
	CmdPortcheck = "portcheck"
)

// Framing errors. A node closes the connection on each of them, as PyB does.
var (
	ErrBadMagic        = errors.New("wire: bad magic")
	ErrPayloadTooLarge = errors.New("wire: payload length exceeds 1600100 bytes")
	ErrBadChecksum     = errors.New("wire: bad checksum")
	// ErrTrailingData means bytes followed a complete message or packet.
	ErrTrailingData = errors.New("wire: trailing data")
)

// Message is a packet payload that knows its command.
type Message interface {
	Command() string
	Encode() []byte
}

// Header is the 24-byte packet header.
type Header struct {
	Magic    uint32
	Command  string // trailing NUL bytes stripped
	Length   uint32
	Checksum [4]byte
}

// DecodeHeader parses the first HeaderSize bytes of b. It checks nothing but
// the length of b; ReadPacket and DecodePacket apply the limits.
func DecodeHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, fmt.Errorf("decode header: %w (%d bytes)", ErrTruncated, len(b))
	}
	h := Header{
		Magic:   binary.BigEndian.Uint32(b[0:4]),
		Command: string(bytes.TrimRight(b[4:16], "\x00")),
		Length:  binary.BigEndian.Uint32(b[16:20]),
	}
	copy(h.Checksum[:], b[20:24])
	return h, nil
}

// check applies the magic and length rules of docs/protocol.md §2.
func (h *Header) check(magic uint32) error {
	if h.Magic != magic {
		return fmt.Errorf("%w: %08x, want %08x", ErrBadMagic, h.Magic, magic)
	}
	if h.Length > MaxPayload {
		return fmt.Errorf("%w: %d bytes", ErrPayloadTooLarge, h.Length)
	}
	return nil
}

// Checksum returns the first four bytes of SHA512(payload).
func Checksum(payload []byte) [4]byte {
	sum := sha512.Sum512(payload)
	return [4]byte(sum[:4])
}

func appendHeader(b []byte, magic uint32, cmd string, payload []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, magic)
	var name [CommandSize]byte
	copy(name[:], cmd)
	b = append(b, name[:]...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	sum := Checksum(payload)
	return append(b, sum[:]...)
}

// EncodePacket returns header || payload. cmd is one of the Cmd constants;
// a name longer than CommandSize bytes is cut to fit the field.
func EncodePacket(magic uint32, cmd string, payload []byte) []byte {
	b := make([]byte, 0, HeaderSize+len(payload))
	return append(appendHeader(b, magic, cmd, payload), payload...)
}

// WritePacket writes one packet. The payload is not copied: header and
// payload go out in one vectored write where w supports it.
func WritePacket(w io.Writer, magic uint32, cmd string, payload []byte) error {
	bufs := net.Buffers{appendHeader(make([]byte, 0, HeaderSize), magic, cmd, payload), payload}
	if _, err := bufs.WriteTo(w); err != nil {
		return fmt.Errorf("write %s packet: %w", cmd, err)
	}
	return nil
}

// ReadPacket reads one packet. It returns io.EOF unwrapped when r ends cleanly
// before a header, ErrTruncated when it ends inside a packet, and
// ErrBadMagic, ErrPayloadTooLarge or ErrBadChecksum for a bad packet. The
// length is checked before anything is allocated, and the payload buffer grows
// with the bytes actually received, so a peer that announces a large payload
// and then stalls ties up little memory.
func ReadPacket(r io.Reader, magic uint32) (cmd string, payload []byte, err error) {
	var hb [HeaderSize]byte
	if _, err := io.ReadFull(r, hb[:]); err != nil {
		if err == io.EOF {
			return "", nil, io.EOF
		}
		return "", nil, fmt.Errorf("read packet header: %w", truncated(err))
	}
	h, _ := DecodeHeader(hb[:])
	if err := h.check(magic); err != nil {
		return "", nil, fmt.Errorf("read packet header: %w", err)
	}
	payload, err = readPayload(r, int(h.Length))
	if err != nil {
		return "", nil, fmt.Errorf("read %q payload: %w", h.Command, err)
	}
	if Checksum(payload) != h.Checksum {
		return "", nil, fmt.Errorf("read %q payload: %w", h.Command, ErrBadChecksum)
	}
	return h.Command, payload, nil
}

// DecodePacket parses a complete packet held in b (e.g. the ack packet
// embedded in a msg, docs/protocol.md §11): magic, length limit, exact length and
// checksum. The payload aliases b.
func DecodePacket(b []byte, magic uint32) (cmd string, payload []byte, err error) {
	h, err := DecodeHeader(b)
	if err != nil {
		return "", nil, err
	}
	if err := h.check(magic); err != nil {
		return "", nil, fmt.Errorf("decode packet: %w", err)
	}
	switch rest := len(b) - HeaderSize; {
	case rest < int(h.Length):
		return "", nil, fmt.Errorf("decode packet: %w", ErrTruncated)
	case rest > int(h.Length):
		return "", nil, fmt.Errorf("decode packet: %w", ErrTrailingData)
	}
	payload = b[HeaderSize:]
	if Checksum(payload) != h.Checksum {
		return "", nil, fmt.Errorf("decode packet: %w", ErrBadChecksum)
	}
	return h.Command, payload, nil
}

// readChunk bounds the first allocation of a payload buffer.
const readChunk = 64 << 10

func readPayload(r io.Reader, n int) ([]byte, error) {
	buf := make([]byte, 0, min(n, readChunk))
	for len(buf) < n {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, min(n-len(buf), cap(buf)))
		}
		m, err := io.ReadFull(r, buf[len(buf):min(n, cap(buf))])
		buf = buf[:len(buf)+m]
		if err != nil {
			return nil, truncated(err)
		}
	}
	return buf, nil
}

// truncated maps an early end of input to ErrTruncated and keeps other I/O
// errors (timeouts, resets) as they are.
func truncated(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return ErrTruncated
	}
	return err
}
