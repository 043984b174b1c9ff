package gateway

import (
	"bytes"
	"compress/zlib"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message/mail"

	"github.com/bmgate/bmgate/bmcore/identity"
	"github.com/bmgate/bmgate/bmcore/object"
	"github.com/bmgate/bmgate/bmcore/wire"
	"github.com/bmgate/bmgate/mailmap"
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

// attachmentMail is a mail from alice to bob with a text and the given
// parts (each a full MIME part without the boundary line).
func attachmentMail(from, to string, parts ...string) string {
	var b strings.Builder
	b.WriteString("From: " + from + "\r\nTo: " + to + "\r\nSubject: with files\r\nMessage-ID: <f1@client.test>\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"xyz\"\r\n\r\n--xyz\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee attached.\r\n")
	for _, p := range parts {
		b.WriteString("--xyz\r\n" + p)
	}
	b.WriteString("--xyz--\r\n")
	return b.String()
}

// base64Part is an attachment part carrying data.
func base64Part(typ, disposition string, data []byte) string {
	enc := base64.StdEncoding.EncodeToString(data)
	var lines []string
	for len(enc) > 76 {
		lines, enc = append(lines, enc[:76]), enc[76:]
	}
	lines = append(lines, enc)
	return "Content-Type: " + typ + "\r\nContent-Disposition: " + disposition + "\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		strings.Join(lines, "\r\n") + "\r\n"
}

// TestSubmitFiles: a mail with attachments goes as encoding 3 with Jabit's
// "files" (even to an address never seen writing 3: nothing else carries
// them), bytes, names, types and dispositions as submitted, and a body
// that lists them for PyBitmessage users.
func TestSubmitFiles(t *testing.T) {
	e := newSendEnv(t, filepath.Join(t.TempDir(), "g.db"), 1, nil)
	ctx := context.Background()
	bin := make([]byte, 20<<10)
	rand.Read(bin)
	from, to := e.aliceID.Address.String()+"@bm.test", e.bob.Address.String()+"@bm.test"
	raw := attachmentMail(from, to,
		base64Part("application/octet-stream", "attachment; filename=\"random.bin\"", bin),
		base64Part("text/plain; charset=utf-8", "attachment; filename*=utf-8''%C3%9Cbersicht.txt", []byte("Grüße\n")))
	e.submitRaw(raw)
	drive(t, ctx, e.g)
	msgs := e.pub.ofType(wire.ObjectMsg)
	if len(msgs) != 1 {
		t.Fatalf("%d msgs", len(msgs))
	}
	m, _, err := object.DecryptMsg(msgs[0], []*identity.Identity{e.bob})
	if err != nil {
		t.Fatal(err)
	}
	if m.Encoding != 3 {
		t.Fatalf("encoding %d", m.Encoding)
	}
	c, err := object.DecodeMessage(3, m.Message)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Files) != 2 || !bytes.Equal(c.Files[0].Data, bin) || c.Files[0].Name != "random.bin" ||
		c.Files[1].Name != "Übersicht.txt" || c.Files[1].Type != "text/plain; charset=utf-8" || string(c.Files[1].Data) != "Grüße\n" {
		t.Fatalf("files %+v", c.Files)
	}
	want := "See attached.\n\n[This message has 2 attachments that your client may not show: random.bin (20 KB), Übersicht.txt (8 bytes)]\n"
	if c.Body != want || c.Extra["messageid"] != "f1@client.test" {
		t.Fatalf("body %q extras %v", c.Body, c.Extra)
	}
}

// TestSubmitTooLargeForOneObject: a mail whose compressed content cannot
// fit in one object is refused at DATA (552 5.3.4, naming the limit and
// the size), and no outbox row is made.
func TestSubmitTooLargeForOneObject(t *testing.T) {
	e := newSendEnv(t, filepath.Join(t.TempDir(), "g.db"), 1, nil)
	bin := make([]byte, 300<<10)
	rand.Read(bin)
	from, to := e.aliceID.Address.String()+"@bm.test", e.bob.Address.String()+"@bm.test"
	raw := attachmentMail(from, to, base64Part("application/octet-stream", "attachment; filename=\"big.bin\"", bin))
	rcpt, err := e.g.CheckRecipient(context.Background(), e.alice, to)
	if err != nil {
		t.Fatal(err)
	}
	err = e.g.Submit(context.Background(), Submission{User: e.alice, From: e.aliceID.Address.String(), Recipients: []Recipient{rcpt}, Raw: []byte(raw)})
	var ge *Error
	if !errors.As(err, &ge) || ge.Code != 552 || ge.Enhanced != [3]int{5, 3, 4} ||
		!strings.Contains(ge.Message, "bytes compressed") || !strings.Contains(ge.Message, strconv.Itoa(maxObjectContent)) {
		t.Fatalf("err = %v", err)
	}
	if items, err := e.store.UserOutbox(context.Background(), e.alice.ID); err != nil || len(items) != 0 {
		t.Fatalf("outbox: %d rows, %v", len(items), err)
	}
}

