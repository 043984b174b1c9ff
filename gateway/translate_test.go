package gateway

import (
	"errors"
	"github.com/bmgate/bmgate/bmcore/object"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// msg builds a message from header lines and a body with CRLF line ends.
func msg(headers []string, body string) []byte {
	return []byte(strings.Join(headers, "\r\n") + "\r\n\r\n" + strings.ReplaceAll(body, "\n", "\r\n"))
}

var stdHeaders = []string{
	"From: " + addrV4 + "@" + domain,
	"To: " + addrChan + "@" + domain,
	"Subject: test",
}

func withHeaders(extra ...string) []string {
	return append(append([]string{}, stdHeaders...), extra...)
}

func wantError(t *testing.T, err error, code int, enhanced [3]int, mention string) {
	t.Helper()
	var ge *Error
	if !errors.As(err, &ge) {
		t.Fatalf("err = %v, want *Error %d", err, code)
	}
	if ge.Code != code || ge.Enhanced != enhanced {
		t.Fatalf("err = %d %v %q, want %d %v", ge.Code, ge.Enhanced, ge.Message, code, enhanced)
	}
	if !strings.Contains(ge.Message, mention) {
		t.Fatalf("message %q does not mention %q", ge.Message, mention)
	}
}

func TestParseOutgoingSamples(t *testing.T) {
	tests := []struct {
		file string
		want Outgoing
	}{
		{"thunderbird-flowed", Outgoing{
			From:    addrV4 + "@" + domain,
			Subject: "Grüße aus Köln",
			Body: "On 20/11/2026 Bob wrote:\n" +
				"> This is a long quoted paragraph that Thunderbird wrapped because it was longer than seventy-two characters.\n" +
				"\nHallo Bob, this line is flowed and goes on over the next line.\n" +
				"From the start of a line (space-stuffed).\n\n-- \nAlice\n",
			MessageID:  "3b2c5e1a-1c1e-4a8e-9d0e-1a2b3c4d5e6f@bmgate.local",
			InReplyTo:  "root.1@example.org",
			References: []string{"root.1@example.org"},
			Date:       time.Date(2026, 11, 21, 13, 3, 12, 0, time.UTC),
		}},
		{"gmail-alternative", Outgoing{
			From:      addrV4 + "@" + domain,
			Subject:   "Alternative",
			Body:      "Café at noon? This line is long enough that quoted-printable needs a soft line break to carry it.\n",
			MessageID: "alt.1@mail.example",
		}},
		{"html-only", Outgoing{
			From:    addrV4 + "@" + domain,
			Subject: "HTML only",
			Body: "Hello World & friends,\n\n" +
				"See our page <https://example.org/page?a=1&b=2> and https://example.org/.\n\n" +
				"* first\n* second\n  1. one\n  2. two\n\n" +
				"> quoted\n> text\n\n" +
				"  keep\n    this\n\n" +
				"Café ☺ <tag>\n",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			raw, err := os.ReadFile("testdata/mail/" + tc.file + ".eml")
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseOutgoing(raw)
			if err != nil {
				t.Fatal(err)
			}
			if !got.Date.Equal(tc.want.Date) {
				t.Errorf("Date = %v, want %v", got.Date, tc.want.Date)
			}
			got.Date, tc.want.Date = time.Time{}, time.Time{}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %#v\nwant %#v", got, tc.want)
			}
		})
	}
}

func TestParseOutgoingAttachment(t *testing.T) {
	raw, err := os.ReadFile("testdata/mail/attachment.eml")
	if err != nil {
		t.Fatal(err)
	}
	o, err := ParseOutgoing(raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Files) != 1 || o.Files[0].Name != "report.pdf" || o.Files[0].Type != "application/pdf" ||
		o.Files[0].Disposition != object.DispositionAttachment || string(o.Files[0].Data) != "%PDF-1.4\n" {
		t.Fatalf("files %+v", o.Files)
	}
	if want := "See the file.\n\n[This message has 1 attachment that your client may not show: report.pdf (9 bytes)]\n"; o.Body != want {
		t.Fatalf("body %q, want %q", o.Body, want)
	}
}

