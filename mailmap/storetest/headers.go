package storetest

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/bmgate/bmgate/mailmap"
)

// HeaderCorpus is messages whose headers are awkward to index: encoded
// words, folding, missing, duplicated, 8-bit and damaged fields, no body,
// LF line ends, and header ends in odd places. Search needles in the
// tests that use it: "bob", "café", "folded", "dup".
func HeaderCorpus() []string {
	long := "X-Long: " + strings.Repeat("abcdefghij", 600) + "\r\n"
	return []string{
		// 1: plain.
		"From: Bob <bob@example.test>\r\nTo: alice@example.test\r\nCc: carol@example.test\r\nSubject: plain one\r\n" +
			"Date: Mon, 02 Jan 2006 15:04:05 -0700\r\nMessage-ID: <one@example.test>\r\n\r\nbody one\r\n",
		// 2: encoded words (UTF-8 B, Latin-1 Q), an encoded display name.
		"From: =?UTF-8?Q?Bj=C3=B6rn?= <bjorn@example.test>\r\nTo: alice@example.test\r\n" +
			"Subject: =?UTF-8?B?Q2Fmw6kgbWVldGluZw==?=\r\nX-Other: =?ISO-8859-1?Q?caf=E9?=\r\nDate: Tue, 3 Jan 2006 01:02:03 +0100\r\n\r\nbody\r\n",
		// 3: folded Subject and To.
		"From: bob@example.test\r\nTo: alice@example.test,\r\n\tcarol@example.test,\r\n dave@example.test\r\n" +
			"Subject: a subject that is\r\n folded over\r\n\tthree lines\r\n\r\nbody\r\n",
		// 4: no From, no Subject, no Date.
		"To: alice@example.test\r\n\r\nbody without sender\r\n",
		// 5: raw 8-bit (UTF-8) header values.
		"From: Zoë <zoe@example.test>\r\nTo: alice@example.test\r\nSubject: Café crème\r\n\r\nbody\r\n",
		// 6: raw Latin-1 (not UTF-8) bytes.
		"From: Ren\xe9 <rene@example.test>\r\nSubject: caf\xe9 dup\r\n\r\nbody\r\n",
		// 7: duplicated fields.
		"From: bob@example.test\r\nFrom: eve@example.test\r\nSubject: first dup\r\nSubject: second\r\n" +
			"To: a@example.test\r\nTo: b@example.test\r\nCc: x@example.test\r\nCc: y@example.test\r\n\r\nbody\r\n",
		// 8: no body, no blank line.
		"From: bob@example.test\r\nSubject: header only",
		// 9: header only, blank line at the end.
		"From: bob@example.test\r\nSubject: header and blank\r\n\r\n",
		// 10: LF line ends.
		"From: Bob <bob@example.test>\nTo: alice@example.test\nSubject: lf\n folded lf\n\nbody\nwith lines\n",
		// 11: empty header.
		"\r\nonly a body\r\n",
		// 12: a damaged line in the middle (no colon).
		"From: bob@example.test\r\nthis is not a field\r\nSubject: after damage\r\n\r\nbody\r\n",
		// 13: the first line starts with a space.
		" Subject: leading space\r\nFrom: bob@example.test\r\n\r\nbody\r\n",
		// 14: an unknown charset, a bad encoded word.
		"From: =?x-unknown?Q?Someone?= <s@example.test>\r\nSubject: =?x-unknown?Q?caf=E9?= and =?UTF-8?B?!!!?=\r\n\r\nbody\r\n",
		// 15: a line over 4 KiB, Bcc, Sender, Reply-To, In-Reply-To, group syntax.
		"From: bob@example.test\r\nSender: sec@example.test\r\nReply-To: list@example.test\r\nBcc: hidden@example.test\r\n" +
			"To: undisclosed-recipients:;\r\nIn-Reply-To: <a@x> <b@y>\r\n" + long + "Subject: long\r\n\r\nbody\r\n",
		// 16: a header ended by LF then CRLF, and a CRLF blank line later in the body.
		"From: bob@example.test\nSubject: mixed ends\n\r\nbody line\r\n\r\nmore\r\n",
		// 17: multipart: part headers are not the message's.
		"From: bob@example.test\r\nSubject: multi\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n" +
			"--XX\r\nContent-Type: text/plain\r\nX-Part: inner folded\r\n\r\npart one\r\n--XX--\r\n",
		// 18: an invalid date, a key with a space before the colon, an empty Cc.
		"From: bob@example.test\r\nDate: not a date\r\nSubject : spaced key\r\nCc:\r\n\r\nbody\r\n",
		// 19: CR-only oddities and trailing spaces.
		"From: bob@example.test \r\nSubject: trailing   \r\nX-CR: a\rb\r\n\r\nbody\r\n",
	}
}

// SameHeader reports how two header index entries differ ("" if not).
// Envelope dates compare as ENVELOPE shows them (instant and zone offset).
func SameHeader(a, b mailmap.MessageHeader) string {
	if string(a.Header) != string(b.Header) {
		return fmt.Sprintf("header %q, want %q", a.Header, b.Header)
	}
	for _, k := range mailmap.IndexedFields {
		x, _ := a.Decoded(k)
		y, _ := b.Decoded(k)
		if !reflect.DeepEqual(x, y) {
			return fmt.Sprintf("%s %q, want %q", k, x, y)
		}
	}
	ea, eb := a.Envelope, b.Envelope
	if ea.Date.IsZero() != eb.Date.IsZero() || !ea.Date.Equal(eb.Date) ||
		ea.Date.Format(time.RFC1123Z) != eb.Date.Format(time.RFC1123Z) {
		return fmt.Sprintf("date %v, want %v", ea.Date, eb.Date)
	}
	ea.Date, eb.Date = time.Time{}, time.Time{}
	if !reflect.DeepEqual(ea, eb) {
		return fmt.Sprintf("envelope %+v, want %+v", ea, eb)
	}
	return ""
}

