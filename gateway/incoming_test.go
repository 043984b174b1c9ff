package gateway

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
)

var testInv = func() (h [32]byte) {
	copy(h[:], bytes.Repeat([]byte{0xab, 0x01}, 16))
	return h
}()

func baseIncoming() Incoming {
	return Incoming{
		Domain:  domain,
		From:    addrV4,
		To:      addrV3,
		Subject: "Hello",
		Body:    "Line one\nLine two",
		Date:    time.Date(2026, 11, 22, 10, 30, 0, 0, time.UTC),
		InvHash: testInv,
		Kind:    IncomingMsg,
	}
}

// parsed is a built message read back with go-message.
type parsed struct {
	h      mail.Header
	body   string
	fields []string // header field names in order
}

func parseBuilt(t testing.TB, raw []byte) parsed {
	t.Helper()
	e, err := message.Read(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("built message does not parse: %v\n%s", err, raw)
	}
	b, err := io.ReadAll(e.Body)
	if err != nil {
		t.Fatalf("body: %v", err)
	}
	p := parsed{h: mail.Header{Header: e.Header}, body: string(b)}
	for f := e.Header.Fields(); f.Next(); {
		p.fields = append(p.fields, f.Key())
	}
	return p
}

func TestBuildIncomingMsg(t *testing.T) {
	in := baseIncoming()
	in.MessageID = "orig.1@sender.example"
	in.InReplyTo = "parent@x.org"
	in.References = []string{"root@x.org", "parent@x.org"}
	raw, err := BuildIncoming(in)
	if err != nil {
		t.Fatal(err)
	}
	p := parseBuilt(t, raw)
	want := []string{"From", "To", "Subject", "Date", "Message-Id", "In-Reply-To", "References", "Mime-Version",
		"Content-Type", "Content-Transfer-Encoding", "X-Bitmessage-Sender", "X-Bitmessage-Verified", "X-Bitmessage-Inventory", "X-Bitmessage-Kind"}
	if !reflect.DeepEqual(p.fields, want) {
		t.Errorf("fields = %v", p.fields)
	}
	from, _ := p.h.AddressList("From")
	to, _ := p.h.AddressList("To")
	if len(from) != 1 || from[0].Address != addrV4+"@"+domain || len(to) != 1 || to[0].Address != addrV3+"@"+domain {
		t.Errorf("From %v To %v", from, to)
	}
	if d, err := p.h.Date(); err != nil || !d.Equal(in.Date) {
		t.Errorf("Date = %v, %v", d, err)
	}
	if id, _ := p.h.MessageID(); id != in.MessageID {
		t.Errorf("Message-ID = %q", id)
	}
	if irt, _ := p.h.MsgIDList("In-Reply-To"); !reflect.DeepEqual(irt, []string{"parent@x.org"}) {
		t.Errorf("In-Reply-To = %v", irt)
	}
	if refs, _ := p.h.MsgIDList("References"); !reflect.DeepEqual(refs, in.References) {
		t.Errorf("References = %v", refs)
	}
	if p.h.Get("Content-Transfer-Encoding") != "7bit" || p.body != "Line one\r\nLine two\r\n" {
		t.Errorf("CTE %q body %q", p.h.Get("Content-Transfer-Encoding"), p.body)
	}
	if p.h.Get("X-Bitmessage-Sender") != addrV4 || p.h.Get("X-Bitmessage-Verified") != "signature ok" ||
		p.h.Get("X-Bitmessage-Inventory") != hex.EncodeToString(testInv[:]) || p.h.Get("X-Bitmessage-Kind") != "msg" {
		t.Errorf("X- headers wrong:\n%s", raw)
	}
	if mt, params, _ := p.h.ContentType(); mt != "text/plain" || params["charset"] != "utf-8" {
		t.Errorf("Content-Type %s %v", mt, params)
	}
}

