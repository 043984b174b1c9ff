package pyapi

import (
	"bytes"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The XML-RPC codec (http://xmlrpc.com/spec.md), written here because no
// maintained Go library decodes calls on the server side. Values decode to
//
//	string (<string>, or a <value> with no type), int64 (<int>, <i4>, <i8>),
//	bool (<boolean>), float64 (<double>), []byte (<base64>), []any (<array>),
//	map[string]any (<struct>), nil (<nil/>), dateTime (<dateTime.iso8601>,
//	kept as its text)
//
// and the decoder is bounded (body size by the caller, nesting depth and
// value count here) so that no request can make it use much memory or time.

// Limits of one call.
const (
	maxDepth  = 32      // nested arrays and structs
	maxValues = 100_000 // values of every kind in one call
)

// DateTime is an XML-RPC dateTime.iso8601 value, kept as sent.
type DateTime string

// ErrParse wraps every decoding error: the body is not an XML-RPC call.
var ErrParse = errors.New("xml-rpc: malformed call")

// Call is a decoded methodCall.
type Call struct {
	Method string
	Params []any
}

type decoder struct {
	d      *xml.Decoder
	values int
}

func parseErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrParse, fmt.Sprintf(format, args...))
}

// DecodeCall reads one methodCall from r.
func DecodeCall(r io.Reader) (c Call, err error) {
	d := &decoder{d: xml.NewDecoder(r)}
	d.d.Strict = true
	d.d.CharsetReader = func(label string, in io.Reader) (io.Reader, error) {
		switch strings.ToLower(label) {
		case "utf-8", "utf8", "us-ascii", "ascii":
			return in, nil
		case "iso-8859-1", "latin-1", "latin1", "iso8859-1":
			return &latin1Reader{r: in}, nil
		}
		return nil, parseErr("unsupported encoding %q", label)
	}
	start, err := d.nextStart()
	if err != nil {
		return Call{}, err
	}
	if start.Name.Local != "methodCall" {
		return Call{}, parseErr("expected <methodCall>, got <%s>", start.Name.Local)
	}
	gotName := false
	for {
		t, err := d.next()
		if err != nil {
			return Call{}, err
		}
		switch t := t.(type) {
		case xml.EndElement:
			if !gotName {
				return Call{}, parseErr("no <methodName>")
			}
			// Nothing but space, comments and processing instructions may follow.
			after, err := d.next()
			if errors.Is(err, io.EOF) {
				return c, nil
			}
			if err != nil {
				return Call{}, err
			}
			return Call{}, parseErr("unexpected %T after </methodCall>", after)
		case xml.StartElement:
			switch t.Name.Local {
			case "methodName":
				if gotName {
					return Call{}, parseErr("two <methodName>")
				}
				s, err := d.text()
				if err != nil {
					return Call{}, err
				}
				c.Method, gotName = strings.TrimSpace(s), true
			case "params":
				if c.Params != nil {
					return Call{}, parseErr("two <params>")
				}
				c.Params = []any{}
				if err := d.params(&c); err != nil {
					return Call{}, err
				}
			default:
				return Call{}, parseErr("unexpected <%s> in <methodCall>", t.Name.Local)
			}
		default:
			return Call{}, parseErr("unexpected text in <methodCall>")
		}
	}
}

// latin1Reader turns ISO-8859-1 into UTF-8 (each byte is its code point).
type latin1Reader struct {
	r       io.Reader
	pending []byte
}

func (l *latin1Reader) Read(p []byte) (int, error) {
	if len(l.pending) == 0 {
		buf := make([]byte, max(len(p)/2, 1))
		n, err := l.r.Read(buf)
		for _, c := range buf[:n] {
			l.pending = utf8.AppendRune(l.pending, rune(c))
		}
		if n == 0 {
			return 0, err
		}
	}
	n := copy(p, l.pending)
	l.pending = l.pending[n:]
	return n, nil
}

// next returns the next token that matters: start and end elements and
// character data that is not only space. Comments, processing
// instructions and directives are skipped.
func (d *decoder) next() (xml.Token, error) {
	for {
		t, err := d.d.Token()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil, io.EOF
			}
			return nil, parseErr("%v", err)
		}
		switch tt := t.(type) {
		case xml.CharData:
			if len(bytes.TrimSpace(tt)) == 0 {
				continue
			}
			return tt.Copy(), nil
		case xml.StartElement, xml.EndElement:
			return t, nil
		}
	}
}

func (d *decoder) nextStart() (xml.StartElement, error) {
	t, err := d.next()
	if errors.Is(err, io.EOF) {
		return xml.StartElement{}, parseErr("empty document")
	}
	if err != nil {
		return xml.StartElement{}, err
	}
	s, ok := t.(xml.StartElement)
	if !ok {
		return xml.StartElement{}, parseErr("expected an element")
	}
	return s, nil
}

