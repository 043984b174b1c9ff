package address

import (
	"crypto/sha512"
	"errors"
	"fmt"
	"strings"

	"github.com/bmgate/bmgate/bmcore/wire"
	//lint:ignore SA1019 RIPEMD-160 is part of the Bitmessage address format (docs/protocol.md §7.2)
	"golang.org/x/crypto/ripemd160"
)

// Prefix is written before every address; Decode accepts addresses without it.
const Prefix = "BM-"

// maxEncodedLen bounds the base58 text Decode will look at. The longest
// address PyBitmessage can produce (9-byte version and stream var_ints, a
// 20-byte ripe, a 4-byte checksum) is 58 characters.
const maxEncodedLen = 64

// Decode errors, one per PyBitmessage decodeAddress status (docs/protocol.md §7.3).
// Decode wraps them with the address and a sentence for the person who typed it.
var (
	ErrInvalidCharacters = errors.New("characters outside the base58 alphabet")        // invalidcharacters
	ErrChecksum          = errors.New("checksum does not match")                       // checksumfailed
	ErrVarInt            = errors.New("malformed var_int in the address data")         // varintmalformed
	ErrVersion           = errors.New("unsupported address version")                   // versiontoohigh
	ErrRipeTooShort      = errors.New("address data too short")                        // ripetooshort
	ErrRipeTooLong       = errors.New("address data too long")                         // ripetoolong
	ErrEncoding          = errors.New("ripe not in its canonical (shortest) encoding") // encodingproblem
	ErrLength            = errors.New("text too long to be an address")
)

// Address is a decoded Bitmessage address: version, stream and the full
// 20-byte RIPE hash of its key pair.
type Address struct {
	Version, Stream uint64
	Ripe            [20]byte
}

// DoubleSHA512 returns SHA512(SHA512(b)).
func DoubleSHA512(b []byte) [64]byte {
	h := sha512.Sum512(b)
	return sha512.Sum512(h[:])
}

// RipeFromKeys returns RIPEMD160(SHA512(04‖signKey ‖ 04‖encKey)) (docs/protocol.md §7.2).
// Keys may be given as 64-byte X‖Y (the wire form, 0x04 is prepended) or as
// 65-byte uncompressed keys; other lengths are hashed as given.
func RipeFromKeys(pubSigning, pubEncryption []byte) [20]byte {
	h := sha512.New()
	for _, k := range [][]byte{pubSigning, pubEncryption} {
		if len(k) == 64 {
			h.Write([]byte{4})
		}
		h.Write(k)
	}
	r := ripemd160.New()
	r.Write(h.Sum(nil))
	var ripe [20]byte
	copy(ripe[:], r.Sum(nil))
	return ripe
}

// data returns varint(version) ‖ varint(stream) ‖ ripe, the input of the tag
// and key derivations (full 20-byte ripe, docs/protocol.md §7.4).
func (a Address) data() []byte {
	b := wire.AppendVarInt(make([]byte, 0, 38), a.Version)
	b = wire.AppendVarInt(b, a.Stream)
	return append(b, a.Ripe[:]...)
}

// Tag is the public label of a v4 address: DSHA512(data)[32:64]. It names the
// address in getpubkey v4, pubkey v4 and broadcast v5 objects (docs/protocol.md §7.4).
func (a Address) Tag() [32]byte {
	h := DoubleSHA512(a.data())
	var t [32]byte
	copy(t[:], h[32:])
	return t
}

// TagKey is addressPrivKey: DSHA512(data)[0:32], the private key that
// decrypts v4 pubkeys and v5 broadcasts of this address (docs/protocol.md §7.4).
func (a Address) TagKey() [32]byte {
	h := DoubleSHA512(a.data())
	var k [32]byte
	copy(k[:], h[:32])
	return k
}

// BroadcastKey is the private key of v4 broadcasts sent by v2/v3 addresses:
// a single SHA512(data)[0:32] (docs/protocol.md §7.4, §10.4).
func (a Address) BroadcastKey() [32]byte {
	h := sha512.Sum512(a.data())
	var k [32]byte
	copy(k[:], h[:32])
	return k
}

// String returns the address in its text form with the BM- prefix
// (PyBitmessage encodeAddress): leading zero bytes of the ripe are dropped,
// at most two for versions 2 and 3, all of them for version 4.
func (a Address) String() string {
	ripe := a.Ripe[:]
	switch {
	case a.Version >= 4:
		for len(ripe) > 0 && ripe[0] == 0 {
			ripe = ripe[1:]
		}
	case a.Version >= 2:
		switch {
		case ripe[0] == 0 && ripe[1] == 0:
			ripe = ripe[2:]
		case ripe[0] == 0:
			ripe = ripe[1:]
		}
	}
	b := wire.AppendVarInt(make([]byte, 0, 42), a.Version)
	b = wire.AppendVarInt(b, a.Stream)
	b = append(b, ripe...)
	sum := DoubleSHA512(b)
	return Prefix + EncodeBase58(append(b, sum[:4]...))
}

