package imapd

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

func TestFetchItems(t *testing.T) {
	e := newEnv(t, Config{})
	e.deliver("INBOX", multipartMail)
	c := e.login(nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	var (
		header    = &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, Peek: true}
		text      = &imap.FetchItemBodySection{Specifier: imap.PartSpecifierText, Peek: true}
		part1     = &imap.FetchItemBodySection{Part: []int{1}, Peek: true}
		part2MIME = &imap.FetchItemBodySection{Part: []int{2}, Specifier: imap.PartSpecifierMIME, Peek: true}
		partial   = &imap.FetchItemBodySection{Peek: true, Partial: &imap.SectionPartial{Offset: 6, Size: 3}}
		notFields = &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFieldsNot: []string{"Subject", "From"}, Peek: true}
		bin2      = &imap.FetchItemBinarySection{Part: []int{2}, Peek: true}
		bin1      = &imap.FetchItemBinarySection{Part: []int{1}, Peek: true}
	)
	msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{
		UID: true, Flags: true, InternalDate: true, RFC822Size: true, Envelope: true,
		BodyStructure:     &imap.FetchItemBodyStructure{Extended: true},
		BodySection:       []*imap.FetchItemBodySection{header, text, part1, part2MIME, partial, notFields},
		BinarySection:     []*imap.FetchItemBinarySection{bin2, bin1},
		BinarySectionSize: []*imap.FetchItemBinarySectionSize{{Part: []int{2}}},
	}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	m := msgs[0]
	if m.RFC822Size != int64(len(multipartMail)) {
		t.Errorf("RFC822.SIZE %d, want %d", m.RFC822Size, len(multipartMail))
	}
	if !m.InternalDate.Equal(time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)) {
		t.Errorf("INTERNALDATE %v", m.InternalDate)
	}
	env := m.Envelope
	if env == nil || env.Subject != "Grüße with attachment" || env.MessageID != "multi@example.test" ||
		len(env.From) != 1 || env.From[0].Name != "Bob Example" || env.From[0].Addr() != "bob@example.test" ||
		len(env.Cc) != 1 || !slices.Equal(env.InReplyTo, []string{"parent@example.test"}) ||
		!env.Date.Equal(time.Date(2026, 11, 21, 7, 30, 0, 0, time.UTC)) {
		t.Errorf("ENVELOPE %+v", env)
	}
	mp, ok := m.BodyStructure.(*imap.BodyStructureMultiPart)
	if !ok || mp.Subtype != "mixed" || len(mp.Children) != 2 {
		t.Fatalf("BODYSTRUCTURE %#v", m.BodyStructure)
	}
	if p := mp.Children[1].(*imap.BodyStructureSinglePart); p.Type != "application" || p.Encoding != "base64" || p.Filename() != "data.bin" {
		t.Errorf("attachment part %+v", p)
	}
	hdrEnd := strings.Index(multipartMail, "\r\n\r\n") + 4
	checks := []struct {
		name string
		got  []byte
		want string
	}{
		{"BODY[HEADER]", m.FindBodySection(header), multipartMail[:hdrEnd]},
		{"BODY[TEXT]", m.FindBodySection(text), multipartMail[hdrEnd:]},
		{"BODY[1]", m.FindBodySection(part1), "Sch=C3=B6ne Gr=C3=BC=C3=9Fe, the needle is here."},
		{"BODY[]<6.3>", m.FindBodySection(partial), multipartMail[6:9]},
		{"BINARY[2]", m.FindBinarySection(bin2), "\x00\x01\x02\x03\x04\x05\x06\x07"},
		{"BINARY[1]", m.FindBinarySection(bin1), "Schöne Grüße, the needle is here."},
	}
	for _, c := range checks {
		if string(c.got) != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	if mime := string(m.FindBodySection(part2MIME)); !strings.Contains(mime, "Content-Disposition: attachment") {
		t.Errorf("BODY[2.MIME] = %q", mime)
	}
	if h := string(m.FindBodySection(notFields)); strings.Contains(h, "Subject:") || !strings.Contains(h, "Message-ID:") {
		t.Errorf("HEADER.FIELDS.NOT = %q", h)
	}
	if n, ok := m.FindBinarySectionSize([]int{2}); !ok || n != 8 {
		t.Errorf("BINARY.SIZE[2] = %d %v", n, ok)
	}
	if len(m.Flags) != 0 {
		t.Errorf("PEEK fetches set flags %v", m.Flags)
	}

	// BODY[TEXT] without PEEK sets \Seen; BINARY without PEEK too.
	e.deliver("INBOX", mkMail("a@example.test", "b@example.test", "second", "2"))
	if err := c.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err = c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Specifier: imap.PartSpecifierText}}}).Collect()
	if err != nil || len(msgs) != 1 || !slices.Contains(msgs[0].Flags, imap.FlagSeen) {
		t.Errorf("BODY[TEXT] answer %+v %v", msgs, err)
	}
	if _, err := c.Fetch(imap.SeqSetNum(2), &imap.FetchOptions{BinarySection: []*imap.FetchItemBinarySection{{}}}).Collect(); err != nil {
		t.Fatal(err)
	}
	stored, _ := e.store.Messages(context.Background(), e.user.ID, e.inbox.ID)
	for _, s := range stored {
		if !slices.Contains(s.Flags, `\Seen`) {
			t.Errorf("uid %d not \\Seen in the store after a non-PEEK fetch: %v", s.UID, s.Flags)
		}
	}
}

// TestFetchBrokenMessages: messages a stranger could send must not break
// the connection (imapserver panics on a multipart without parts).
func TestFetchBrokenMessages(t *testing.T) {
	e := newEnv(t, Config{})
	broken := []string{
		"Content-Type: multipart/mixed; boundary=nope\r\n\r\nno parts at all\r\n",
		"Content-Type: multipart/mixed\r\n\r\n--\r\n",
		"no header, no blank line",
		"Subject: =?bogus?q?x?=\r\nContent-Type: text/plain; charset=x-unknown\r\nContent-Transfer-Encoding: x-weird\r\n\r\nbody\r\n",
		"Content-Type: message/rfc822\r\n\r\nContent-Type: multipart/alternative; boundary=q\r\n\r\nnothing\r\n",
	}
	for _, raw := range broken {
		e.deliver("INBOX", raw)
	}
	c := e.login(nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{
		Envelope: true, BodyStructure: &imap.FetchItemBodyStructure{Extended: true}, RFC822Size: true,
		BodySection:   []*imap.FetchItemBodySection{{Part: []int{1}, Peek: true}, {Specifier: imap.PartSpecifierText, Peek: true}},
		BinarySection: []*imap.FetchItemBinarySection{{Part: []int{1}, Peek: true}},
	}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != len(broken) {
		t.Fatalf("%d answers for %d messages", len(msgs), len(broken))
	}
	if err := c.Noop().Wait(); err != nil {
		t.Fatalf("connection broken after fetching damaged messages: %v", err)
	}
	res, err := c.Search(&imap.SearchCriteria{Text: []string{"body"}}, nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(res.AllSeqNums(), 4) {
		t.Errorf("TEXT body over damaged messages = %v", res.AllSeqNums())
	}
}