func TestBuildIncomingMessageIDFallback(t *testing.T) {
	for _, carried := range []string{"", "bad id@x", "a@b\r\nBcc: x@y"} {
		in := baseIncoming()
		in.MessageID = carried
		in.InReplyTo = "<>"
		in.References = []string{"ok@x.org", "not valid", "x@y\r\nZ: 1"}
		raw, err := BuildIncoming(in)
		if err != nil {
			t.Fatal(err)
		}
		p := parseBuilt(t, raw)
		if id, _ := p.h.MessageID(); id != hex.EncodeToString(testInv[:])+"@"+domain {
			t.Errorf("carried %q: Message-ID = %q", carried, id)
		}
		if p.h.Has("In-Reply-To") {
			t.Error("invalid In-Reply-To written")
		}
		if refs, _ := p.h.MsgIDList("References"); !reflect.DeepEqual(refs, []string{"ok@x.org"}) {
			t.Errorf("References = %v", refs)
		}
		if len(p.fields) != 13 {
			t.Errorf("fields = %v", p.fields)
		}
	}
}

func TestBuildIncomingChanAndBroadcast(t *testing.T) {
	in := baseIncoming()
	in.Kind = IncomingChan
	in.To = addrChan
	in.ChanLabel = "[chan] Grüße \"quoted\"\r\nBcc: x@y"
	raw, err := BuildIncoming(in)
	if err != nil {
		t.Fatal(err)
	}
	p := parseBuilt(t, raw)
	to, err := p.h.AddressList("To")
	if err != nil || len(to) != 1 || to[0].Address != addrChan+"@"+domain || to[0].Name != `[chan] Grüße "quoted"  Bcc: x@y` {
		t.Errorf("chan To = %v, %v (%q)", to, err, p.h.Get("To"))
	}
	if p.h.Has("Bcc") || p.h.Get("X-Bitmessage-Kind") != "chan" {
		t.Error("label injected a header or kind wrong")
	}

	in = baseIncoming()
	in.Kind = IncomingBroadcast
	in.To = ""
	raw, err = BuildIncoming(in)
	if err != nil {
		t.Fatal(err)
	}
	p = parseBuilt(t, raw)
	if p.h.Get("To") != "undisclosed-recipients:;" {
		t.Errorf("broadcast To = %q", p.h.Get("To"))
	}
	if to, err := p.h.AddressList("To"); err != nil || len(to) != 0 {
		t.Errorf("broadcast To parses as %v, %v", to, err)
	}
}

func TestBuildIncomingEncodings(t *testing.T) {
	long := strings.Repeat("x", 2000)
	tests := []struct {
		name, subject, body string
		cte                 string
		wantSubject         string
		wantBody            string
	}{
		{"ascii", "Plain", "a\n\tb\r\nc\rd", "7bit", "Plain", "a\n\tb\nc\nd\n"},
		{"long line", "Long", long, "quoted-printable", "Long", long + "\n"},
		{"latin", "Grüße aus Köln", "Café, crème brûlée.", "quoted-printable", "Grüße aus Köln", "Café, crème brûlée.\n"},
		{"cyrillic", "Привет", "Привет, как дела? Всё хорошо.", "base64", "Привет", "Привет, как дела? Всё хорошо.\n"},
		{"invalid utf-8", "bad\xff", "bad\xfe\xffbody", "quoted-printable", "bad\uFFFD", "bad\uFFFDbody\n"},
		{"control chars", "a\x00b", "x\x00y\x1bz", "7bit", "a b", "xyz\n"},
		{"injection", "Hi\r\nBcc: victim@x.org\r\n\r\nfake body", "real", "7bit", "Hi  Bcc: victim@x.org    fake body", "real\n"},
		{"encoded word lookalike", "=?utf-8?q?x?= plain", "b", "7bit", "=?utf-8?q?x?= plain", "b\n"},
		{"empty", "", "", "7bit", "", "\n"},
		{"trailing newlines kept", "s", "body\n\n\n", "7bit", "s", "body\n\n\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := baseIncoming()
			in.Subject, in.Body = tc.subject, tc.body
			raw, err := BuildIncoming(in)
			if err != nil {
				t.Fatal(err)
			}
			p := parseBuilt(t, raw)
			if cte := p.h.Get("Content-Transfer-Encoding"); cte != tc.cte {
				t.Errorf("CTE = %q, want %q", cte, tc.cte)
			}
			if s, err := p.h.Subject(); err != nil || s != tc.wantSubject {
				t.Errorf("Subject = %q, %v, want %q", s, err, tc.wantSubject)
			}
			if got := strings.ReplaceAll(p.body, "\r\n", "\n"); got != tc.wantBody {
				t.Errorf("body = %q, want %q", got, tc.wantBody)
			}
			if len(p.fields) != 12 {
				t.Errorf("fields = %v", p.fields)
			}
			for _, line := range strings.Split(string(raw), "\r\n") {
				if len(line) > 998 {
					t.Fatalf("line of %d bytes", len(line))
				}
			}
		})
	}
}

