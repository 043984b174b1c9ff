package pyapi

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strings"
	"unicode/utf8"

	"github.com/bmgate/bmgate/bmcore/address"
	"github.com/bmgate/bmgate/bmcore/wire"
)

// Reading parameters the way PyBitmessage's handlers use them.

// str returns a parameter that is used as text (an address, base64, hex).
// A <base64> value's bytes count as text, as Python 2's str would.
func str(v any) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case []byte:
		return string(v), nil
	case DateTime:
		return string(v), nil
	}
	return "", unexpected(fmt.Errorf("expected a string, got %s", pyType(v)))
}

// num returns a numeric parameter (Python's bool is an int too).
func num(v any) (float64, error) {
	switch v := v.(type) {
	case int64:
		return float64(v), nil
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return 0, unexpected(errors.New("expected a finite number"))
		}
		return v, nil
	case bool:
		if v {
			return 1, nil
		}
		return 0, nil
	}
	return 0, unexpected(fmt.Errorf("expected a number, got %s", pyType(v)))
}

// integer returns an integral parameter.
func integer(v any) (int64, error) {
	f, err := num(v)
	if err != nil {
		return 0, err
	}
	if f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return 0, unexpected(fmt.Errorf("expected an integer, got %v", f))
	}
	return int64(f), nil
}

// pyType names a value's type as Python 2's type() prints it.
func pyType(v any) string {
	switch v.(type) {
	case string:
		return "<type 'str'>"
	case int64:
		return "<type 'int'>"
	case bool:
		return "<type 'bool'>"
	case float64:
		return "<type 'float'>"
	case []byte:
		return "<type 'instance'>"
	case []any:
		return "<type 'list'>"
	case map[string]any:
		return "<type 'dict'>"
	case nil:
		return "<type 'NoneType'>"
	}
	return "<type 'instance'>"
}

// pyRepr is Python 2's repr of a str, for error 22's text.
func pyRepr(s string) string {
	q := byte('\'')
	if strings.IndexByte(s, '\'') >= 0 && strings.IndexByte(s, '"') < 0 {
		q = '"'
	}
	var b strings.Builder
	b.WriteByte(q)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == q || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\r':
			b.WriteString(`\r`)
		case c == '\t':
			b.WriteString(`\t`)
		case c < 0x20 || c >= 0x7f:
			fmt.Fprintf(&b, `\x%02x`, c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte(q)
	return b.String()
}

func decodeErr(reason, text string) error {
	if len(text) > 200 {
		text = text[:200]
	}
	return apiErr(22, "Decode error - %s. Had trouble while decoding string: %s", reason, pyRepr(text))
}

// decodeB64 decodes base64 as Python 2's base64.b64decode
// (binascii.a2b_base64): characters outside the alphabet are skipped, a
// pad ends the data, and a last group left incomplete is error 22
// "Incorrect padding".
func decodeB64(v any) ([]byte, error) {
	if b, ok := v.([]byte); ok { // an XML-RPC <base64> is already decoded
		return b, nil
	}
	text, err := str(v)
	if err != nil {
		return nil, err
	}
	b, ok := a2bBase64(text)
	if !ok {
		return nil, decodeErr("Incorrect padding", text)
	}
	return b, nil
}

const b64Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

func a2bBase64(s string) ([]byte, bool) {
	out := make([]byte, 0, len(s)*3/4)
	var acc uint32
	bits, quad := 0, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '=' {
			if quad < 2 {
				continue
			}
			if quad == 2 && nextValid(s[i+1:]) != '=' {
				continue
			}
			bits = 0
			break
		}
		v := strings.IndexByte(b64Alphabet, c)
		if v < 0 {
			continue
		}
		quad = (quad + 1) & 3
		acc = acc<<6 | uint32(v)
		bits += 6
		if bits >= 8 {
			bits -= 8
			out = append(out, byte(acc>>bits))
			acc &= 1<<bits - 1
		}
	}
	return out, bits == 0
}

