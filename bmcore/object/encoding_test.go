package object

import (
	"bytes"
	"compress/zlib"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// PyBitmessage's helper_msgcoding.decodeSimple, case by case.
func TestDecodeSimple(t *testing.T) {
	long := strings.Repeat("é", 300) // 600 bytes
	for _, c := range []struct {
		in, subject, body string
	}{
		{"Subject:Hello\nBody:This is a test message.", "Hello", "This is a test message."},
		{"Subject:\nBody:no subject", "", "no subject"},
		{"Subject:multi\nline\nBody:x", "multi", "x"},
		{"Subject:cr\r\nBody:x", "cr", "x"},
		{"Subject:a\nBody:b\nBody:c", "a", "b\nBody:c"},
		{"just text", "", "just text"},
		{"\nBody:at index 0", "", "\nBody:at index 0"},
		{"x\nBody:at index 1", "", "x\nBody:at index 1"},
		{"xy\nBody:at index 2", "", "at index 2"},                       // PyB assumes an 8-byte prefix
		{"Topic:abcdef\nBody:b", "cdef", "b"},                           // ... whatever it is
		{"Subject:" + long + "\nBody:b", strings.Repeat("é", 250), "b"}, // 500 bytes
		{"Subject:" + long[:499] + "\nBody:b", strings.Repeat("é", 249) + "\uFFFD", "b"},
		{"Subject:\xff\nBody:\xfe ok", "\uFFFD", "\uFFFD ok"},
	} {
		for _, enc := range []uint64{EncodingTrivial, EncodingSimple} {
			got, err := DecodeMessage(enc, []byte(c.in))
			if err != nil || got.Subject != c.subject || got.Body != c.body || got.Extra != nil {
				t.Errorf("DecodeMessage(%d, %q) = %q / %q, %v; want %q / %q", enc, c.in, got.Subject, got.Body, err, c.subject, c.body)
			}
		}
	}
	if got := string(EncodeSimple("Hello", "This is a test message.")); got != "Subject:Hello\nBody:This is a test message." {
		t.Errorf("EncodeSimple = %q", got)
	}
	for _, enc := range []uint64{EncodingIgnore, 4, 1 << 40} {
		if _, err := DecodeMessage(enc, []byte("x")); !errors.Is(err, ErrUnknownEncoding) {
			t.Errorf("encoding %d: %v", enc, err)
		}
	}
}

// Extended messages produced by the umsgpack PyBitmessage bundles
// (src/fallback/umsgpack) and zlib level 9, with text packed as str and as bin.
func TestDecodeExtendedPyBitmessage(t *testing.T) {
	for name, h := range map[string]string{
		"str": "78da6b5eb03c37b5b838313d7579716952566a72c972f7a2c37b0ecf4f5d92949f52b9cd233127275fe1d19cc95c55e5a99925a90a51a99939a900c7d418d1",
		"bin": "78da6b5eb03c37b5b838313d7579716952566a72c91176f7a2c37b0ecf4f5d92949f527984d3233127275fe1d19cc900c0101451",
	} {
		data, _ := hex.DecodeString(h)
		got, err := DecodeMessage(EncodingExtended, data)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		wantBody := "Hallo ✓"
		if name == "str" {
			wantBody += "\nzweite Zeile"
		}
		if got.Subject != "Grüße" || got.Body != wantBody || got.Extra != nil {
			t.Errorf("%s: %+v", name, got)
		}
	}
}

func TestExtendedRoundTrip(t *testing.T) {
	in := Extended{Subject: "Grüße ✓", Body: strings.Repeat("long body ", 100), Extra: map[string]string{"lang": "de", "x-long": strings.Repeat("v", 300)}}
	data, err := EncodeExtended(in)
	if err != nil {
		t.Fatal(err)
	}
	// Subject and body are msgpack bin (docs/protocol.md §12).
	zr, _ := zlib.NewReader(bytes.NewReader(data))
	var raw bytes.Buffer
	raw.ReadFrom(zr)
	if !bytes.Contains(raw.Bytes(), append([]byte{0xa7}, "subject\xc4"...)) || !bytes.Contains(raw.Bytes(), []byte("\xa4body\xc5\x03\xe8")) {
		t.Errorf("subject/body not packed as bin: %x", raw.Bytes()[:40])
	}
	out, err := DecodeMessage(EncodingExtended, data)
	if err != nil {
		t.Fatal(err)
	}
	if out.Subject != in.Subject || out.Body != in.Body || len(out.Extra) != 2 || out.Extra["lang"] != "de" || out.Extra["x-long"] != in.Extra["x-long"] {
		t.Errorf("round trip %+v", out)
	}
	for _, k := range []string{"", "subject", "body"} {
		if _, err := EncodeExtended(Extended{Extra: map[string]string{k: "x"}}); err == nil {
			t.Errorf("reserved key %q accepted", k)
		}
	}
	// Many keys take a map16 header.
	many := Extended{Extra: map[string]string{}}
	for i := 0; i < 20; i++ {
		many.Extra[strings.Repeat("k", i+1)] = "v"
	}
	data, _ = EncodeExtended(many)
	if out, err := DecodeMessage(EncodingExtended, data); err != nil || len(out.Extra) != 20 {
		t.Errorf("20 extra keys: %d, %v", len(out.Extra), err)
	}
}

func compress(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zlib.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

func TestDecodeExtendedErrors(t *testing.T) {
	msg := func(extra ...byte) []byte {
		b := appendMapHeader(nil, 2)
		b = appendStr(b, "")
		b = appendStr(b, "message")
		b = appendStr(b, "subject")
		return append(b, extra...)
	}
	// Values nobody reads may be anything msgpack allows.
	odd := appendMapHeader(nil, 4)
	odd = appendStr(odd, "")
	odd = appendBin(odd, "message")
	odd = append(odd, 0x92, 0x01, 0x81, 0xc0, 0xcb, 1, 2, 3, 4, 5, 6, 7, 8) // key [1, {nil: 1.0}]
	odd = appendStr(odd, "v")
	odd = appendStr(odd, "subject")
	odd = append(odd, 0xd3, 0, 0, 0, 0, 0, 0, 0, 1) // subject: int64 → blank, as PyB
	odd = appendStr(odd, "body")
	odd = append(odd, 0xd8, 1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15) // fixext16
	if got, err := DecodeMessage(EncodingExtended, compress(t, odd)); err != nil || got.Subject != "" || got.Body != "" {
		t.Errorf("odd values: %+v, %v", got, err)
	}

	vote := appendMapHeader(nil, 1)
	vote = appendStr(vote, "")
	vote = appendStr(vote, "vote")
	noType := appendMapHeader(nil, 1)
	noType = appendStr(noType, "subject")
	noType = appendStr(noType, "x")
	deep := bytes.Repeat([]byte{0x91}, 40)
	deepMap := append(append(appendMapHeader(nil, 1), 0x01), append(deep, 0xc0)...)
	for name, data := range map[string][]byte{
		"not zlib":          []byte("Subject:x\nBody:y"),
		"empty":             nil,
		"truncated zlib":    compress(t, msg(0xa1, 'x'))[:10],
		"type vote":         compress(t, vote),
		"type missing":      compress(t, noType),
		"not a map":         compress(t, []byte{0x91, 0xa0}),
		"trailing bytes":    compress(t, append(msg(0xa1, 'x'), 0xc0)),
		"truncated map":     compress(t, msg()),
		"truncated str":     compress(t, msg(0xa5, 'x')),
		"huge length":       compress(t, msg(0xdb, 0xff, 0xff, 0xff, 0xff)),
		"huge map":          compress(t, []byte{0xdf, 0xff, 0xff, 0xff, 0xff}),
		"reserved byte":     compress(t, msg(0xc1)),
		"too deep":          compress(t, deepMap),
		"empty msgpack":     compress(t, nil),
		"preset dictionary": {0x78, 0xbb, 0, 0, 0, 1},
	} {
		if _, err := DecodeMessage(EncodingExtended, data); !errors.Is(err, ErrExtended) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// The decompression cap is MaxDecompressed bytes exactly, as PyBitmessage's
// loop accepts len == maxsize and refuses one more byte.
func TestDecodeExtendedLimit(t *testing.T) {
	build := func(total int) []byte {
		head := appendMapHeader(nil, 2)
		head = appendStr(head, "")
		head = appendStr(head, "message")
		head = appendStr(head, "body")
		head = append(head, 0xc6, 0, 0, 0, 0) // bin32, length filled below
		n := total - len(head)
		head[len(head)-4], head[len(head)-3], head[len(head)-2], head[len(head)-1] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
		return append(head, make([]byte, n)...)
	}
	if got, err := DecodeMessage(EncodingExtended, compress(t, build(MaxDecompressed))); err != nil || len(got.Body) != MaxDecompressed-20 {
		t.Errorf("exactly the cap: %d, %v", len(got.Body), err)
	}
	if _, err := DecodeMessage(EncodingExtended, compress(t, build(MaxDecompressed+1))); !errors.Is(err, ErrExtended) {
		t.Errorf("one byte over the cap: %v", err)
	}
}
