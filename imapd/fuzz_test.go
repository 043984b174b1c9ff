package imapd

import (
	"bytes"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
)

// FuzzMessage checks, without a server, what imapd does with message bytes
// a stranger could get delivered: sections sliced from the stored bytes
// agree with them, BODYSTRUCTURE never has a multipart without parts
// (imapserver panics writing one), and envelope and text search cope.
func FuzzMessage(f *testing.F) {
	for _, seed := range fuzzSeeds {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) > 1<<20 {
			return
		}
		if got := bodySection(raw, &imap.FetchItemBodySection{}); !bytes.Equal(got, raw) {
			t.Fatalf("BODY[] differs from the message")
		}
		h := bodySection(raw, &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader})
		b := bodySection(raw, &imap.FetchItemBodySection{Specifier: imap.PartSpecifierText})
		if !bytes.Equal(append(append([]byte(nil), h...), b...), raw) {
			t.Fatalf("BODY[HEADER] + BODY[TEXT] differs from the message")
		}
		if p := bodySection(raw, &imap.FetchItemBodySection{Partial: &imap.SectionPartial{Offset: 3, Size: 5}}); len(p) > 5 {
			t.Fatalf("partial of %d bytes", len(p))
		}
		checkStructure(t, bodyStructureOf(raw))
		envelopeOf(raw)
		bodySection(raw, &imap.FetchItemBodySection{Part: []int{1, 2}, Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Subject"}})
		matchText(raw, "needle", true)
		matchText(raw, "needle", false)
	})
}

var fuzzSeeds = [][]byte{
	[]byte(multipartMail),
	[]byte(mkMail("a@example.test", "b@example.test", "plain", "body")),
	[]byte("Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n\r\n--x--\r\n"),
	[]byte("Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ninner body\r\n"),
	[]byte("\r\n"),
	[]byte("Subject: only a header"),
}

// FuzzFetchMessage feeds message bytes a stranger could get delivered (the
// gateway stores what arrives) through the real server: FETCH of every
// item that parses the message, SEARCH over its text, then expunge. The
// connection must stay usable, and the byte-slicing of sections must
// agree with the stored message.
//
// It is slow (a store write per input); FuzzMessage covers the parsing
// itself at fuzzing speed.
func FuzzFetchMessage(f *testing.F) {
	for _, seed := range fuzzSeeds {
		f.Add(seed)
	}

	e := newEnv(f, Config{})
	r := e.raw()
	r.ok("LOGIN %s %q", testUser, testPass)
	r.ok("SELECT INBOX")

	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) == 0 || len(raw) > 1<<20 {
			return
		}
		e.t, r.t = t, t // report through this input's T
		m := e.deliver("INBOX", string(raw))
		r.ok("NOOP")
		u := r.ok("UID FETCH %d (UID RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY BODY.PEEK[1] BODY.PEEK[1.MIME] BODY.PEEK[HEADER.FIELDS (Subject From)] BODY.PEEK[TEXT]<1.20> BINARY.PEEK[1] BINARY.SIZE[1])", m.UID)
		if len(u) != 1 || !strings.Contains(u[0], "FETCH (UID ") {
			t.Fatalf("FETCH answered %q", u)
		}
		r.ok(`UID SEARCH TEXT "needle" HEADER Subject "x" SENTSINCE 1-Jan-2000`)
		r.ok(`UID STORE %d +FLAGS.SILENT (\Deleted)`, m.UID)
		r.ok("UID EXPUNGE %d", m.UID)
	})
}

// checkStructure fails on a multipart without parts anywhere: imapserver
// panics writing one.
func checkStructure(t *testing.T, bs imap.BodyStructure) {
	t.Helper()
	switch bs := bs.(type) {
	case *imap.BodyStructureMultiPart:
		if len(bs.Children) == 0 {
			t.Fatal("multipart without parts")
		}
		for _, c := range bs.Children {
			checkStructure(t, c)
		}
	case *imap.BodyStructureSinglePart:
		if bs.MessageRFC822 != nil && bs.MessageRFC822.BodyStructure != nil {
			checkStructure(t, bs.MessageRFC822.BodyStructure)
		}
	}
}
