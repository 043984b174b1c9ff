package gateway

import (
	"bytes"
	"compress/zlib"
	"crypto/rand"
	"encoding/binary"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-message/mail"

	"github.com/bmgate/bmgate/bmcore/object"
)

// mpw writes msgpack the way Jabit does (str for text, bin for data).
type mpw struct{ b []byte }

func (m *mpw) hdr(fix, c16, c32 byte, n int) *mpw {
	switch {
	case n < 16 && fix != 0:
		m.b = append(m.b, fix|byte(n))
	case n < 1<<16:
		m.b = binary.BigEndian.AppendUint16(append(m.b, c16), uint16(n))
	default:
		m.b = binary.BigEndian.AppendUint32(append(m.b, c32), uint32(n))
	}
	return m
}
func (m *mpw) mapN(n int) *mpw { return m.hdr(0x80, 0xde, 0xdf, n) }
func (m *mpw) arrN(n int) *mpw { return m.hdr(0x90, 0xdc, 0xdd, n) }
func (m *mpw) str(s string) *mpw {
	if len(s) < 32 {
		m.b = append(m.b, 0xa0|byte(len(s)))
	} else {
		m.b = binary.BigEndian.AppendUint32(append(m.b, 0xdb), uint32(len(s)))
	}
	m.b = append(m.b, s...)
	return m
}
func (m *mpw) bin(d []byte) *mpw {
	m.b = binary.BigEndian.AppendUint32(append(m.b, 0xc6), uint32(len(d)))
	m.b = append(m.b, d...)
	return m
}
func (m *mpw) raw(b ...byte) *mpw { m.b = append(m.b, b...); return m }
func (m *mpw) file(name string, data []byte, typ, disp string) *mpw {
	return m.mapN(4).str("name").str(name).str("data").bin(data).str("type").str(typ).str("disposition").str(disp)
}
func (m *mpw) zlib() []byte {
	var buf bytes.Buffer
	zw := zlib.NewWriter(&buf)
	zw.Write(m.b)
	zw.Close()
	return buf.Bytes()
}

// mailPart is one part of a delivered mail as a client reads it.
type mailPart struct {
	name, typ, disp string
	data            []byte
}

// readParts parses a mail with go-message and returns its text and its
// attachments.
func readParts(t *testing.T, raw string) (text string, files []mailPart) {
	t.Helper()
	r, err := mail.CreateReader(strings.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	for {
		p, err := r.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(p.Body)
		if err != nil {
			t.Fatal(err)
		}
		switch h := p.Header.(type) {
		case *mail.InlineHeader:
			if ct, _, _ := h.ContentType(); ct == "text/plain" && h.Get("Content-Disposition") == "" {
				text += string(b)
				continue
			}
			name, _ := (&mail.AttachmentHeader{Header: h.Header}).Filename()
			ct, _, _ := h.ContentType()
			files = append(files, mailPart{name: name, typ: ct, disp: "inline", data: b})
		case *mail.AttachmentHeader:
			name, err := h.Filename()
			if err != nil {
				t.Fatalf("filename: %v", err)
			}
			ct, _, _ := h.ContentType()
			files = append(files, mailPart{name: name, typ: ct, disp: "attachment", data: b})
		}
	}
	return text, files
}

// TestIncomingJabitFiles: a msg whose "files" are laid out as Jabit writes
// them is delivered with every file a MIME part: name (RFC 2231 when not
// ASCII), type, disposition and bytes as sent.
func TestIncomingJabitFiles(t *testing.T) {
	e := newSendEnv(t, filepath.Join(t.TempDir(), "g.db"), 1, nil)
	bin := make([]byte, 20<<10)
	rand.Read(bin)
	m := (&mpw{}).mapN(4).str("").str("message").str("subject").str("Files from Jabit").str("body").str("see attached\n").
		str("files").arrN(3).
		file("Grüße – ünïcödé.txt", []byte("hallo\n"), "text/plain", "attachment").
		file("random.bin", bin, "application/octet-stream", "attachment").
		file("pic.png", []byte("\x89PNG\r\n\x1a\nfake"), "image/png", "inline")
	headless, err := object.BuildMsg(e.bob, object.PubkeyOf(e.aliceID), e.aliceID.Address,
		object.MsgContent{Encoding: 3, Message: m.zlib()}, e.expires(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	e.put(headless)
	e.once()
	raws := e.folderRaws(e.alice, "INBOX")
	if len(raws) != 1 {
		t.Fatalf("%d messages delivered", len(raws))
	}
	text, files := readParts(t, raws[0])
	if text != "see attached\r\n" {
		t.Errorf("text %q", text)
	}
	want := []mailPart{
		{"Grüße – ünïcödé.txt", "text/plain", "attachment", []byte("hallo\n")},
		{"random.bin", "application/octet-stream", "attachment", bin},
		{"pic.png", "image/png", "inline", []byte("\x89PNG\r\n\x1a\nfake")},
	}
	if len(files) != len(want) {
		t.Fatalf("%d attachments: %+v", len(files), files)
	}
	for i, f := range files {
		w := want[i]
		if f.name != w.name || f.typ != w.typ || f.disp != w.disp || !bytes.Equal(f.data, w.data) {
			t.Errorf("attachment %d: %q %q %q %d bytes, want %q %q %q %d bytes", i, f.name, f.typ, f.disp, len(f.data), w.name, w.typ, w.disp, len(w.data))
		}
	}
	if !strings.Contains(raws[0], "filename*=utf-8''Gr%C3%BC") {
		t.Errorf("non-ASCII name not in RFC 2231 form:\n%.2000s", raws[0])
	}
}

// TestIncomingHostileFiles: malformed "files" entries are dropped with a
// note in the delivered message; the good ones and the text arrive.
func TestIncomingHostileFiles(t *testing.T) {
	e := newSendEnv(t, filepath.Join(t.TempDir(), "g.db"), 1, nil)
	m := (&mpw{}).mapN(4).str("").str("message").str("subject").str("hostile").str("body").str("text").
		str("files").arrN(6).
		raw(0x2a).
		mapN(2).str("data").bin([]byte("x")).str("type").str("a/b").
		file("../../etc/passwd", []byte("root"), "text/plain\r\nX-Evil: 1", "attachment").
		file("x", []byte("x"), "a/b", "form-data").
		mapN(2).str("name").str("no data").str("type").str("a/b").
		file("ok.txt", []byte("fine"), "text/plain", "attachment")
	headless, err := object.BuildMsg(e.bob, object.PubkeyOf(e.aliceID), e.aliceID.Address,
		object.MsgContent{Encoding: 3, Message: m.zlib()}, e.expires(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	e.put(headless)
	e.once()
	raws := e.folderRaws(e.alice, "INBOX")
	if len(raws) != 1 {
		t.Fatalf("%d messages delivered", len(raws))
	}
	if strings.Contains(raws[0], "X-Evil") {
		t.Fatalf("a sender's type reached a header:\n%s", raws[0])
	}
	text, files := readParts(t, raws[0])
	if !strings.HasPrefix(text, "text\r\n\r\n[bmgate: part of this message could not be delivered:") ||
		!strings.Contains(text, "not a map") || !strings.Contains(text, "no name") || !strings.Contains(text, "unknown disposition") ||
		!strings.Contains(text, "no data") {
		t.Errorf("text %q", text)
	}
	if len(files) != 2 || files[0].name != "passwd" || files[0].typ != "application/octet-stream" || files[1].name != "ok.txt" ||
		string(files[1].data) != "fine" {
		t.Errorf("attachments %+v", files)
	}
}