// TestParseOutgoingFiles: every part that is not the text becomes a file,
// with its name, type and disposition (the resources of a
// multipart/related inline).
func TestParseOutgoingFiles(t *testing.T) {
	type file struct{ name, typ, disp, data string }
	for _, tc := range []struct {
		name string
		raw  []byte
		body string
		want []file
	}{
		{"forwarded message", msg(withHeaders(`Content-Type: multipart/mixed; boundary="b"`),
			"--b\nContent-Type: text/plain\n\nFYI\n--b\nContent-Type: message/rfc822\n\nSubject: old\n\nold\n--b--\n"),
			"FYI\n", []file{{"part1.eml", "message/rfc822", "attachment", "Subject: old\r\n\r\nold"}}},
		{"related image", msg(withHeaders(`Content-Type: multipart/related; boundary="r"`),
			"--r\nContent-Type: text/html\n\n<img src=cid:x>\n--r\nContent-Type: image/png; name=\"a.png\"\n\nPNG\n--r--\n"),
			"\n", []file{{"a.png", "image/png", "inline", "PNG"}}},
		{"inline image with filename", msg(withHeaders(`Content-Type: multipart/mixed; boundary="b"`),
			"--b\nContent-Type: text/plain\n\nsee\n--b\nContent-Type: image/jpeg\nContent-Disposition: inline; filename=\"a.jpg\"\n\nJPG\n--b--\n"),
			"see\n", []file{{"a.jpg", "image/jpeg", "inline", "JPG"}}},
		{"text file attachment", msg(withHeaders(`Content-Type: multipart/mixed; boundary="b"`),
			"--b\nContent-Type: text/plain\n\nsee\n--b\nContent-Type: text/plain; charset=iso-8859-1; name=\"notes.txt\"\n\nK\xf6ln\n--b--\n"),
			"see\n", []file{{"notes.txt", "text/plain; charset=utf-8", "attachment", "Köln"}}},
		{"UTF-8 name (RFC 2231)", msg(withHeaders(`Content-Type: multipart/mixed; boundary="b"`),
			"--b\nContent-Type: text/plain\n\nsee\n--b\nContent-Type: application/octet-stream\nContent-Disposition: attachment; filename*=utf-8''%C3%9Cbersicht%20%E2%82%AC.bin\nContent-Transfer-Encoding: base64\n\nAAEC/w==\n--b--\n"),
			"see\n", []file{{"Übersicht €.bin", "application/octet-stream", "attachment", "\x00\x01\x02\xff"}}},
		{"top-level image", msg(withHeaders("Content-Type: image/png"), "PNG"), "", []file{{"part1.png", "image/png", "attachment", "PNG"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := ParseOutgoing(tc.raw)
			if err != nil {
				t.Fatal(err)
			}
			if len(o.Files) != len(tc.want) {
				t.Fatalf("files %+v", o.Files)
			}
			for i, f := range o.Files {
				w := tc.want[i]
				if f.Name != w.name || f.Type != w.typ || f.Disposition != w.disp || string(f.Data) != w.data {
					t.Errorf("file %d: %q %q %q %q, want %+v", i, f.Name, f.Type, f.Disposition, f.Data, w)
				}
			}
			if body := trimAttachmentNote(o.Body, o.Files); body != tc.body {
				t.Errorf("body %q (without the note %q), want %q", o.Body, body, tc.body)
			}
		})
	}
}

func TestParseOutgoingBodies(t *testing.T) {
	tests := []struct {
		name    string
		raw     []byte
		body    string
		subject string
	}{
		{"no content type", msg(stdHeaders, "plain text\nsecond line\n\n\n"), "plain text\nsecond line\n\n\n", "test"},
		{"header only", []byte(strings.Join(stdHeaders, "\r\n") + "\r\n"), "", "test"},
		{"latin-1 without charset", msg(withHeaders("Content-Type: text/plain"), "caf\xe9"), "café", "test"},
		{"8-bit utf-8 without charset", msg(withHeaders("Content-Type: text/plain"), "café"), "café", "test"},
		{"invalid utf-8 repaired", msg(withHeaders("Content-Type: text/plain; charset=utf-8"), "a\xff\xfeb"), "a\uFFFDb", "test"},
		{"koi8-r", msg(withHeaders("Content-Type: text/plain; charset=koi8-r"), "\xf0\xd2\xc9\xd7\xc5\xd4"), "Привет", "test"},
		{"base64", msg(withHeaders("Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: base64"), "w6TDtsO8\n"), "äöü", "test"},
		{"control characters dropped", msg(stdHeaders, "a\x00b\x07c\td\re"), "abc\td\ne", "test"},
		{"flowed delsp", msg(withHeaders("Content-Type: text/plain; format=flowed; delsp=yes"), "Zusammen \ngeschrieben\n"), "Zusammengeschrieben\n", "test"},
		{"flowed quote depth change", msg(withHeaders("Content-Type: text/plain; format=flowed"), ">> deep \n> shallow\nnone \n"), ">> deep\n> shallow\nnone\n", "test"},
		{"encoded subject with CRLF", msg([]string{"Subject: =?utf-8?q?a=0D=0ABcc:_x?="}, "b"), "b", "a  Bcc: x"},
		{"unknown charset in subject", msg([]string{"Subject: =?x-unknown?q?abc?="}, "b"), "b", "=?x-unknown?q?abc?="},
		{"mixed with inline footer", msg(withHeaders(`Content-Type: multipart/mixed; boundary="b"`),
			"--b\nContent-Type: text/plain\n\nBody.\n--b\nContent-Type: text/plain\nContent-Disposition: inline\n\n-- \nFooter\n--b--\n"),
			"Body.\n\n-- \nFooter", "test"},
		{"signed keeps content", msg(withHeaders(`Content-Type: multipart/signed; protocol="application/pgp-signature"; micalg=pgp-sha256; boundary="s"`),
			"--s\nContent-Type: text/plain; charset=utf-8\n\nSigned text.\n--s\nContent-Type: application/pgp-signature; name=\"signature.asc\"\nContent-Disposition: attachment; filename=\"signature.asc\"\n\n-----BEGIN PGP SIGNATURE-----\nxx\n-----END PGP SIGNATURE-----\n--s--\n"),
			"Signed text.", "test"},
		{"alternative prefers plain over related html", msg(withHeaders(`Content-Type: multipart/alternative; boundary="a"`),
			"--a\nContent-Type: text/plain\n\nPlain.\n--a\nContent-Type: multipart/related; boundary=\"r\"\n\n--r\nContent-Type: text/html\n\n<p>HTML <img src=\"cid:x\"></p>\n--r\nContent-Type: image/png\nContent-ID: <x>\nContent-Transfer-Encoding: base64\n\niVBORw0KGgo=\n--r--\n--a--\n"),
			"Plain.\n\n[This message has 1 attachment that your client may not show: part1.png (8 bytes)]\n", "test"},
		{"alternative html first plain last", msg(withHeaders(`Content-Type: multipart/alternative; boundary="a"`),
			"--a\nContent-Type: text/html\n\n<p>HTML</p>\n--a\nContent-Type: text/plain\n\nPlain.\n--a--\n"),
			"Plain.", "test"},
		{"alternative html only", msg(withHeaders(`Content-Type: multipart/alternative; boundary="a"`),
			"--a\nContent-Type: text/calendar\n\nBEGIN:VCALENDAR\n--a\nContent-Type: text/html\n\n<p>HTML</p>\n--a--\n"),
			"HTML\n", "test"},
		{"mixed containing alternative", msg(withHeaders(`Content-Type: multipart/mixed; boundary="m"`),
			"--m\nContent-Type: multipart/alternative; boundary=\"a\"\n\n--a\nContent-Type: text/plain\n\nInner plain.\n--a\nContent-Type: text/html\n\n<b>x</b>\n--a--\n--m--\n"),
			"Inner plain.", "test"},
		{"related with html only root", msg(withHeaders(`Content-Type: multipart/related; boundary="r"`),
			"--r\nContent-Type: text/html\n\n<p>Just HTML</p>\n--r--\n"),
			"Just HTML\n", "test"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, err := ParseOutgoing(tc.raw)
			if err != nil {
				t.Fatal(err)
			}
			if o.Body != tc.body {
				t.Errorf("Body = %q, want %q", o.Body, tc.body)
			}
			if o.Subject != tc.subject {
				t.Errorf("Subject = %q, want %q", o.Subject, tc.subject)
			}
		})
	}
}