// testHeaderIndex: MessageHeaders gives, for every message however it got
// there (append, delivery, copy, move), what IndexHeader makes of its
// bytes; by range and by sparse UID lists; absent UIDs are left out.
func testHeaderIndex(t *testing.T, s mailmap.Store) {
	ctx := context.Background()
	u := newUser(t, s, "alice")
	inbox, err := s.Mailbox(ctx, u.ID, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	other, err := s.CreateMailbox(ctx, u.ID, "Other", "")
	if err != nil {
		t.Fatal(err)
	}
	// And a header too long to copy (no blank line: all header).
	corpus := append(HeaderCorpus(), "Subject: no blank line\r\nX-Long: "+strings.Repeat("x", 300<<10)+"\r\n")
	for i, raw := range corpus {
		if i%2 == 0 {
			_, err = s.AppendMessage(ctx, u.ID, inbox.ID, []byte(raw), nil, time.Time{})
		} else {
			_, _, err = s.DeliverOnce(ctx, u.ID, inbox.ID, []byte(fmt.Sprint("key", i)), []byte(raw), nil, time.Time{})
		}
		if err != nil {
			t.Fatalf("message %d: %v", i+1, err)
		}
	}
	all := make([]uint32, len(corpus))
	for i := range all {
		all[i] = uint32(i + 1)
	}
	if _, _, err := s.CopyMessages(ctx, u.ID, inbox.ID, all, other.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.MoveMessages(ctx, u.ID, other.ID, []uint32{1, 2, 3}, other.ID); err != nil {
		t.Fatal(err)
	}
	check := func(mb mailmap.Mailbox, uids []uint32, want int) {
		t.Helper()
		got, err := s.MessageHeaders(ctx, u.ID, mb.ID, uids, mailmap.HeaderAll)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != want {
			t.Errorf("%s %v: %d entries, want %d", mb.Name, uids, len(got), want)
		}
		for uid, h := range got {
			raw, err := s.MessageRaw(ctx, u.ID, mb.ID, uid)
			if err != nil {
				t.Fatal(err)
			}
			if d := SameHeader(h, mailmap.IndexHeader(raw)); d != "" {
				t.Errorf("%s uid %d: %s", mb.Name, uid, d)
			}
		}
	}
	check(inbox, all, len(corpus))
	// Some parts only: the others stay zero.
	for _, parts := range []mailmap.HeaderParts{mailmap.HeaderSection, mailmap.HeaderEnvelope, mailmap.HeaderDecoded,
		mailmap.HeaderSection | mailmap.HeaderDecoded, mailmap.HeaderFrom, mailmap.HeaderSubject | mailmap.HeaderCc} {
		got, err := s.MessageHeaders(ctx, u.ID, inbox.ID, all, parts)
		if err != nil || len(got) != len(all) {
			t.Fatalf("parts %b: %d entries, %v", parts, len(got), err)
		}
		for uid, h := range got {
			raw, err := s.MessageRaw(ctx, u.ID, inbox.ID, uid)
			if err != nil {
				t.Fatal(err)
			}
			want := mailmap.IndexHeader(raw)
			var keep mailmap.MessageHeader
			if parts&mailmap.HeaderSection != 0 {
				keep.Header = want.Header
			}
			if parts&mailmap.HeaderEnvelope != 0 {
				keep.Envelope = want.Envelope
			}
			for _, k := range mailmap.IndexedFields {
				if parts&mailmap.DecodedPart(k) == 0 {
					continue
				}
				switch k {
				case "From":
					keep.From = want.From
				case "To":
					keep.To = want.To
				case "Cc":
					keep.Cc = want.Cc
				case "Bcc":
					keep.Bcc = want.Bcc
				case "Subject":
					keep.Subject = want.Subject
				}
			}
			if d := SameHeader(h, keep); d != "" {
				t.Errorf("parts %b uid %d: %s", parts, uid, d)
			}
		}
	}
	check(inbox, []uint32{1, 5, 19, 500, 1000}, 3) // sparse: by list
	check(inbox, []uint32{2, 3, 4, 99}, 3)         // near a range
	msgs, err := s.Messages(ctx, u.ID, other.ID)
	if err != nil {
		t.Fatal(err)
	}
	var ouids []uint32
	for _, m := range msgs {
		ouids = append(ouids, m.UID)
	}
	check(other, ouids, len(corpus))
	check(other, []uint32{1, 2, 3}, 0) // moved away
	if got, err := s.MessageHeaders(ctx, u.ID, other.ID, nil, mailmap.HeaderAll); err != nil || len(got) != 0 {
		t.Errorf("no UIDs: %v, %v", got, err)
	}
	// Another user's mailbox gives nothing.
	bob := newUser(t, s, "bob")
	if got, err := s.MessageHeaders(ctx, bob.ID, inbox.ID, all, mailmap.HeaderAll); err != nil || len(got) != 0 {
		t.Errorf("bob reads alice's headers: %d, %v", len(got), err)
	}
}