// text reads the character data of an element whose start was just read,
// up to its end; a child element is an error.
func (d *decoder) text() (string, error) {
	var b strings.Builder
	for {
		t, err := d.d.Token()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return "", parseErr("unexpected end of document")
			}
			return "", parseErr("%v", err)
		}
		switch tt := t.(type) {
		case xml.CharData:
			b.Write(tt)
		case xml.EndElement:
			return b.String(), nil
		case xml.StartElement:
			return "", parseErr("unexpected <%s> in text", tt.Name.Local)
		}
	}
}

func (d *decoder) params(c *Call) error {
	for {
		t, err := d.next()
		if err != nil {
			return eofIsErr(err)
		}
		switch t := t.(type) {
		case xml.EndElement:
			return nil
		case xml.StartElement:
			if t.Name.Local != "param" {
				return parseErr("unexpected <%s> in <params>", t.Name.Local)
			}
			v, err := d.valueIn(0)
			if err != nil {
				return err
			}
			if err := d.end(); err != nil {
				return err
			}
			c.Params = append(c.Params, v)
		default:
			return parseErr("unexpected text in <params>")
		}
	}
}

func eofIsErr(err error) error {
	if errors.Is(err, io.EOF) {
		return parseErr("unexpected end of document")
	}
	return err
}

// end expects the end of the current element.
func (d *decoder) end() error {
	t, err := d.next()
	if err != nil {
		return eofIsErr(err)
	}
	if _, ok := t.(xml.EndElement); !ok {
		return parseErr("unexpected content")
	}
	return nil
}

// valueIn reads a <value> element that must come next.
func (d *decoder) valueIn(depth int) (any, error) {
	s, err := d.nextStart()
	if err != nil {
		return nil, eofIsErr(err)
	}
	if s.Name.Local != "value" {
		return nil, parseErr("expected <value>, got <%s>", s.Name.Local)
	}
	return d.value(depth)
}

// value reads the inside of a <value> whose start was read, and its end.
func (d *decoder) value(depth int) (any, error) {
	if depth > maxDepth {
		return nil, parseErr("values nested deeper than %d", maxDepth)
	}
	if d.values++; d.values > maxValues {
		return nil, parseErr("more than %d values", maxValues)
	}
	// Untyped: the text up to </value> is a string; or a typed element.
	var text strings.Builder
	for {
		t, err := d.d.Token()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil, parseErr("unexpected end of document")
			}
			return nil, parseErr("%v", err)
		}
		switch tt := t.(type) {
		case xml.CharData:
			text.Write(tt)
		case xml.EndElement:
			return text.String(), nil
		case xml.StartElement:
			if strings.TrimSpace(text.String()) != "" {
				return nil, parseErr("text and <%s> in one <value>", tt.Name.Local)
			}
			v, err := d.typed(tt.Name.Local, depth)
			if err != nil {
				return nil, err
			}
			if err := d.end(); err != nil {
				return nil, err
			}
			return v, nil
		}
	}
}

func (d *decoder) typed(kind string, depth int) (any, error) {
	switch kind {
	case "string":
		return d.text()
	case "int", "i4", "i8":
		s, err := d.text()
		if err != nil {
			return nil, err
		}
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil || (kind != "i8" && (n > math.MaxInt32 || n < math.MinInt32)) {
			return nil, parseErr("bad <%s> %q", kind, truncate(s))
		}
		return n, nil
	case "boolean":
		s, err := d.text()
		if err != nil {
			return nil, err
		}
		switch strings.TrimSpace(s) {
		case "0":
			return false, nil
		case "1":
			return true, nil
		}
		return nil, parseErr("bad <boolean> %q", truncate(s))
	case "double":
		s, err := d.text()
		if err != nil {
			return nil, err
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			return nil, parseErr("bad <double> %q", truncate(s))
		}
		return f, nil
	case "base64":
		s, err := d.text()
		if err != nil {
			return nil, err
		}
		b, err := base64.StdEncoding.DecodeString(strings.Map(dropSpace, s))
		if err != nil {
			return nil, parseErr("bad <base64>")
		}
		return b, nil
	case "dateTime.iso8601":
		s, err := d.text()
		if err != nil {
			return nil, err
		}
		return DateTime(strings.TrimSpace(s)), nil
	case "nil":
		return nil, d.end()
	case "array":
		s, err := d.nextStart()
		if err != nil {
			return nil, eofIsErr(err)
		}
		if s.Name.Local != "data" {
			return nil, parseErr("expected <data>, got <%s>", s.Name.Local)
		}
		arr := []any{}
		for {
			t, err := d.next()
			if err != nil {
				return nil, eofIsErr(err)
			}
			switch t := t.(type) {
			case xml.EndElement: // </data>
				return arr, d.end()
			case xml.StartElement:
				if t.Name.Local != "value" {
					return nil, parseErr("unexpected <%s> in <data>", t.Name.Local)
				}
				v, err := d.value(depth + 1)
				if err != nil {
					return nil, err
				}
				arr = append(arr, v)
			default:
				return nil, parseErr("unexpected text in <data>")
			}
		}
	case "struct":
		m := map[string]any{}
		for {
			t, err := d.next()
			if err != nil {
				return nil, eofIsErr(err)
			}
			switch t := t.(type) {
			case xml.EndElement:
				return m, nil
			case xml.StartElement:
				if t.Name.Local != "member" {
					return nil, parseErr("unexpected <%s> in <struct>", t.Name.Local)
				}
				if err := d.member(m, depth); err != nil {
					return nil, err
				}
			default:
				return nil, parseErr("unexpected text in <struct>")
			}
		}
	}
	return nil, parseErr("unknown value type <%s>", kind)
}