func TestBuildIncomingErrors(t *testing.T) {
	mod := func(f func(*Incoming)) Incoming {
		in := baseIncoming()
		f(&in)
		return in
	}
	tests := []struct {
		in   Incoming
		want error
	}{
		{mod(func(in *Incoming) { in.Domain = "" }), ErrBadDomain},
		{mod(func(in *Incoming) { in.Domain = "bad domain\r\n" }), ErrBadDomain},
		{mod(func(in *Incoming) { in.Domain = "-x.org" }), ErrBadDomain},
		{mod(func(in *Incoming) { in.From = "alice@x.org" }), ErrBadAddress},
		{mod(func(in *Incoming) { in.From = "BM-0OIl" }), ErrBadAddress},
		{mod(func(in *Incoming) { in.To = "BM-abc>\r\nBcc: x" }), ErrBadAddress},
		{mod(func(in *Incoming) { in.Date = time.Time{} }), ErrNoDate},
		{mod(func(in *Incoming) { in.Kind = "email" }), ErrBadKind},
	}
	for i, tc := range tests {
		if _, err := BuildIncoming(tc.in); !errors.Is(err, tc.want) {
			t.Errorf("case %d: err = %v, want %v", i, err, tc.want)
		}
	}
}

// FuzzBuildIncoming checks that no sender-controlled text can change the
// header structure of the mail, and that the text survives the trip.
func FuzzBuildIncoming(f *testing.F) {
	f.Add("Hello", "Body", "id@x.org", "parent@x.org", "root@x.org parent@x.org", "[chan] test", uint8(0))
	f.Add("Hi\r\nBcc: x@y", "a\r\n.\r\nb", "a@b\r\nX: y", "<>", "", "label\r\nX: y", uint8(1))
	f.Add("Привет", "Привет, мир", "", "", "", "", uint8(2))
	f.Add(strings.Repeat("long ", 300), strings.Repeat("é", 3000), "", "", "", "", uint8(0))
	f.Fuzz(func(t *testing.T, subject, body, msgID, inReplyTo, refs, label string, kind uint8) {
		in := baseIncoming()
		in.Subject, in.Body, in.MessageID, in.InReplyTo = subject, body, msgID, inReplyTo
		in.References = strings.Fields(refs)
		in.Kind = []IncomingKind{IncomingMsg, IncomingChan, IncomingBroadcast}[kind%3]
		in.ChanLabel = label
		raw, err := BuildIncoming(in)
		if err != nil {
			t.Fatalf("BuildIncoming: %v", err)
		}
		p := parseBuilt(t, raw)
		n := 12
		if p.h.Has("In-Reply-To") {
			n++
		}
		if p.h.Has("References") {
			n++
		}
		if len(p.fields) != n {
			t.Fatalf("header fields %v", p.fields)
		}
		if id, err := p.h.MessageID(); err != nil || !ValidMsgID(id) {
			t.Fatalf("Message-ID %q: %v", id, err)
		}
		// The subject round-trips unless folding had to break a run of
		// more than ~900 bytes without white space.
		if s, err := p.h.Subject(); err != nil {
			t.Fatalf("Subject: %v", err)
		} else if want := oneLine(subject); s != want && !hasLongWord(want) {
			t.Fatalf("Subject = %q, want %q", s, want)
		}
		want := strings.ReplaceAll(cleanForCompare(body), "\n", "\r\n")
		if p.body != want {
			t.Fatalf("body = %q, want %q", p.body, want)
		}
	})
}

func hasLongWord(s string) bool {
	for _, w := range strings.Fields(s) {
		if len(w) > 60 {
			return true
		}
	}
	return false
}

// cleanForCompare is what BuildIncoming promises to keep of a body.
func cleanForCompare(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.Map(func(r rune) rune {
		switch {
		case r == '\r':
			return '\n'
		case r == '\n' || r == '\t':
			return r
		case r < ' ' || r == 0x7f:
			return -1
		}
		return r
	}, s)
	return strings.TrimRight(s, "\n") + "\n"
}
