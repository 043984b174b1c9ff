package mailmap_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/bmgate/bmgate/mailmap"
	"github.com/bmgate/bmgate/mailmap/storetest"
)

// TestHeaderIndexBackfill: mail stored before migration 0009 (by a store
// at schema version 5) is served correctly from the first read after the
// upgrade, while the background backfill runs, and is indexed by it; the
// backfill records that it is done, builds rows of another format again,
// and expunged bodies take their rows with them.
func TestHeaderIndexBackfill(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			dsn := b.dsn(t)
			old, err := mailmap.OpenAtVersion(ctx, dsn, mailmap.Options{SecretKey: testKey}, 5)
			if err != nil {
				t.Fatal(err)
			}
			u, err := old.CreateUser(ctx, "alice", "pw")
			if err != nil {
				t.Fatal(err)
			}
			inbox, _ := old.Mailbox(ctx, u.ID, "INBOX")
			arch, _ := old.Mailbox(ctx, u.ID, "Archive")
			corpus := storetest.HeaderCorpus()
			// Bodies past the backfill's first read: a big body, a header
			// longer than it, one whose end straddles it.
			corpus = append(corpus,
				"Subject: big body\r\n\r\n"+strings.Repeat("attachment line\r\n", 8000),
				"Subject: big header\r\nX-Big: "+strings.Repeat("h", 70<<10)+"\r\n\r\nbody\r\n",
				"Subject: straddle\r\nX-Pad: "+strings.Repeat("p", (64<<10)-33)+"\r\n\r\nbody\r\n\r\nmore\r\n",
				"Subject: straddle lf\nX-Pad: "+strings.Repeat("p", (64<<10)-28)+"\n\nbody\n\nmore\n",
				"Subject: too long to copy\r\nX-Huge: "+strings.Repeat("u", 300<<10)+"\r\n\r\nbody\r\n")
			// Enough bodies for several backfill batches.
			const copies = 25
			var uids []uint32
			for i := range copies * len(corpus) {
				m, err := old.AppendMessage(ctx, u.ID, inbox.ID, []byte(corpus[i%len(corpus)]), nil, time.Time{})
				if err != nil {
					t.Fatal(err)
				}
				uids = append(uids, m.UID)
			}
			if _, _, err := old.CopyMessages(ctx, u.ID, inbox.ID, uids[:len(corpus)], arch.ID); err != nil {
				t.Fatal(err)
			}
			old.Close()

			check := func(s mailmap.Store, mb mailmap.Mailbox) {
				t.Helper()
				msgs, err := s.Messages(ctx, u.ID, mb.ID)
				if err != nil {
					t.Fatal(err)
				}
				var us []uint32
				for _, m := range msgs {
					us = append(us, m.UID)
				}
				got, err := s.MessageHeaders(ctx, u.ID, mb.ID, us, mailmap.HeaderAll)
				if err != nil || len(got) != len(us) {
					t.Fatalf("%s: %d of %d entries, %v", mb.Name, len(got), len(us), err)
				}
				for _, uid := range us {
					raw, err := s.MessageRaw(ctx, u.ID, mb.ID, uid)
					if err != nil {
						t.Fatal(err)
					}
					if d := storetest.SameHeader(got[uid], mailmap.IndexHeader(raw)); d != "" {
						t.Fatalf("%s uid %d: %s", mb.Name, uid, d)
					}
				}
			}
			db := b.raw(t, dsn)
			waitBackfill := func() {
				t.Helper()
				deadline := time.Now().Add(20 * time.Second)
				for {
					var bodies, rows, stale, done int
					err := db.QueryRowContext(ctx, `SELECT (SELECT COUNT(*) FROM bodies), (SELECT COUNT(*) FROM message_headers),
						(SELECT COUNT(*) FROM message_headers WHERE format <> 1),
						(SELECT COUNT(*) FROM settings WHERE name = 'header_index_backfilled')`).Scan(&bodies, &rows, &stale, &done)
					if err != nil {
						t.Fatal(err)
					}
					if bodies == rows && stale == 0 && done == 1 {
						return
					}
					if time.Now().After(deadline) {
						t.Fatalf("backfill: %d bodies, %d rows, %d stale, done %d", bodies, rows, stale, done)
					}
					time.Sleep(20 * time.Millisecond)
				}
			}

			// Without the backfill: built from the bodies.
			s, err := mailmap.Open(ctx, dsn, mailmap.Options{SecretKey: testKey, NoHeaderBackfill: true})
			if err != nil {
				t.Fatal(err)
			}
			check(s, inbox)
			check(s, arch)
			var rows int
			if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM message_headers`).Scan(&rows); err != nil || rows != 0 {
				t.Fatalf("index rows before the backfill: %d, %v", rows, err)
			}
			s.Close()

			s = openDSN(t, dsn)
			check(s, inbox) // at once, whatever the backfill has done so far
			check(s, arch)
			waitBackfill()
			check(s, inbox)
			check(s, arch)
			var uncopied int
			if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM message_headers WHERE header IS NULL`).Scan(&uncopied); err != nil || uncopied != copies {
				t.Errorf("%d rows without a header copy, want %d (%v)", uncopied, copies, err)
			}
			s.Close()

			// A row of another format (an older bmgate's) is not served,
			// and is built again once the marker says so.
			if _, err := db.ExecContext(ctx, `UPDATE message_headers SET format = 0, header = $1
				WHERE body_id = (SELECT MIN(body_id) FROM message_headers)`, []byte("Subject: stale\r\n\r\n")); err != nil {
				t.Fatal(err)
			}
			if _, err := db.ExecContext(ctx, `DELETE FROM settings WHERE name = 'header_index_backfilled'`); err != nil {
				t.Fatal(err)
			}
			s, err = mailmap.Open(ctx, dsn, mailmap.Options{SecretKey: testKey, NoHeaderBackfill: true})
			if err != nil {
				t.Fatal(err)
			}
			check(s, inbox)
			s.Close()
			s = openDSN(t, dsn)
			waitBackfill()
			check(s, inbox)

			// New mail is indexed as it is stored.
			if _, err := s.AppendMessage(ctx, u.ID, inbox.ID, []byte(corpus[1]), nil, time.Time{}); err != nil {
				t.Fatal(err)
			}
			waitBackfill()

			// Expunged bodies take their rows.
			for _, mb := range []mailmap.Mailbox{inbox, arch} {
				msgs, _ := s.Messages(ctx, u.ID, mb.ID)
				var us []uint32
				for _, m := range msgs {
					us = append(us, m.UID)
				}
				if _, err := s.UpdateFlags(ctx, u.ID, mb.ID, us, mailmap.FlagsAdd, []string{`\Deleted`}); err != nil {
					t.Fatal(err)
				}
				if _, err := s.Expunge(ctx, u.ID, mb.ID, nil); err != nil {
					t.Fatal(err)
				}
			}
			if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM message_headers`).Scan(&rows); err != nil || rows != 0 {
				t.Errorf("after expunging everything: %d index rows, %v", rows, err)
			}
		})
	}
}

// TestIndexHeaderDecoding: the decoded values are what SEARCH matches.
func TestIndexHeaderDecoding(t *testing.T) {
	c := storetest.HeaderCorpus()
	for _, tc := range []struct {
		raw  string
		key  string
		want []string
	}{
		{c[1], "Subject", []string{"Café meeting"}},
		{c[1], "From", []string{"Björn <bjorn@example.test>"}},
		{c[2], "Subject", []string{"a subject that is folded over three lines"}},
		{c[3], "From", nil},
		{c[6], "Subject", []string{"first dup", "second"}},
		{c[6], "Cc", []string{"x@example.test", "y@example.test"}},
		{c[7], "Subject", []string{"header only"}},
		{c[10], "From", nil},
		{c[17], "Cc", []string{""}},
	} {
		h := mailmap.IndexHeader([]byte(tc.raw))
		got, _ := h.Decoded(tc.key)
		if len(got) != len(tc.want) || (got == nil) != (tc.want == nil) {
			t.Errorf("%.30q %s: %q, want %q", tc.raw, tc.key, got, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("%.30q %s: %q, want %q", tc.raw, tc.key, got, tc.want)
			}
		}
	}
}
