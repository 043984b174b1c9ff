package object

import (
	"bytes"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
	"sort"
	"unicode/utf8"
)

// Message encodings (docs/protocol.md §12).
const (
	EncodingIgnore   = 0 // not shown, no ack
	EncodingTrivial  = 1 // body only
	EncodingSimple   = 2 // "Subject:" subject "\nBody:" body
	EncodingExtended = 3 // zlib(msgpack map)
)

// MaxDecompressed caps an extended message after decompression, as
// PyBitmessage's [zlib] maxsize default does (1 MiB; larger is dropped).
const MaxDecompressed = 1 << 20

// maxSubject is how much of a simple-encoded subject PyBitmessage keeps.
const maxSubject = 500

// extendedType is the only extended message type PyBitmessage accepts.
const extendedType = "message"

// Errors of the message encodings.
var (
	// ErrUnknownEncoding means an encoding other than 1, 2 or 3; PyBitmessage
	// shows a placeholder for such messages.
	ErrUnknownEncoding = errors.New("object: unknown message encoding")
	// ErrExtended means an encoding-3 message that does not decompress or
	// unpack into a "message" map, or is over MaxDecompressed.
	ErrExtended = errors.New("object: invalid extended-encoding message")
)

// Extended is a decoded message. Encodings 1 and 2 fill only Subject and
// Body; encoding 3 may carry further string-valued keys in Extra.
type Extended struct {
	Subject, Body string
	Extra         map[string]string
}

// EncodeSimple returns encoding 2: "Subject:" subject "\nBody:" body. A
// receiver keeps only the subject's first line and first 500 bytes.
func EncodeSimple(subject, body string) []byte {
	b := make([]byte, 0, len("Subject:\nBody:")+len(subject)+len(body))
	b = append(b, "Subject:"...)
	b = append(b, subject...)
	b = append(b, "\nBody:"...)
	return append(b, body...)
}

// EncodeExtended returns encoding 3: zlib (level 9) of a msgpack map with
// "" = "message", "subject" and "body" packed as msgpack bin (docs/protocol.md §12:
// a Python 2 PyBitmessage blanks non-ASCII str values) and the Extra keys as
// str. Extra may not redefine "", "subject" or "body".
func EncodeExtended(e Extended) ([]byte, error) {
	keys := make([]string, 0, len(e.Extra))
	for k := range e.Extra {
		if k == "" || k == "subject" || k == "body" {
			return nil, fmt.Errorf("encode extended: extra key %q is reserved", k)
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	m := appendMapHeader(nil, 3+len(keys))
	m = appendStr(m, "")
	m = appendStr(m, extendedType)
	m = appendStr(m, "subject")
	m = appendBin(m, e.Subject)
	m = appendStr(m, "body")
	m = appendBin(m, e.Body)
	for _, k := range keys {
		m = appendStr(m, k)
		m = appendStr(m, e.Extra[k])
	}
	var buf bytes.Buffer
	zw, err := zlib.NewWriterLevel(&buf, zlib.BestCompression)
	if err != nil {
		return nil, fmt.Errorf("encode extended: %w", err)
	}
	if _, err := zw.Write(m); err != nil {
		return nil, fmt.Errorf("encode extended: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("encode extended: %w", err)
	}
	return buf.Bytes(), nil
}

// DecodeMessage decodes a message of encoding 1, 2 or 3 the way
// PyBitmessage's helper_msgcoding does. Text that is not valid UTF-8 is
// decoded with U+FFFD replacement characters.
func DecodeMessage(encoding uint64, data []byte) (Extended, error) {
	switch encoding {
	case EncodingTrivial, EncodingSimple:
		return decodeSimple(data), nil
	case EncodingExtended:
		return decodeExtended(data)
	}
	return Extended{}, fmt.Errorf("%w %d", ErrUnknownEncoding, encoding)
}

// decodeSimple is helper_msgcoding.decodeSimple: the subject is what lies
// between the 8-byte "Subject:" prefix and the first "\nBody:", if that
// occurs after index 1, cut to 500 bytes and its first line.
func decodeSimple(data []byte) Extended {
	i := bytes.Index(data, []byte("\nBody:"))
	if i <= 1 {
		return Extended{Body: utf8String(data)}
	}
	var subject []byte
	if i > 8 {
		subject = data[8:i]
	}
	subject = subject[:min(len(subject), maxSubject)]
	if j := bytes.IndexAny(subject, "\r\n"); j >= 0 {
		subject = subject[:j]
	}
	return Extended{Subject: utf8String(subject), Body: utf8String(data[i+6:])}
}

// utf8String decodes b as UTF-8, replacing each invalid byte with U+FFFD.
func utf8String(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	s := make([]byte, 0, len(b)+8)
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		s = utf8.AppendRune(s, r)
		b = b[n:]
	}
	return string(s)
}

func decodeExtended(data []byte) (Extended, error) {
	zr, err := zlib.NewReader(bytes.NewReader(data))
	if err != nil {
		return Extended{}, fmt.Errorf("%w: %w", ErrExtended, err)
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(zr, MaxDecompressed+1)); err != nil {
		return Extended{}, fmt.Errorf("%w: %w", ErrExtended, err)
	}
	if buf.Len() > MaxDecompressed {
		return Extended{}, fmt.Errorf("%w: decompresses to more than %d bytes", ErrExtended, MaxDecompressed)
	}
	fields, err := unpackStringMap(buf.Bytes())
	if err != nil {
		return Extended{}, fmt.Errorf("%w: %w", ErrExtended, err)
	}
	typ, ok := fields[""]
	if !ok {
		return Extended{}, fmt.Errorf("%w: message type missing", ErrExtended)
	}
	if typ.kind != kindText || string(typ.text) != extendedType {
		return Extended{}, fmt.Errorf("%w: message type %q not accepted", ErrExtended, typ.text)
	}
	e := Extended{}
	// Like messagetypes.message: a subject or body that is not text is blank.
	if v := fields["subject"]; v.kind == kindText {
		e.Subject = utf8String(v.text)
	}
	if v := fields["body"]; v.kind == kindText {
		e.Body = utf8String(v.text)
	}
	for k, v := range fields {
		if k == "" || k == "subject" || k == "body" || v.kind != kindText {
			continue
		}
		if e.Extra == nil {
			e.Extra = make(map[string]string)
		}
		e.Extra[k] = utf8String(v.text)
	}
	return e, nil
}
