package wire

import (
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Sizes of the two net_addr forms (docs/protocol.md §1.4).
const (
	// NetAddrSize is the full form used in addr: time, stream, services, IP, port.
	NetAddrSize = 38
	// ShortAddrSize is the form used in version: services, IP, port.
	ShortAddrSize = 26
)

// ErrBadHost is returned for a host that has no 16-byte encoding.
var ErrBadHost = errors.New("wire: host has no net_addr encoding")

// onionPrefix marks a Tor v2 onion in the 16-byte IP field (PyB
// protocol.encodeHost, after bitcoind's OnionCat range fd87:d87e:eb43::/48).
var onionPrefix = [6]byte{0xfd, 0x87, 0xd8, 0x7e, 0xeb, 0x43}

var onionEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// EncodeHost returns the 16-byte form of an IPv4 address (IPv4-mapped), an
// IPv6 address or a 16-character Tor v2 onion name (docs/protocol.md §1.4).
func EncodeHost(host string) ([16]byte, error) {
	if name, ok := strings.CutSuffix(strings.ToLower(host), ".onion"); ok {
		raw, err := onionEncoding.DecodeString(strings.ToUpper(name))
		if err != nil || len(raw) != 10 {
			return [16]byte{}, fmt.Errorf("%w: %q is not a v2 onion name", ErrBadHost, host)
		}
		var ip [16]byte
		copy(ip[:6], onionPrefix[:])
		copy(ip[6:], raw)
		return ip, nil
	}
	a, err := netip.ParseAddr(host)
	if err != nil || a.Zone() != "" {
		return [16]byte{}, fmt.Errorf("%w: %q", ErrBadHost, host)
	}
	return a.As16(), nil
}

// IsOnion reports whether ip holds a Tor v2 onion.
func IsOnion(ip [16]byte) bool { return [6]byte(ip[:6]) == onionPrefix }

// HostString is the inverse of EncodeHost, as PyB decodes a net_addr:
// dotted IPv4 for a mapped address, "<base32>.onion" for the onion range,
// IPv6 text otherwise.
func HostString(ip [16]byte) string {
	if IsOnion(ip) {
		return strings.ToLower(onionEncoding.EncodeToString(ip[6:])) + ".onion"
	}
	return netip.AddrFrom16(ip).Unmap().String()
}

// NetAddr is the 38-byte net_addr carried in addr messages.
type NetAddr struct {
	Time     uint64 // last seen, Unix seconds
	Stream   uint32 // uint32 here, not a var_int
	Services uint64
	IP       [16]byte
	Port     uint16
}

// LastSeen returns Time as a time.Time.
func (a *NetAddr) LastSeen() time.Time { return time.Unix(int64(min(a.Time, 1<<62)), 0) }

// Host returns the address's host in the text form of HostString.
func (a *NetAddr) Host() string { return HostString(a.IP) }

// Append appends the 38-byte encoding of a.
func (a *NetAddr) Append(b []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, a.Time)
	b = binary.BigEndian.AppendUint32(b, a.Stream)
	b = binary.BigEndian.AppendUint64(b, a.Services)
	b = append(b, a.IP[:]...)
	return binary.BigEndian.AppendUint16(b, a.Port)
}

// DecodeNetAddr parses a 38-byte net_addr from the start of b.
func DecodeNetAddr(b []byte) (NetAddr, error) {
	if len(b) < NetAddrSize {
		return NetAddr{}, fmt.Errorf("decode net_addr: %w", ErrTruncated)
	}
	return NetAddr{
		Time:     binary.BigEndian.Uint64(b[0:8]),
		Stream:   binary.BigEndian.Uint32(b[8:12]),
		Services: binary.BigEndian.Uint64(b[12:20]),
		IP:       [16]byte(b[20:36]),
		Port:     binary.BigEndian.Uint16(b[36:38]),
	}, nil
}

// ShortAddr is the 26-byte net_addr used twice in version.
type ShortAddr struct {
	Services uint64
	IP       [16]byte
	Port     uint16
}

// Host returns the address's host in the text form of HostString.
func (a *ShortAddr) Host() string { return HostString(a.IP) }

// Append appends the 26-byte encoding of a.
func (a *ShortAddr) Append(b []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, a.Services)
	b = append(b, a.IP[:]...)
	return binary.BigEndian.AppendUint16(b, a.Port)
}

// DecodeShortAddr parses a 26-byte net_addr from the start of b.
func DecodeShortAddr(b []byte) (ShortAddr, error) {
	if len(b) < ShortAddrSize {
		return ShortAddr{}, fmt.Errorf("decode short net_addr: %w", ErrTruncated)
	}
	return ShortAddr{
		Services: binary.BigEndian.Uint64(b[0:8]),
		IP:       [16]byte(b[8:24]),
		Port:     binary.BigEndian.Uint16(b[24:26]),
	}, nil
}
