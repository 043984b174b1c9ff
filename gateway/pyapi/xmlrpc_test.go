package pyapi

import (
	"bytes"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
)

func TestDecodeCall(t *testing.T) {
	body := `<?xml version='1.0'?>
<methodCall>
<methodName>m</methodName>
<params>
<param><value>untyped &amp; text</value></param>
<param><value><string>s</string></value></param>
<param><value><int>-7</int></value></param>
<param><value><i4>4</i4></value></param>
<param><value><i8>8589934592</i8></value></param>
<param><value><boolean>1</boolean></value></param>
<param><value><double>1.5</double></value></param>
<param><value><base64>aGk=</base64></value></param>
<param><value><array><data><value>a</value><value><int>1</int></value></data></array></value></param>
<param><value><struct><member><name>k</name><value><nil/></value></member></struct></value></param>
<param><value></value></param>
<param><value><string/></value></param>
</params>
</methodCall>`
	c, err := DecodeCall(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	want := []any{"untyped & text", "s", int64(-7), int64(4), int64(8589934592), true, 1.5, []byte("hi"),
		[]any{"a", int64(1)}, map[string]any{"k": nil}, "", ""}
	if c.Method != "m" || !reflect.DeepEqual(c.Params, want) {
		t.Fatalf("got %q %#v", c.Method, c.Params)
	}
	// ISO-8859-1, as some clients declare.
	c, err = DecodeCall(strings.NewReader("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><methodCall><methodName>m</methodName><params><param><value>caf\xe9</value></param></params></methodCall>"))
	if err != nil || c.Params[0] != "café" {
		t.Fatalf("latin-1: %#v %v", c.Params, err)
	}
	// No params at all.
	c, err = DecodeCall(strings.NewReader(`<methodCall><methodName>x</methodName></methodCall>`))
	if err != nil || c.Method != "x" || len(c.Params) != 0 {
		t.Fatalf("got %+v %v", c, err)
	}
}

func TestDecodeCallRefuses(t *testing.T) {
	deep := strings.Repeat("<value><array><data>", maxDepth+2) + strings.Repeat("</data></array></value>", maxDepth+2)
	for name, body := range map[string]string{
		"empty":       ``,
		"not xml":     `hello`,
		"wrong root":  `<methodResponse/>`,
		"no name":     `<methodCall><params/></methodCall>`,
		"bad int":     `<methodCall><methodName>x</methodName><params><param><value><int>x</int></value></param></params></methodCall>`,
		"i4 overflow": `<methodCall><methodName>x</methodName><params><param><value><i4>4294967296</i4></value></param></params></methodCall>`,
		"bad bool":    `<methodCall><methodName>x</methodName><params><param><value><boolean>2</boolean></value></param></params></methodCall>`,
		"bad base64":  `<methodCall><methodName>x</methodName><params><param><value><base64>!!!</base64></value></param></params></methodCall>`,
		"unknown":     `<methodCall><methodName>x</methodName><params><param><value><blob/></value></param></params></methodCall>`,
		"unclosed":    `<methodCall><methodName>x</methodName><params><param><value>`,
		"trailing":    `<methodCall><methodName>x</methodName></methodCall><x/>`,
		"too deep":    `<methodCall><methodName>x</methodName><params><param>` + deep + `</param></params></methodCall>`,
	} {
		if _, err := DecodeCall(strings.NewReader(body)); !errors.Is(err, ErrParse) {
			t.Errorf("%s: err = %v, want ErrParse", name, err)
		}
	}
}

func TestEncodeResponseRoundTrip(t *testing.T) {
	for _, v := range []any{"a <b> & c\r\n", int64(3), true, 2.5, []byte{0, 1}, nil, []any{"x", int64(1)},
		map[string]any{"faultCode": int64(1)}, "bad \x00 \xff"} {
		b := EncodeResponse(v)
		// The response parses as a call's params do.
		inner := bytes.Replace(bytes.Replace(b, []byte("methodResponse"), []byte("methodCall"), 2),
			[]byte("<params>"), []byte("<methodName>r</methodName><params>"), 1)
		c, err := DecodeCall(bytes.NewReader(inner))
		if err != nil {
			t.Fatalf("%#v: %v\n%s", v, err, b)
		}
		got := c.Params[0]
		if s, ok := v.(string); ok && strings.Contains(s, "\x00") {
			if got != "bad \uFFFD \uFFFD" {
				t.Errorf("got %q", got)
			}
			continue
		}
		if !reflect.DeepEqual(got, v) {
			t.Errorf("round trip %#v → %#v", v, got)
		}
	}
}

func TestPyJSON(t *testing.T) {
	got := pyJSON(obj{{"a", "é\"\n"}, {"b", []any{}}, {"c", []any{obj{{"d", int64(1)}, {"e", true}}}}, {"f", "\U0001F600"}})
	want := "{\n    \"a\": \"\\u00e9\\\"\\n\",\n    \"b\": [],\n    \"c\": [\n        {\n            \"d\": 1,\n            \"e\": true\n        }\n    ],\n    \"f\": \"\\ud83d\\ude00\"\n}"
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	if got := framed("x", []obj{{{"k", 1}}, {{"k", 2}}}); got != "{\"x\":[{\n    \"k\": 1\n},{\n    \"k\": 2\n}]}" {
		t.Fatalf("framed: %q", got)
	}
}

func TestA2BBase64(t *testing.T) {
	for in, want := range map[string]string{
		"aGk=": "hi", "aGk": "", "aGVsbG8=": "hello", "aGV sbG8=": "hello", "aGVsbG8=junk": "hello",
		"": "", "a": "", "aGk=\n": "hi", "aG=k=": "hi",
	} {
		b, ok := a2bBase64(in)
		bad := want == "" && in != ""
		if bad {
			if ok {
				t.Errorf("%q: decoded %q, want Incorrect padding", in, b)
			}
			continue
		}
		if !ok || string(b) != want {
			t.Errorf("%q: got %q %v, want %q", in, b, ok, want)
		}
	}
}

func FuzzDecodeCall(f *testing.F) {
	for _, s := range []string{
		`<methodCall><methodName>x</methodName><params><param><value><string>a</string></value></param></params></methodCall>`,
		`<methodCall><methodName>x</methodName><params><param><value><array><data><value><struct><member><name>a</name><value><i4>1</i4></value></member></struct></value></data></array></value></param></params></methodCall>`,
		`<?xml version="1.0" encoding="iso-8859-1"?><methodCall/>`,
		`<methodCall><methodName>x</methodName><params><param><value><base64>aGk=</base64></value></param></params></methodCall>`,
		`<methodCall><!-- c --><methodName>x</methodName><params><param><value><double>1e308</double></value></param></params></methodCall>`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeCall(bytes.NewReader(b))
		if err != nil {
			if !errors.Is(err, ErrParse) {
				t.Fatalf("error not ErrParse: %v", err)
			}
			return
		}
		// Whatever decodes encodes again into something that decodes.
		out := EncodeResponse(c.Params)
		inner := bytes.Replace(bytes.Replace(out, []byte("methodResponse"), []byte("methodCall"), 2),
			[]byte("<params>"), []byte("<methodName>r</methodName><params>"), 1)
		if _, err := DecodeCall(bytes.NewReader(inner)); err != nil {
			t.Fatalf("re-encoded call does not decode: %v\n%s", err, out)
		}
	})
}

// TestREADMEListsMethods: README.md's "PyBitmessage API" names every method.
func TestREADMEListsMethods(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(readme), "## PyBitmessage API")
	if !ok {
		t.Fatal("README.md has no section PyBitmessage API")
	}
	sec, _, _ = strings.Cut(sec, "\n## ")
	for _, m := range Methods() {
		if !strings.Contains(sec, "`"+m+"`") {
			t.Errorf("README.md does not list %s", m)
		}
	}
}