func (d *decoder) member(m map[string]any, depth int) error {
	s, err := d.nextStart()
	if err != nil {
		return eofIsErr(err)
	}
	if s.Name.Local != "name" {
		return parseErr("expected <name>, got <%s>", s.Name.Local)
	}
	name, err := d.text()
	if err != nil {
		return err
	}
	v, err := d.valueIn(depth + 1)
	if err != nil {
		return err
	}
	m[name] = v
	return d.end() // </member>
}

func dropSpace(r rune) rune {
	switch r {
	case ' ', '\t', '\r', '\n':
		return -1
	}
	return r
}

func truncate(s string) string {
	if len(s) > 40 {
		s = s[:40]
	}
	return strings.ToValidUTF8(s, "?")
}

// Encoding of responses.

// EncodeResponse writes a methodResponse carrying one value. Values are
// those DecodeCall returns (int and int64 both as <int>).
func EncodeResponse(v any) []byte {
	var b bytes.Buffer
	b.WriteString("<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n")
	encodeValue(&b, v)
	b.WriteString("</param>\n</params>\n</methodResponse>\n")
	return b.Bytes()
}

// EncodeFault writes a methodResponse carrying a fault.
func EncodeFault(code int, text string) []byte {
	var b bytes.Buffer
	b.WriteString("<?xml version='1.0'?>\n<methodResponse>\n<fault>\n")
	encodeValue(&b, map[string]any{"faultCode": int64(code), "faultString": text})
	b.WriteString("</fault>\n</methodResponse>\n")
	return b.Bytes()
}

func encodeValue(b *bytes.Buffer, v any) {
	b.WriteString("<value>")
	switch v := v.(type) {
	case nil:
		b.WriteString("<nil/>")
	case string:
		b.WriteString("<string>")
		escape(b, v)
		b.WriteString("</string>")
	case DateTime:
		b.WriteString("<dateTime.iso8601>")
		escape(b, string(v))
		b.WriteString("</dateTime.iso8601>")
	case int:
		fmt.Fprintf(b, "<int>%d</int>", v)
	case int64:
		fmt.Fprintf(b, "<int>%d</int>", v)
	case bool:
		if v {
			b.WriteString("<boolean>1</boolean>")
		} else {
			b.WriteString("<boolean>0</boolean>")
		}
	case float64:
		b.WriteString("<double>" + strconv.FormatFloat(v, 'g', -1, 64) + "</double>")
	case []byte:
		b.WriteString("<base64>\n" + base64.StdEncoding.EncodeToString(v) + "\n</base64>")
	case []any:
		b.WriteString("<array><data>\n")
		for _, e := range v {
			encodeValue(b, e)
		}
		b.WriteString("</data></array>")
	case map[string]any:
		b.WriteString("<struct>\n")
		for _, k := range sortedKeys(v) {
			b.WriteString("<member>\n<name>")
			escape(b, k)
			b.WriteString("</name>\n")
			encodeValue(b, v[k])
			b.WriteString("</member>\n")
		}
		b.WriteString("</struct>")
	default:
		b.WriteString("<string>")
		escape(b, fmt.Sprint(v))
		b.WriteString("</string>")
	}
	b.WriteString("</value>\n")
}

// escape writes s as XML character data: & < > escaped, and characters
// XML 1.0 cannot carry (controls other than tab, LF, CR; invalid UTF-8)
// replaced with U+FFFD, so the response always parses.
func escape(b *bytes.Buffer, s string) {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			b.WriteString("\uFFFD")
		case r == '&':
			b.WriteString("&amp;")
		case r == '<':
			b.WriteString("&lt;")
		case r == '>':
			b.WriteString("&gt;")
		case r == '\r':
			b.WriteString("&#13;")
		case r < 0x20 && r != '\t' && r != '\n', r == 0xFFFE, r == 0xFFFF:
			b.WriteString("\uFFFD")
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
}
