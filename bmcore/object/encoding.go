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
// Body; encoding 3 may carry further string-valued keys in Extra, and
// Jabit's "files" and "parents" keys.
type Extended struct {
	Subject, Body string
	Extra         map[string]string
	// Files are the attachments (Jabit's "files": an array of maps with
	// "name" str, "data" bin, "type" str, "disposition" str).
	Files []File
	// Parents are the inventory hashes of the messages this one answers
	// (Jabit's "parents": an array of 32-byte bin).
	Parents [][32]byte
	// Dropped says, when decoding, which malformed "files" or "parents"
	// entries were left out and why; never written.
	Dropped []string
}

// File is one attachment of an extended message.
type File struct {
	Name        string // the file name, UTF-8
	Type        string // MIME type
	Disposition string // DispositionAttachment or DispositionInline
	Data        []byte
}

// Dispositions of a File (Jabit's Attachment.Disposition).
const (
	DispositionAttachment = "attachment"
	DispositionInline     = "inline"
)

// MaxFiles is the most "files" entries DecodeMessage keeps.
const MaxFiles = 64

// Keys of the extended "message" map that Extra may not use.
var reservedKeys = map[string]bool{"": true, "subject": true, "body": true, "files": true, "parents": true}

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
// str. Extra may not redefine "", "subject", "body", "files" or "parents".
// Files are written in Jabit's layout (name, type and disposition str, data
// bin), Parents as an array of bin.
func EncodeExtended(e Extended) ([]byte, error) {
	keys := make([]string, 0, len(e.Extra))
	for k := range e.Extra {
		if reservedKeys[k] {
			return nil, fmt.Errorf("encode extended: extra key %q is reserved", k)
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	n := 3 + len(keys)
	if len(e.Files) > 0 {
		n++
	}
	if len(e.Parents) > 0 {
		n++
	}
	m := appendMapHeader(nil, n)
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
	if len(e.Files) > 0 {
		m = appendStr(m, "files")
		m = appendArrayHeader(m, len(e.Files))
		for _, f := range e.Files {
			switch f.Disposition {
			case DispositionAttachment, DispositionInline:
			default:
				return nil, fmt.Errorf("encode extended: file %q: disposition %q", f.Name, f.Disposition)
			}
			m = appendMapHeader(m, 4)
			m = appendStr(m, "name")
			m = appendStr(m, f.Name)
			m = appendStr(m, "data")
			m = appendBin(m, f.Data)
			m = appendStr(m, "type")
			m = appendStr(m, f.Type)
			m = appendStr(m, "disposition")
			m = appendStr(m, f.Disposition)
		}
	}
	if len(e.Parents) > 0 {
		m = appendStr(m, "parents")
		m = appendArrayHeader(m, len(e.Parents))
		for _, p := range e.Parents {
			m = appendBin(m, p[:])
		}
	}
	if len(m) > MaxDecompressed {
		return nil, fmt.Errorf("encode extended: %d bytes before compression; receivers drop more than %d", len(m), MaxDecompressed)
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
		if reservedKeys[k] || v.kind != kindText {
			continue
		}
		if e.Extra == nil {
			e.Extra = make(map[string]string)
		}
		e.Extra[k] = utf8String(v.text)
	}
	if v, ok := fields["files"]; ok {
		e.Files, e.Dropped = decodeFiles(v)
	}
	if v, ok := fields["parents"]; ok {
		var dropped []string
		e.Parents, dropped = decodeParents(v)
		e.Dropped = append(e.Dropped, dropped...)
	}
	return e, nil
}

// decodeFiles reads Jabit's "files" array. A malformed entry is left out
// and said why; nothing in it can fail the message. The value was already
// walked whole by unpackStringMap, so reading it again cannot run past it.
func decodeFiles(v mpValue) (files []File, dropped []string) {
	if v.kind != kindArray {
		return nil, []string{"the attachment list is not an array"}
	}
	r := &mpReader{b: v.raw}
	if _, err := r.next(); err != nil {
		return nil, []string{"the attachment list is malformed"}
	}
	for i := 0; i < v.n; i++ {
		item, err := r.next()
		if err != nil {
			return files, append(dropped, "the attachment list is malformed")
		}
		if len(files) >= MaxFiles {
			dropped = append(dropped, fmt.Sprintf("attachment %d: more than %d attachments", i+1, MaxFiles))
			if err := r.skip(item, 1); err != nil {
				return files, append(dropped, "the attachment list is malformed")
			}
			continue
		}
		f, why, err := readFile(r, item)
		if err != nil {
			return files, append(dropped, "the attachment list is malformed")
		}
		if why != "" {
			dropped = append(dropped, fmt.Sprintf("attachment %d: %s", i+1, why))
			continue
		}
		files = append(files, f)
	}
	return files, dropped
}

// readFile reads one "files" entry whose header is item; why says what is
// wrong with an entry that must be dropped.
func readFile(r *mpReader, item mpValue) (f File, why string, err error) {
	if item.kind != kindMap {
		return f, "not a map", r.skip(item, 1)
	}
	var hasName, hasData, hasType bool
	for range item.n {
		k, err := r.next()
		if err != nil {
			return f, "", err
		}
		if err := r.skip(k, 2); err != nil {
			return f, "", err
		}
		val, err := r.next()
		if err != nil {
			return f, "", err
		}
		if err := r.skip(val, 2); err != nil {
			return f, "", err
		}
		if k.kind != kindText || why != "" {
			continue
		}
		text := val.kind == kindText
		switch string(k.text) {
		case "name":
			hasName = text
			if !text {
				why = "the name is not text"
			}
			f.Name = utf8String(val.text)
		case "data":
			hasData = text
			if !text {
				why = "the data is not bytes"
			}
			f.Data = val.text
		case "type":
			hasType = text
			if !text {
				why = "the type is not text"
			}
			f.Type = utf8String(val.text)
		case "disposition":
			if !text {
				why = "the disposition is not text"
			}
			f.Disposition = string(val.text)
		}
	}
	switch {
	case why != "":
	case !hasName || f.Name == "":
		why = "no name"
	case !hasData:
		why = "no data"
	case f.Disposition == "":
		f.Disposition = DispositionAttachment
	case f.Disposition != DispositionAttachment && f.Disposition != DispositionInline:
		why = fmt.Sprintf("unknown disposition %q", truncate(f.Disposition, 40))
	}
	if why == "" && !hasType {
		f.Type = "application/octet-stream"
	}
	if why != "" && f.Name != "" {
		why = fmt.Sprintf("%q: %s", truncate(f.Name, 80), why)
	}
	return f, why, nil
}

// decodeParents reads Jabit's "parents": 32-byte inventory hashes.
func decodeParents(v mpValue) (parents [][32]byte, dropped []string) {
	if v.kind != kindArray {
		return nil, []string{"the parent list is not an array"}
	}
	r := &mpReader{b: v.raw}
	if _, err := r.next(); err != nil {
		return nil, []string{"the parent list is malformed"}
	}
	bad := 0
	for range v.n {
		item, err := r.next()
		if err != nil {
			return parents, append(dropped, "the parent list is malformed")
		}
		if err := r.skip(item, 1); err != nil {
			return parents, append(dropped, "the parent list is malformed")
		}
		if item.kind != kindText || len(item.text) != 32 {
			bad++
			continue
		}
		if len(parents) < 64 {
			parents = append(parents, [32]byte(item.text))
		}
	}
	if bad > 0 {
		dropped = append(dropped, fmt.Sprintf("%d parent reference(s) that are not 32-byte hashes", bad))
	}
	return parents, dropped
}

// truncate cuts s to at most n bytes on a UTF-8 boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
