package object

import (
	"bytes"
	"compress/zlib"
	"strings"
	"testing"
)

// mp is a tiny msgpack writer for building maps the way other clients do.
type mp []byte

func (m mp) str(s string) mp  { return appendStr(m, s) }
func (m mp) bin(b []byte) mp  { return appendBin(m, b) }
func (m mp) mapN(n int) mp    { return appendMapHeader(m, n) }
func (m mp) arrN(n int) mp    { return appendArrayHeader(m, n) }
func (m mp) raw(b ...byte) mp { return append(m, b...) }
func (m mp) zlib(t testing.TB) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zlib.NewWriter(&buf)
	zw.Write(m)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// jabitFile is one "files" entry as Jabit's Message.pack writes it.
func (m mp) jabitFile(name string, data []byte, typ, disp string) mp {
	return m.mapN(4).str("name").str(name).str("data").bin(data).str("type").str(typ).str("disposition").str(disp)
}

func TestExtendedFilesRoundTrip(t *testing.T) {
	in := Extended{Subject: "Fotos", Body: "anbei\n", Extra: map[string]string{"messageid": "a@b"},
		Files: []File{
			{Name: "Übersicht.pdf", Type: "application/pdf", Disposition: DispositionAttachment, Data: []byte{0, 1, 2, 0xff}},
			{Name: "logo.png", Type: "image/png", Disposition: DispositionInline, Data: bytes.Repeat([]byte{7}, 70000)},
		},
		Parents: [][32]byte{{1, 2, 3}, {4}},
	}
	b, err := EncodeExtended(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := DecodeMessage(EncodingExtended, b)
	if err != nil {
		t.Fatal(err)
	}
	if out.Subject != in.Subject || out.Body != in.Body || out.Extra["messageid"] != "a@b" || len(out.Dropped) != 0 {
		t.Fatalf("decoded %+v", out)
	}
	if len(out.Files) != 2 || len(out.Parents) != 2 || out.Parents[0] != in.Parents[0] || out.Parents[1] != in.Parents[1] {
		t.Fatalf("files %d parents %v", len(out.Files), out.Parents)
	}
	for i, f := range out.Files {
		w := in.Files[i]
		if f.Name != w.Name || f.Type != w.Type || f.Disposition != w.Disposition || !bytes.Equal(f.Data, w.Data) {
			t.Errorf("file %d: %q %q %q %d bytes", i, f.Name, f.Type, f.Disposition, len(f.Data))
		}
	}
	if _, err := EncodeExtended(Extended{Extra: map[string]string{"files": "x"}}); err == nil {
		t.Error("extra key files accepted")
	}
	if _, err := EncodeExtended(Extended{Files: []File{{Name: "a", Disposition: "weird"}}}); err == nil {
		t.Error("unknown disposition encoded")
	}
	if _, err := EncodeExtended(Extended{Body: strings.Repeat("x", MaxDecompressed)}); err == nil {
		t.Error("a map over MaxDecompressed encoded")
	}
}

// TestJabitFilesLayout: a map as Jabit writes it (subject and body as
// str, files and parents) decodes.
func TestJabitFilesLayout(t *testing.T) {
	parent := bytes.Repeat([]byte{9}, 32)
	m := mp(nil).mapN(5).str("").str("message").str("subject").str("Grüße").str("body").str("Text").
		str("files").arrN(2).
		jabitFile("a.txt", []byte("hello"), "text/plain", "attachment").
		jabitFile("b.gif", []byte("GIF89a"), "image/gif", "inline").
		str("parents").arrN(1).bin(parent)
	e, err := DecodeMessage(EncodingExtended, m.zlib(t))
	if err != nil {
		t.Fatal(err)
	}
	if e.Subject != "Grüße" || e.Body != "Text" || len(e.Files) != 2 || len(e.Dropped) != 0 || len(e.Parents) != 1 || !bytes.Equal(e.Parents[0][:], parent) {
		t.Fatalf("%+v", e)
	}
	if f := e.Files[1]; f.Name != "b.gif" || f.Type != "image/gif" || f.Disposition != DispositionInline || string(f.Data) != "GIF89a" {
		t.Fatalf("file %+v", f)
	}
}

// TestHostileFiles: malformed entries are dropped, each with a reason; the
// message and the good entries survive.
func TestHostileFiles(t *testing.T) {
	m := mp(nil).mapN(5).str("").str("message").str("subject").str("s").str("body").str("b").
		str("files").arrN(8).
		raw(0x2a).                                                                       // not a map
		mapN(2).str("data").bin([]byte("x")).str("type").str("a/b").                     // no name
		mapN(2).str("name").raw(0x01).str("data").bin([]byte("x")).                      // name not text
		mapN(1).str("name").str("nodata").                                               // no data
		mapN(3).str("name").str("d").str("data").raw(0xc3).str("type").str("a/b").       // data not bytes
		jabitFile("evil", []byte("x"), "a/b", "form-data").                              // unknown disposition
		mapN(3).str("name").str("t").str("data").bin([]byte("x")).str("type").raw(0x90). // type not text
		jabitFile("good.bin", []byte{1, 2}, "application/octet-stream", "attachment").
		str("parents").arrN(2).bin([]byte("short")).raw(0x05)
	e, err := DecodeMessage(EncodingExtended, m.zlib(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Files) != 1 || e.Files[0].Name != "good.bin" {
		t.Fatalf("files %+v", e.Files)
	}
	if len(e.Dropped) != 8 || len(e.Parents) != 0 {
		t.Fatalf("dropped %q, parents %v", e.Dropped, e.Parents)
	}
	for _, want := range []string{"not a map", "no name", "not text", "no data", "not bytes", "unknown disposition", "type is not text", "not 32-byte"} {
		if !strings.Contains(strings.Join(e.Dropped, "|"), want) {
			t.Errorf("no reason %q in %q", want, e.Dropped)
		}
	}
	// files that is not an array at all.
	m = mp(nil).mapN(4).str("").str("message").str("subject").str("s").str("body").str("b").str("files").str("nope")
	if e, err := DecodeMessage(EncodingExtended, m.zlib(t)); err != nil || len(e.Files) != 0 || len(e.Dropped) != 1 {
		t.Fatalf("files as str: %+v, %v", e, err)
	}
}

// FuzzDecodeFiles feeds arbitrary msgpack to the "files" decoder: it must
// never panic, and what it keeps must be well formed.
func FuzzDecodeFiles(f *testing.F) {
	f.Add([]byte(mp(nil).arrN(1).jabitFile("a", []byte("x"), "text/plain", "inline")))
	f.Add([]byte(mp(nil).arrN(2).raw(0x2a).mapN(1).str("name").str("n")))
	f.Add([]byte(mp(nil).arrN(1).mapN(2).str("name").mapN(1).str("x").arrN(0).str("data").bin(nil)))
	f.Add([]byte{0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, files []byte) {
		doc := append(mp(nil).mapN(2).str("").str("message").str("files"), files...)
		fields, err := unpackStringMap(doc)
		if err != nil {
			return
		}
		got, dropped := decodeFiles(fields["files"])
		if len(got) > MaxFiles {
			t.Fatalf("%d files kept", len(got))
		}
		total := 0
		for _, f := range got {
			if f.Name == "" || (f.Disposition != DispositionAttachment && f.Disposition != DispositionInline) {
				t.Fatalf("kept %+v", f)
			}
			total += len(f.Data)
		}
		if total > len(doc) {
			t.Fatalf("%d bytes of data from %d bytes of input", total, len(doc))
		}
		_ = dropped
		parents, _ := decodeParents(fields["files"])
		if len(parents) > 64 {
			t.Fatalf("%d parents", len(parents))
		}
	})
}