func TestParseOutgoingRefusals(t *testing.T) {
	media := [3]int{5, 6, 1}
	broken := [3]int{5, 6, 0}
	nested := "Content-Type: text/plain\n\nx\n"
	for i := 0; i < 12; i++ {
		nested = "Content-Type: multipart/mixed; boundary=\"n" + string(rune('a'+i)) + "\"\n\n--n" + string(rune('a'+i)) + "\n" + nested + "--n" + string(rune('a'+i)) + "--\n"
	}
	var many strings.Builder
	many.WriteString("--b\n")
	for i := 0; i < 100; i++ {
		many.WriteString("Content-Type: text/plain\n\nx\n--b\n")
	}
	tests := []struct {
		name     string
		raw      []byte
		code     int
		enhanced [3]int
		mention  string
	}{
		{"encrypted", msg(withHeaders(`Content-Type: multipart/encrypted; protocol="application/pgp-encrypted"; boundary="e"`),
			"--e\nContent-Type: application/pgp-encrypted\n\nVersion: 1\n--e--\n"), 554, media, "encrypted"},
		{"smime", msg(withHeaders("Content-Type: application/pkcs7-mime; smime-type=enveloped-data"), "MIA"), 554, media, "encrypted"},
		{"unknown charset", msg(withHeaders("Content-Type: text/plain; charset=x-martian"), "x"), 554, broken, "x-martian"},
		{"unknown transfer encoding", msg(withHeaders("Content-Type: text/plain", "Content-Transfer-Encoding: x-uuencode"), "x"), 554, broken, "x-uuencode"},
		{"broken base64", msg(withHeaders("Content-Type: text/plain", "Content-Transfer-Encoding: base64"), "!!!!****\n"), 554, broken, "transfer encoding"},
		{"bad content type", msg(withHeaders("Content-Type: text/plain; charset"), "x"), 554, broken, "Content-Type"},
		{"multipart without boundary", msg(withHeaders("Content-Type: multipart/mixed"), "x"), 554, broken, "boundary"},
		{"unterminated multipart", msg(withHeaders(`Content-Type: multipart/mixed; boundary="b"`), "--b\nContent-Type: text/plain\n\nx\n"), 554, broken, "MIME"},
		{"too deep", msg(withHeaders(nested[:strings.Index(nested, "\n\n")]), nested[strings.Index(nested, "\n\n")+2:]), 554, broken, "nested"},
		{"too many parts", msg(withHeaders(`Content-Type: multipart/mixed; boundary="b"`), many.String()+"--b--\n"), 554, broken, "MIME parts"},
		{"two From", msg([]string{"From: a@x.org, b@x.org"}, "x"), 550, [3]int{5, 7, 1}, "one From"},
		{"bad From", msg([]string{"From: <<<"}, "x"), 554, broken, "From"},
		{"no header end", []byte("this is not a header\r\n"), 554, broken, "header"},
		{"alternative of nothing usable", msg(withHeaders(`Content-Type: multipart/alternative; boundary="a"`),
			"--a\nContent-Type: text/calendar\n\nBEGIN:VCALENDAR\n--a--\n"), 554, media, "text/calendar"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseOutgoing(tc.raw)
			wantError(t, err, tc.code, tc.enhanced, tc.mention)
		})
	}
}

