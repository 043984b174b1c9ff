package imapd

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/bmgate/bmgate/mailmap"
	"github.com/bmgate/bmgate/mailmap/storetest"
)

// TestHeaderIndexAnswers: header FETCH and header SEARCH served from the
// header index answer byte for byte what reading the messages answers
// (legacyContents), on both backends, for awkward headers, in the
// mailbox they were stored in and in one they were copied to.
func TestHeaderIndexAnswers(t *testing.T) {
	backends := []struct {
		name string
		open func(t *testing.T) mailmap.Store
	}{
		{"sqlite", func(t *testing.T) mailmap.Store { st, _ := openStore(t); return st }},
		{"postgres", func(t *testing.T) mailmap.Store {
			st, err := mailmap.Open(context.Background(), storetest.PostgresDSN(t), mailmap.Options{SecretKey: bytes.Repeat([]byte{7}, 32)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			if _, err := st.CreateUser(context.Background(), testUser, testPass); err != nil {
				t.Fatal(err)
			}
			return st
		}},
	}
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			ctx := context.Background()
			st := be.open(t)
			u, err := st.UserByName(ctx, testUser)
			if err != nil {
				t.Fatal(err)
			}
			e := serveStore(t, st, u, Config{AllowInsecureAuth: true}, false)
			corpus := storetest.HeaderCorpus()
			for i, raw := range corpus {
				var flags []string
				if i%3 == 0 {
					flags = []string{`\Seen`}
				}
				if _, err := st.AppendMessage(ctx, u.ID, e.inbox.ID, []byte(raw), flags,
					time.Date(2026, 1, 1+i, 10, 0, 0, 0, time.UTC)); err != nil {
					t.Fatal(err)
				}
			}
			// Bodies for BODY and TEXT: each way a part's text is stored.
			for _, raw := range []string{
				"Subject: b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nCaf\u00e9 NEEDLE Stra\u00dfe \u212a\r\n",
				"Subject: b2\r\nContent-Type: text/plain; charset=US-ASCII\r\nContent-Transfer-Encoding: 7BIT\r\n\r\nplain Needle text\r\n",
				"Subject: b3\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\ncaf\xe9 needle\r\n",
				"Subject: b4\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nCaf=C3=A9 ne=\r\nedle\r\n",
				"Subject: b5\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\nbmVlZGxlIGluIGJhc2U2NA==\r\n",
				"Subject: b6\r\nContent-Type: application/octet-stream\r\n\r\nneedle in binary\r\n",
				"Subject: b7\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ninner needle\r\n",
				"Subject: b8\r\nContent-Transfer-Encoding: x-unknown\r\n\r\nneedle unknown\r\n",
				"Subject: b9\nContent-Type: text/html; charset=\"UTF-8\"\n\n<p>NeEdLe</p>\n",
				"Subject: b10\r\nContent-Type: text/plain; charset=utf-8\r\n\r\ninvalid \xff\xfe needle\r\n",
				"Subject: b11\r\nContent-Type: ;;bad\r\n\r\nneedle with a bad type\r\n",
				"Subject: b12\r\nContent-Type: text/plain; charset=x-unknown\r\n\r\nneedle unknown charset\r\n",
				"Subject: b13\r\n\r\n",
				// A header the index does not copy (over 256 KiB).
				"From: bob@example.test\r\nSubject: huge\r\nX-Huge: " + strings.Repeat("u", 300<<10) + "\r\n\r\nbody\r\n",
			} {
				if _, err := st.AppendMessage(ctx, u.ID, e.inbox.ID, []byte(raw), nil, time.Time{}); err != nil {
					t.Fatal(err)
				}
			}
			r := e.rawLogin()
			r.ok("SELECT INBOX")
			r.ok("COPY 1:* Archive")

			fetches := []string{
				"FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE BODY.PEEK[HEADER.FIELDS (From To Cc Subject Date Message-ID)])",
				"FETCH 1:* (ENVELOPE)",
				"FETCH 1:* (BODY.PEEK[HEADER])",
				"FETCH 1:* (RFC822.HEADER)",
				"FETCH 1:* (BODY.PEEK[HEADER.FIELDS.NOT (Subject X-Long Received)])",
				"FETCH 1:* (BODY.PEEK[HEADER.FIELDS (subject FROM x-cr x-other)])",
				"FETCH 1:* (BODY.PEEK[HEADER.FIELDS (X-Absent)])",
				"FETCH 1:* (BODY.PEEK[HEADER]<5.20>)",
				"FETCH 1:* (BODY.PEEK[HEADER.FIELDS (Subject)]<0.12>)",
				"FETCH 1:* (BODY.PEEK[HEADER.FIELDS (Subject)]<300.10>)",
				"FETCH 2,4,6 (BODY.PEEK[HEADER] ENVELOPE UID)",
				"UID FETCH 3:* (BODY.PEEK[HEADER.FIELDS (To)] FLAGS)",
			}
			searches := []string{
				`SEARCH FROM "bob"`,
				`SEARCH FROM "BOB@EXAMPLE"`,
				`SEARCH TO "example.test"`,
				`SEARCH CC ""`,
				`SEARCH BCC "hidden"`,
				`SEARCH SUBJECT "folded over three"`,
				`SEARCH SUBJECT "dup"`,
				`SEARCH SUBJECT "=?"`,
				`SEARCH NOT SUBJECT ""`,
				`SEARCH OR FROM "eve" SUBJECT "lf"`,
				`SEARCH HEADER X-Other "CAF"`,
				`SEARCH HEADER X-Part ""`,
				`SEARCH HEADER Message-ID "one@"`,
				`SEARCH HEADER subject "TRAILING"`,
				`SEARCH SENTSINCE 2-Jan-2006`,
				`SEARCH SENTBEFORE 3-Jan-2006`,
				`SEARCH UNSEEN FROM "bob"`,
				`UID SEARCH RETURN (MIN MAX COUNT) FROM "bob"`,
				"SEARCH CHARSET UTF-8 SUBJECT {5+}\r\nCAF\u00c9",
				"SEARCH CHARSET UTF-8 FROM {5+}\r\nBJ\u00d6R",
				"SEARCH CHARSET UTF-8 FROM {4+}\r\nzo\u00eb",
				`SEARCH BODY "needle"`,
				`SEARCH BODY "NEEDLE"`,
				`SEARCH BODY "body"`,
				`SEARCH BODY "ne edle"`,
				`SEARCH BODY "k"`,
				`SEARCH BODY "part one"`,
				`SEARCH BODY "inner"`,
				`SEARCH TEXT "needle"`,
				`SEARCH TEXT "dup"`,
				`SEARCH NOT BODY "body"`,
				"SEARCH CHARSET UTF-8 BODY {5+}\r\nCAF\u00c9",
				"SEARCH CHARSET UTF-8 BODY {6+}\r\nSTRASS",
				"SEARCH CHARSET UTF-8 BODY {3+}\r\n\u212a",
			}
			answers := func(cmds []string) [][]string {
				var out [][]string
				for _, c := range cmds {
					u := r.ok("%s", c)
					for i := range u {
						u[i] = esearchTag.ReplaceAllString(u[i], `(TAG "*")`)
					}
					out = append(out, u)
				}
				return out
			}
			for _, mb := range []string{"INBOX", "Archive"} {
				r.ok("SELECT %s", mb)
				legacyContents.Store(true)
				oldF, oldS := answers(fetches), answers(searches)
				legacyContents.Store(false)
				newF, newS := answers(fetches), answers(searches)
				for i := range fetches {
					if !slices.Equal(oldF[i], newF[i]) {
						t.Errorf("%s %s:\nfrom the index: %q\nfrom messages:  %q", mb, fetches[i], newF[i], oldF[i])
					}
				}
				for i := range searches {
					if !slices.Equal(oldS[i], newS[i]) {
						t.Errorf("%s %s:\nfrom the index: %q\nfrom messages:  %q", mb, searches[i], newS[i], oldS[i])
					}
				}
				if mb != "INBOX" {
					continue
				}
				// Semantics (RFC 9051 §6.4.4): case-insensitive substring
				// of the decoded value; an empty value asks for the field.
				want := map[string]string{
					`SEARCH SUBJECT "folded over three"`:             "* SEARCH 3",
					`SEARCH SUBJECT "dup"`:                           "* SEARCH 6 7",
					`SEARCH CC ""`:                                   "* SEARCH 1 7 18",
					`SEARCH BCC "hidden"`:                            "* SEARCH 15",
					`SEARCH OR FROM "eve" SUBJECT "lf"`:              "* SEARCH 7 10",
					"SEARCH CHARSET UTF-8 SUBJECT {5+}\r\nCAF\u00c9": "* SEARCH 2 5",
					"SEARCH CHARSET UTF-8 FROM {5+}\r\nBJ\u00d6R":    "* SEARCH 2",
					`SEARCH HEADER X-Other "CAF"`:                    "* SEARCH 2",
				}
				for i, c := range searches {
					if w, ok := want[c]; ok && strings.Join(newS[i], "\n") != w {
						t.Errorf("%q: %q, want %q", c, newS[i], w)
					}
				}
			}
		})
	}
}