// TestQueuedPoWCap: past the operator's cap on a user's queued proof of
// work, a submission is refused with a 4xx that says why.
func TestQueuedPoWCap(t *testing.T) {
	e := newSendEnv(t, filepath.Join(t.TempDir(), "g.db"), 1, func(c *Config) { c.MaxQueuedPoWPerUser = time.Millisecond })
	from, to := e.aliceID.Address.String()+"@bm.test", e.bob.Address.String()+"@bm.test"
	rcpt, err := e.g.CheckRecipient(context.Background(), e.alice, to)
	if err != nil {
		t.Fatal(err)
	}
	raw := "From: " + from + "\r\nTo: " + to + "\r\nSubject: s\r\n\r\nhello\r\n"
	err = e.g.Submit(context.Background(), Submission{User: e.alice, From: e.aliceID.Address.String(), Recipients: []Recipient{rcpt}, Raw: []byte(raw)})
	var ge *Error
	if !errors.As(err, &ge) || ge.Code != 452 || !ge.Temporary || !strings.Contains(ge.Message, "proof of work") || !strings.Contains(ge.Message, "limit") {
		t.Fatalf("err = %v", err)
	}
	if items, _ := e.store.UserOutbox(context.Background(), e.alice.ID); len(items) != 0 {
		t.Fatalf("%d rows", len(items))
	}
	if d := e.g.PoWEstimate(context.Background(), mailmap.OutboxItem{State: mailmap.OutboxQueued, Kind: mailmap.OutboxMsg,
		ToAddress: e.bob.Address.String(), Body: "hello", TTL: time.Hour}); d <= 0 {
		t.Fatalf("PoWEstimate = %v", d)
	}
}

// submitRaw submits a whole mail from alice to bob.
func (e *sendEnv) submitRaw(raw string) {
	e.t.Helper()
	rcpt, err := e.g.CheckRecipient(context.Background(), e.alice, e.bob.Address.String()+"@bm.test")
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.g.Submit(context.Background(), Submission{User: e.alice, From: e.aliceID.Address.String(), Recipients: []Recipient{rcpt}, Raw: []byte(raw)}); err != nil {
		e.t.Fatal(err)
	}
}

// TestFilesInBroadcastsAndChans: broadcasts and chan posts carry files the
// same way, both ways.
func TestFilesInBroadcastsAndChans(t *testing.T) {
	e := newSendEnv(t, filepath.Join(t.TempDir(), "g.db"), 1, nil)
	ctx := context.Background()
	// Receiving: a broadcast with a file from a subscription.
	if _, err := e.store.AddSubscription(ctx, mailmap.Subscription{UserID: e.alice.ID, Address: e.bob.Address.String(), Label: "Bob"}); err != nil {
		t.Fatal(err)
	}
	msg, err := object.EncodeExtended(object.Extended{Subject: "news", Body: "with a file\n",
		Files: []object.File{{Name: "a.bin", Type: "application/octet-stream", Disposition: object.DispositionAttachment, Data: []byte{0, 1, 2}}}})
	if err != nil {
		t.Fatal(err)
	}
	headless, err := object.BuildBroadcast(e.bob, object.MsgContent{Encoding: 3, Message: msg}, e.expires(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	e.put(headless)
	e.once()
	raws := e.folderRaws(e.alice, SubscriptionFolder("Bob", e.bob.Address.String()))
	if len(raws) != 1 {
		t.Fatalf("%d broadcasts filed", len(raws))
	}
	if _, files := readParts(t, raws[0]); len(files) != 1 || files[0].name != "a.bin" || !bytes.Equal(files[0].data, []byte{0, 1, 2}) {
		t.Fatalf("broadcast attachments %+v", files)
	}
	// Sending: a broadcast and a chan post with a file go as encoding 3.
	ch, err := identity.NewRandom(1, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	e.addIdentity(e.alice, ch, mailmap.KindChan, "[chan] files")
	from := e.aliceID.Address.String() + "@bm.test"
	for _, to := range []string{"broadcast@bm.test", ch.Address.String() + "@bm.test"} {
		rcpt, err := e.g.CheckRecipient(ctx, e.alice, to)
		if err != nil {
			t.Fatal(err)
		}
		raw := attachmentMail(from, to, base64Part("image/png", "attachment; filename=\"p.png\"", []byte("PNGDATA")))
		if err := e.g.Submit(ctx, Submission{User: e.alice, From: e.aliceID.Address.String(), Recipients: []Recipient{rcpt}, Raw: []byte(raw)}); err != nil {
			t.Fatal(err)
		}
		it := e.row()
		if it.Encoding != 3 {
			t.Fatalf("%s: encoding %d", to, it.Encoding)
		}
		content, err := contentOf(it)
		if err != nil {
			t.Fatal(err)
		}
		c, err := object.DecodeMessage(3, content)
		if err != nil || len(c.Files) != 1 || string(c.Files[0].Data) != "PNGDATA" || c.Files[0].Type != "image/png" {
			t.Fatalf("%s: %+v, %v", to, c.Files, err)
		}
	}
	drive(t, ctx, e.g)
	if n := len(e.pub.ofType(wire.ObjectBroadcast)); n != 1 {
		t.Fatalf("%d broadcasts published", n)
	}
}

// TestQueuedPoWStatus: the estimate `bmgate status` shows per user (from
// an assumed rate until a proof of work is measured; the fake clock of
// these tests never measures one).
func TestQueuedPoWStatus(t *testing.T) {
	e := newSendEnv(t, filepath.Join(t.TempDir(), "g.db"), 1, nil)
	ctx := context.Background()
	e.submit("first", 0)
	q, measured, err := e.g.QueuedPoW(ctx)
	if err != nil || measured || len(q) != 1 || q[0].User != "alice" || q[0].Rows != 1 || q[0].Estimate <= 0 {
		t.Fatalf("QueuedPoW = %+v, %v, %v", q, measured, err)
	}
	drive(t, ctx, e.g)
	if q, measured, err = e.g.QueuedPoW(ctx); err != nil || len(q) != 0 {
		t.Fatalf("after sending: QueuedPoW = %+v, %v, %v", q, measured, err)
	}
}