func TestParseOutgoingSizeLimit(t *testing.T) {
	subject := "0123456789"
	fits := strings.Repeat("a", MaxTextBytes-len(subject))
	o, err := ParseOutgoing(msg([]string{"Subject: " + subject}, fits))
	if err != nil {
		t.Fatalf("text of exactly MaxTextBytes refused: %v", err)
	}
	if len(o.Subject)+len(o.Body) != MaxTextBytes {
		t.Fatalf("size %d", len(o.Subject)+len(o.Body))
	}
	_, err = ParseOutgoing(msg([]string{"Subject: " + subject}, fits+"a"))
	wantError(t, err, 552, [3]int{5, 3, 4}, "261644")
}

func TestParseOutgoingThreading(t *testing.T) {
	var refs []string
	for i := 0; i < 30; i++ {
		refs = append(refs, "<r"+string(rune('a'+i%26))+string(rune('a'+i/26))+"@x.org>")
	}
	raw := msg([]string{
		"Message-ID: <bad id@x.org>",
		"In-Reply-To: <not-valid> <ok.1@x.org>",
		"References: " + strings.Join(refs, " "),
	}, "x")
	o, err := ParseOutgoing(raw)
	if err != nil {
		t.Fatal(err)
	}
	if o.MessageID != "" {
		t.Errorf("invalid Message-ID kept: %q", o.MessageID)
	}
	if len(o.References) != maxReferences || o.References[0] != "raa@x.org" || o.References[maxReferences-1] != "rdb@x.org" {
		t.Errorf("References = %v", o.References)
	}
	ex := o.Extra()
	if _, ok := ex[ExtraMessageID]; ok {
		t.Error("empty Message-ID in Extra")
	}
	mid, irt, r := ThreadingFromExtra(ex)
	if mid != "" || irt != o.InReplyTo || !reflect.DeepEqual(r, o.References) {
		t.Errorf("round trip: %q %q %v (In-Reply-To %q)", mid, irt, r, o.InReplyTo)
	}
	if (Outgoing{}).Extra() != nil {
		t.Error("Extra of nothing is not nil")
	}
}