// Decode parses an address the way PyBitmessage's decodeAddress does
// (docs/protocol.md §7.3): surrounding whitespace is ignored and the BM- prefix is
// optional. Only versions 2, 3 and 4 are accepted (version 1 is the dead RSA
// format). The errors wrap the Err* values above.
func Decode(s string) (Address, error) {
	s = strings.Trim(s, " \t\n\r\v\f")
	fail := func(err error) (Address, error) {
		return Address{}, fmt.Errorf("bitmessage address %q: %w", s, err)
	}
	if len(s) >= len(Prefix) && s[:len(Prefix)] != Prefix && strings.EqualFold(s[:len(Prefix)], Prefix) {
		// "bm-", "Bm-" or "bM-": the text has probably had its case changed.
		return fail(fmt.Errorf("%w: the prefix must be written %q; %s", ErrInvalidCharacters, Prefix, caseSensitive))
	}
	body := strings.TrimPrefix(s, Prefix)
	if len(body) > maxEncodedLen {
		return fail(ErrLength)
	}
	data, ok := DecodeBase58(body)
	if !ok || len(data) == 0 {
		if hint := caseHint(body); hint != "" {
			return fail(fmt.Errorf("%w; %s", ErrInvalidCharacters, hint))
		}
		return fail(ErrInvalidCharacters)
	}
	if len(data) < 4 {
		return fail(ErrChecksum)
	}
	payload, checksum := data[:len(data)-4], data[len(data)-4:]
	if sum := DoubleSHA512(payload); string(sum[:4]) != string(checksum) {
		if hint := caseHint(body); hint != "" {
			return fail(fmt.Errorf("%w; %s", ErrChecksum, hint))
		}
		return fail(fmt.Errorf("%w: the address was mistyped or altered (%s); copy it exactly as its owner gave it", ErrChecksum, caseSensitive))
	}
	// PyBitmessage reads the var_ints from the data with its checksum still
	// attached, so a var_int may run into the checksum; the ripe slice is
	// then empty ("too short") rather than a var_int error.
	version, n, err := wire.ReadVarInt(data[:min(9, len(data))])
	if err != nil {
		return fail(fmt.Errorf("%w: version: %w", ErrVarInt, err))
	}
	if version < 2 || version > 4 {
		return fail(fmt.Errorf("%w %d: this program handles versions 2, 3 and 4", ErrVersion, version))
	}
	var stream uint64
	var m int
	if n < len(data) { // PyB decodes an empty var_int as 0
		if stream, m, err = wire.ReadVarInt(data[n:]); err != nil {
			return fail(fmt.Errorf("%w: stream: %w", ErrVarInt, err))
		}
	}
	var ripe []byte
	if start := n + m; start < len(payload) {
		ripe = payload[start:]
	}
	a := Address{Version: version, Stream: stream}
	if version == 4 {
		switch {
		case len(ripe) > 0 && ripe[0] == 0:
			return fail(ErrEncoding)
		case len(ripe) > 20:
			return fail(ErrRipeTooLong)
		case len(ripe) < 4:
			return fail(ErrRipeTooShort)
		}
	} else {
		switch {
		case len(ripe) > 20:
			return fail(ErrRipeTooLong)
		case len(ripe) < 18:
			return fail(ErrRipeTooShort)
		}
	}
	copy(a.Ripe[20-len(ripe):], ripe)
	return a, nil
}

const caseSensitive = "Bitmessage addresses are case-sensitive"

// caseHint explains a failure when every letter of the address has the same
// case. A genuine address mixes both (about 25 letters drawn from 24 upper-
// and 25 lower-case ones), so a single case almost surely means a program or
// a person changed it, e.g. a mail client lower-casing the local part.
func caseHint(body string) string {
	var upper, lower int
	for i := 0; i < len(body); i++ {
		switch c := body[i]; {
		case 'A' <= c && c <= 'Z':
			upper++
		case 'a' <= c && c <= 'z':
			lower++
		}
	}
	const minLetters = 10
	switch {
	case upper == 0 && lower >= minLetters:
		return caseSensitive + " and every letter of this one is lower-case, so its case was probably changed (some mail programs do that); use the address exactly as its owner gave it"
	case lower == 0 && upper >= minLetters:
		return caseSensitive + " and every letter of this one is upper-case, so its case was probably changed; use the address exactly as its owner gave it"
	}
	return ""
}