var esearchTag = regexp.MustCompile(`\(TAG "[^"]*"\)`)

// headerCases are body sections headerFieldsSection serves.
func headerCases() []*imap.FetchItemBodySection {
	var out []*imap.FetchItemBodySection
	for _, p := range []*imap.SectionPartial{nil, {Offset: 0, Size: 10}, {Offset: 7, Size: 1000}, {Offset: 100000, Size: 5}} {
		out = append(out,
			&imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"From", "To", "Cc", "Subject", "Date", "Message-ID"}, Partial: p},
			&imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"subject", "X-CR", "x-long", "\u017fubject"}, Partial: p},
			&imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFieldsNot: []string{"Subject", "received"}, Partial: p},
			&imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"From"}, HeaderFieldsNot: []string{"from"}, Partial: p},
		)
	}
	return out
}

// checkHeaderIndexed holds the index's answers for one message to those
// read from the message: header sections (from the stored header, and
// headerFieldsSection against imapserver's ExtractBodySection), ENVELOPE
// (through its stored form) and the decoded fields SEARCH matches.
func checkHeaderIndexed(t *testing.T, raw []byte) {
	t.Helper()
	ih := mailmap.IndexHeader(raw)
	if !bytes.Equal(ih.Header, bodySection(raw, &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader})) {
		t.Fatalf("%q: header %q", raw, ih.Header)
	}
	for _, bs := range headerCases() {
		want := imapserver.ExtractBodySection(bytes.NewReader(raw), bs)
		if got := headerFieldsSection(raw, bs); !bytes.Equal(got, want) {
			t.Fatalf("%q %+v: %q, want %q", raw, bs, got, want)
		}
		if got := headerFieldsSection(ih.Header, bs); !bytes.Equal(got, want) {
			t.Fatalf("%q %+v from the index: %q, want %q", raw, bs, got, want)
		}
	}
	want, got := envelopeOf(raw), imapEnvelope(&ih.Envelope)
	if fmt.Sprintf("%+v", envelopeText(want)) != fmt.Sprintf("%+v", envelopeText(got)) {
		t.Fatalf("%q: envelope %+v, want %+v", raw, envelopeText(got), envelopeText(want))
	}
	for _, needle := range []string{"needle", "NEEDLE", "body", "é", "K", "\u212a", "ne edle", "\r\n", "\ufffd"} {
		if a, b := matchText(raw, needle, false), matchEntities(raw, needle, false); a != b {
			t.Fatalf("%q BODY %q: %v, read as entities %v", raw, needle, a, b)
		}
	}
	ev := &evaluator{raw: raw}
	for _, key := range mailmap.IndexedFields {
		vals, _ := ih.Decoded(key)
		for _, needle := range []string{"", "bob", "CAF", "é", "dup", "\ufffd"} {
			if a, b := matchValues(vals, needle), matchHeaderField(ev.hdr().FieldsByKey(key), needle); a != b {
				t.Fatalf("%q %s %q: index %v, message %v", raw, key, needle, a, b)
			}
		}
	}
}

// envelopeText is an envelope as ENVELOPE shows it (the date formatted).
func envelopeText(e *imap.Envelope) imap.Envelope {
	out := *e
	out.Date = time.Time{}
	if !e.Date.IsZero() {
		out.Subject = e.Date.Format(time.RFC1123Z) + "|" + e.Subject
	}
	return out
}

func TestHeaderFieldsSection(t *testing.T) {
	for _, raw := range storetest.HeaderCorpus() {
		checkHeaderIndexed(t, []byte(raw))
	}
}

func FuzzHeaderIndex(f *testing.F) {
	for _, raw := range storetest.HeaderCorpus() {
		f.Add([]byte(raw))
	}
	f.Add([]byte("Content-Type: text/plain; charset=utf-8\r\n\r\nCaf\u00e9 NEEDLE \u212a\r\n"))
	f.Add([]byte("Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 8BIT\r\n\r\nNeedle\r\n"))
	f.Add([]byte("Content-Type: message/rfc822\n\nSubject: x\n\nneedle"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) > 1<<16 {
			return
		}
		checkHeaderIndexed(t, raw)
	})
}