func TestThreadingFromExtraHostile(t *testing.T) {
	mid, irt, refs := ThreadingFromExtra(map[string]string{
		ExtraMessageID:  "a@b\r\nBcc: victim@x.org",
		ExtraInReplyTo:  "<good@x.org>",
		ExtraReferences: "one@x.org <two@x.org> bad\r\nX-Evil: 1 three@[1.2.3.4] @@ four@x..org",
	})
	if mid != "" {
		t.Errorf("hostile Message-ID accepted: %q", mid)
	}
	if irt != "good@x.org" {
		t.Errorf("In-Reply-To = %q", irt)
	}
	want := []string{"one@x.org", "two@x.org", "three@[1.2.3.4]"}
	if !reflect.DeepEqual(refs, want) {
		t.Errorf("refs = %q, want %q", refs, want)
	}
	if _, _, refs := ThreadingFromExtra(map[string]string{ExtraReferences: strings.Repeat("a@b ", 100000)}); refs != nil {
		t.Errorf("absurd References kept %d ids", len(refs))
	}
}

func TestValidMsgID(t *testing.T) {
	for id, want := range map[string]bool{
		"a@b":                           true,
		"1234.5678@mail.example":        true,
		"x+y=z/~{}@[10.0.0.1]":          true,
		"a.b@c.d":                       true,
		"":                              false,
		"ab":                            false,
		"a@":                            false,
		"@b":                            false,
		"a b@c":                         false,
		"a@b@c":                         false,
		".a@b":                          false,
		"a..b@c":                        false,
		"a@b\r\nX: y":                   false,
		"a<b@c":                         false,
		"\"q\"@c":                       false,
		"é@c":                           false,
		"a@[b]c]":                       false,
		strings.Repeat("a", 250) + "@b": false,
	} {
		if got := ValidMsgID(id); got != want {
			t.Errorf("ValidMsgID(%q) = %v", id, got)
		}
	}
}