// nextValid returns the first base64 character or pad of s (0: none).
func nextValid(s string) byte {
	for i := 0; i < len(s); i++ {
		if s[i] == '=' || strings.IndexByte(b64Alphabet, s[i]) >= 0 {
			return s[i]
		}
	}
	return 0
}

// decodeHex decodes hex as Python's unhexlify, with its error texts.
func decodeHex(v any) ([]byte, error) {
	text, err := str(v)
	if err != nil {
		return nil, err
	}
	if len(text)%2 != 0 {
		return nil, decodeErr("Odd-length string", text)
	}
	b, err := hex.DecodeString(text)
	if err != nil {
		return nil, decodeErr("Non-hexadecimal digit found", text)
	}
	return b, nil
}

// addBM is PyBitmessage's addBMIfNotPresent.
func addBM(a string) string {
	a = strings.TrimSpace(a)
	if strings.HasPrefix(a, "BM-") {
		return a
	}
	return "BM-" + a
}

// decodeStatus is PyBitmessage's decodeAddress status of a Decode error.
func decodeStatus(err error) string {
	switch {
	case err == nil:
		return "success"
	case errors.Is(err, address.ErrInvalidCharacters):
		return "invalidcharacters"
	case errors.Is(err, address.ErrChecksum):
		return "checksumfailed"
	case errors.Is(err, address.ErrVarInt):
		return "varintmalformed"
	case errors.Is(err, address.ErrVersion):
		return "versiontoohigh"
	case errors.Is(err, address.ErrRipeTooShort):
		return "ripetooshort"
	case errors.Is(err, address.ErrRipeTooLong):
		return "ripetoolong"
	case errors.Is(err, address.ErrEncoding):
		return "encodingproblem"
	}
	return "otherproblem"
}

// isVersion1 reports whether Decode refused text only for being a
// version 1 address (checksum right, version var_int 1).
func isVersion1(text string, err error) bool {
	if !errors.Is(err, address.ErrVersion) {
		return false
	}
	data, ok := address.DecodeBase58(strings.TrimPrefix(strings.TrimSpace(text), address.Prefix))
	if !ok {
		return false
	}
	v, _, verr := wire.ReadVarInt(data)
	return verr == nil && v == 1
}

// verifyAddress is PyBitmessage's _verifyAddress: errors 7–12 and 26.
func verifyAddress(v any) (address.Address, string, error) {
	text, err := str(v)
	if err != nil {
		return address.Address{}, "", err
	}
	a, derr := address.Decode(text)
	if isVersion1(text, derr) {
		// PyBitmessage decodes a version 1 address, then refuses it.
		return a, "", apiErr(11, "The address version number currently must be 2, 3 or 4. Others aren't supported. Check the address.")
	}
	switch status := decodeStatus(derr); status {
	case "success":
	case "checksumfailed":
		return a, "", apiErr(8, "Checksum failed for address: %s", text)
	case "invalidcharacters":
		return a, "", apiErr(9, "Invalid characters in address: %s", text)
	case "versiontoohigh":
		return a, "", apiErr(10, "Address version number too high (or zero) in address: %s", text)
	case "varintmalformed":
		return a, "", apiErr(26, "Malformed varint in address: %s", text)
	default:
		return a, "", apiErr(7, "Could not decode address: %s : %s", text, status)
	}
	if a.Version < 2 || a.Version > 4 {
		return a, "", apiErr(11, "The address version number currently must be 2, 3 or 4. Others aren't supported. Check the address.")
	}
	if a.Stream != 1 {
		return a, "", apiErr(12, "The stream number must be 1. Others aren't supported. Check the address.")
	}
	return a, a.String(), nil
}

// utf8Label decodes a base64 label that must be UTF-8 (error 17).
func utf8Label(v any) (string, error) {
	b, err := decodeB64(v)
	if err != nil {
		return "", err
	}
	if !utf8.Valid(b) {
		return "", apiErr(17, "Label is not valid UTF-8 data.")
	}
	return string(b), nil
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