func TestHTMLToText(t *testing.T) {
	tests := []struct{ in, want string }{
		{"<p>a</p><p>b</p>", "a\n\nb\n"},
		{"<div>one</div><div>two</div>", "one\ntwo\n"},
		{"a<br>b<br/><br />c<br><br><br><br>d", "a\nb\n\nc\n\nd\n"},
		{"  lots   of \n\t space  ", "lots of space\n"},
		{"<script>document.write('<p>x</p>')</script>shown<style>p{}</style>", "shown\n"},
		{"<SCRIPT type=x>hidden</SCRIPT >after", "after\n"},
		{"<a href='mailto:bob@x.org'>Bob</a>", "Bob <bob@x.org>\n"},
		{"<a href=\"javascript:alert(1)\">click</a>", "click\n"},
		{"<a href=http://x.org/>http://x.org/</a>", "http://x.org/\n"},
		{"&lt;&gt;&amp;&quot;&#39;&#x41;&eacute;&unknown;", "<>&\"'Aé&unknown;\n"},
		{"1 < 2 and 3 > 2", "1 < 2 and 3 > 2\n"},
		{"<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>", "a b\nc\n"},
		{"<ol start=3><li>x<li>y</ol>", "3. x\n4. y\n"},
		{"<blockquote><p>q1</p><blockquote>q2</blockquote></blockquote>end", "> q1\n\n> > q2\n\nend\n"},
		{"<img alt='logo' src=x>", "[logo]\n"},
		{"<h1>Title</h1>text<hr>more", "Title\n\ntext\n----------\nmore\n"},
		{"<!-- unterminated comment", "\n"},
		{"text <b unterminated", "text\n"},
		{"<p title='a>b'>x</p>", "x\n"},
		{"<head><title>t</title><meta charset=utf-8></head><body>body</body>", "body\n"},
		{"<head>no end of head", "\n"},
		{"x&nbsp;&nbsp;y", "x  y\n"},
		{"<pre>a\n  b</pre>", "a\n  b\n"},
		{"</p></li></ul></blockquote></pre></a>x", "x\n"},
		{"<<<>>>", "<<<>>>\n"},
		{strings.Repeat("<blockquote>", 100) + "deep", strings.Repeat("> ", maxHTMLDepth) + "deep\n"},
	}
	for _, tc := range tests {
		if got := HTMLToText(tc.in); got != tc.want {
			t.Errorf("HTMLToText(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// FuzzParseOutgoing feeds arbitrary bytes to the MIME parser: it must not
// panic, and what it accepts must be clean enough to send.
func FuzzParseOutgoing(f *testing.F) {
	entries, _ := os.ReadDir("testdata/mail")
	for _, e := range entries {
		if b, err := os.ReadFile("testdata/mail/" + e.Name()); err == nil {
			f.Add(b)
		}
	}
	f.Add(msg(withHeaders(`Content-Type: multipart/alternative; boundary="a"`), "--a\nContent-Type: text/html\n\n<p>x</p>\n--a--\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		o, err := ParseOutgoing(raw)
		if err != nil {
			var ge *Error
			if !errors.As(err, &ge) {
				t.Fatalf("error is not *Error: %v", err)
			}
			return
		}
		if strings.ContainsAny(o.Subject, "\r\n") {
			t.Fatalf("subject has a line break: %q", o.Subject)
		}
		if !utf8.ValidString(o.Subject) || !utf8.ValidString(o.Body) {
			t.Fatal("invalid UTF-8 in output")
		}
		if strings.Contains(o.Body, "\r") {
			t.Fatal("CR in body")
		}
		if len(o.Subject)+len(o.Body) > MaxTextBytes {
			t.Fatal("size limit not enforced")
		}
		for _, id := range append([]string{o.MessageID, o.InReplyTo}, o.References...) {
			if id != "" && !ValidMsgID(id) {
				t.Fatalf("invalid id %q", id)
			}
		}
	})
}

// TestBodyKeepsItsEnd: nothing is dropped from the end of a body, from
// submission to the recipient's mailbox (the final line end used to be cut
// off by ParseOutgoing, and trailing blank lines by BuildIncoming).
func TestBodyKeepsItsEnd(t *testing.T) {
	for _, tc := range []struct{ name, raw, want string }{
		{"plain", "Subject: s\r\n\r\nHello\r\n", "Hello\n"},
		{"blank lines and spaces", "Subject: s\r\n\r\nHello\r\n  \r\n\r\n", "Hello\n  \n\n"},
		{"no final line end", "Subject: s\r\n\r\nHello", "Hello"},
		{"mixed with one text part", "Subject: s\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n" +
			"Content-Type: text/plain\r\n\r\nHello\r\n\r\n--b--\r\n", "Hello\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := ParseOutgoing([]byte(tc.raw))
			if err != nil {
				t.Fatal(err)
			}
			if o.Body != tc.want {
				t.Fatalf("ParseOutgoing body = %q, want %q", o.Body, tc.want)
			}
			raw, err := BuildIncoming(Incoming{Domain: "bm.test", From: "BM-2cW", To: "BM-2cX", Subject: o.Subject, Body: o.Body,
				Date: time.Unix(1, 0), Kind: IncomingMsg})
			if err != nil {
				t.Fatal(err)
			}
			want := strings.ReplaceAll(tc.want, "\n", "\r\n")
			if !strings.HasSuffix(want, "\r\n") {
				want += "\r\n"
			}
			if _, body, _ := strings.Cut(string(raw), "\r\n\r\n"); body != want {
				t.Fatalf("delivered body = %q, want %q", body, want)
			}
		})
	}
}
