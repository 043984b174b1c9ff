package storetest

import (
	"context"
	"testing"

	"github.com/bmgate/bmgate/mailmap"
)

func names(mbs []mailmap.Mailbox) []string {
	out := make([]string, len(mbs))
	for i, m := range mbs {
		out[i] = m.Name
	}
	return out
}

func testDefaultMailboxes(t *testing.T, s mailmap.Store) {
	ctx := context.Background()
	u := newUser(t, s, "alice")
	mbs, err := s.Mailboxes(ctx, u.ID)
	noErr(t, err, "Mailboxes")
	want := map[string]string{
		"INBOX": "", "Sent": mailmap.SpecialSent, "Drafts": mailmap.SpecialDrafts, "Trash": mailmap.SpecialTrash,
		"Junk": mailmap.SpecialJunk, "Archive": mailmap.SpecialArchive,
	}
	if len(mbs) != len(want) {
		t.Fatalf("new user has mailboxes %v", names(mbs))
	}
	if mbs[0].Name != "INBOX" {
		t.Fatalf("Mailboxes does not list INBOX first: %v", names(mbs))
	}
	validities := map[uint32]bool{}
	for _, m := range mbs {
		use, ok := want[m.Name]
		if !ok || m.SpecialUse != use || !m.Subscribed || m.UserID != u.ID || m.UIDNext != 1 || m.UIDValidity == 0 || m.HighestModSeq == 0 {
			t.Fatalf("default mailbox %+v", m)
		}
		if validities[m.UIDValidity] {
			t.Fatalf("two mailboxes share UIDVALIDITY %d", m.UIDValidity)
		}
		validities[m.UIDValidity] = true
		if use != "" {
			byUse, err := s.MailboxBySpecialUse(ctx, u.ID, use)
			noErr(t, err, "MailboxBySpecialUse")
			if byUse != m {
				t.Fatalf("MailboxBySpecialUse(%s) = %+v, want %+v", use, byUse, m)
			}
		}
		byID, err := s.MailboxByID(ctx, u.ID, m.ID)
		noErr(t, err, "MailboxByID")
		if byID != m {
			t.Fatalf("MailboxByID = %+v, want %+v", byID, m)
		}
	}
	// INBOX is case-insensitive; other names are not.
	for _, n := range []string{"inbox", "InBoX", "INBOX"} {
		if m := mailbox(t, s, u.ID, n); m.Name != "INBOX" {
			t.Fatalf("Mailbox(%q).Name = %q", n, m.Name)
		}
	}
	_, err = s.Mailbox(ctx, u.ID, "sent")
	wantErr(t, err, mailmap.ErrNotFound, `Mailbox("sent")`)
	_, err = s.MailboxBySpecialUse(ctx, u.ID, "")
	wantErr(t, err, mailmap.ErrNotFound, `MailboxBySpecialUse("")`)
	// UIDVALIDITY is stable: reading again gives the same values.
	again, err := s.Mailboxes(ctx, u.ID)
	noErr(t, err, "Mailboxes")
	for i := range again {
		if again[i] != mbs[i] {
			t.Fatalf("mailbox changed between reads: %+v vs %+v", again[i], mbs[i])
		}
	}
}

func testCreateMailbox(t *testing.T, s mailmap.Store) {
	ctx := context.Background()
	u := newUser(t, s, "alice")
	m, err := s.CreateMailbox(ctx, u.ID, "Projects/2026/Q1", "")
	noErr(t, err, "CreateMailbox")
	if m.Name != "Projects/2026/Q1" || m.Subscribed || m.UIDNext != 1 || m.UIDValidity == 0 || m.ID == 0 {
		t.Fatalf("CreateMailbox = %+v", m)
	}
	// Missing parents were created.
	for _, n := range []string{"Projects", "Projects/2026"} {
		mailbox(t, s, u.ID, n)
	}
	_, err = s.CreateMailbox(ctx, u.ID, "Projects/2026/Q1", "")
	wantErr(t, err, mailmap.ErrExists, "CreateMailbox duplicate")
	_, err = s.CreateMailbox(ctx, u.ID, "inbox", "")
	wantErr(t, err, mailmap.ErrExists, "CreateMailbox(inbox)")
	// A trailing delimiter only announces children (RFC 9051 §6.3.4).
	m2, err := s.CreateMailbox(ctx, u.ID, "Lists/", "")
	noErr(t, err, "CreateMailbox(Lists/)")
	if m2.Name != "Lists" {
		t.Fatalf("CreateMailbox(Lists/) named %q", m2.Name)
	}
	// Children of INBOX keep the canonical INBOX spelling.
	m3, err := s.CreateMailbox(ctx, u.ID, "inbox/Sub", "")
	noErr(t, err, "CreateMailbox(inbox/Sub)")
	if m3.Name != "INBOX/Sub" {
		t.Fatalf("CreateMailbox(inbox/Sub) named %q", m3.Name)
	}
	// Other names are case-sensitive.
	_, err = s.CreateMailbox(ctx, u.ID, "lists", "")
	noErr(t, err, "CreateMailbox(lists) beside Lists")
	for _, bad := range []string{"", "/", "a//b", "/lead", "wild*", "per%cent", "ctl\x01", "nul\x00", "\xff"} {
		_, err := s.CreateMailbox(ctx, u.ID, bad, "")
		wantErr(t, err, mailmap.ErrInvalidName, "CreateMailbox("+bad+")")
	}
	_, err = s.CreateMailbox(ctx, u.ID, "Other", `\Bogus`)
	wantErr(t, err, mailmap.ErrInvalidName, "CreateMailbox with an unknown special use")
	_, err = s.CreateMailbox(ctx, u.ID, "Sent2", mailmap.SpecialSent)
	wantErr(t, err, mailmap.ErrExists, "a second \\Sent mailbox")
	_, err = s.CreateMailbox(ctx, 99999, "X", "")
	wantErr(t, err, mailmap.ErrNotFound, "CreateMailbox for an unknown user")

	noErr(t, s.SetSubscribed(ctx, u.ID, "Lists", true), "SetSubscribed")
	if !mailbox(t, s, u.ID, "Lists").Subscribed {
		t.Fatal("SetSubscribed(true) did not stick")
	}
	noErr(t, s.SetSubscribed(ctx, u.ID, "INBOX", false), "SetSubscribed(INBOX, false)")
	if mailbox(t, s, u.ID, "INBOX").Subscribed {
		t.Fatal("SetSubscribed(false) did not stick")
	}
	wantErr(t, s.SetSubscribed(ctx, u.ID, "Nope", true), mailmap.ErrNotFound, "SetSubscribed unknown")
}

func testRenameMailbox(t *testing.T, s mailmap.Store) {
	ctx := context.Background()
	u := newUser(t, s, "alice")
	for _, n := range []string{"A/B/C", "A/D", "AB"} {
		_, err := s.CreateMailbox(ctx, u.ID, n, "")
		noErr(t, err, "CreateMailbox")
	}
	a := mailbox(t, s, u.ID, "A")
	abc := mailbox(t, s, u.ID, "A/B/C")
	msg := appendMsg(t, s, u.ID, abc.ID, message("x"))

	noErr(t, s.RenameMailbox(ctx, u.ID, "A", "Z/Y"), "RenameMailbox with children")
	mbs, err := s.Mailboxes(ctx, u.ID)
	noErr(t, err, "Mailboxes")
	got := map[string]mailmap.Mailbox{}
	for _, m := range mbs {
		got[m.Name] = m
	}
	for _, n := range []string{"A", "A/B", "A/B/C", "A/D"} {
		if _, ok := got[n]; ok {
			t.Fatalf("%q still exists after rename: %v", n, names(mbs))
		}
	}
	for _, n := range []string{"Z", "Z/Y", "Z/Y/B", "Z/Y/B/C", "Z/Y/D", "AB"} {
		if _, ok := got[n]; !ok {
			t.Fatalf("%q missing after rename: %v", n, names(mbs))
		}
	}
	// The renamed mailboxes are the same mailboxes: same id, UIDVALIDITY, messages.
	if m := got["Z/Y"]; m.ID != a.ID || m.UIDValidity != a.UIDValidity {
		t.Fatalf("renamed A = %+v, was %+v", m, a)
	}
	c := got["Z/Y/B/C"]
	if c.ID != abc.ID || c.UIDValidity != abc.UIDValidity || c.UIDNext != 2 {
		t.Fatalf("renamed A/B/C = %+v, was %+v", c, abc)
	}
	if ms := messages(t, s, u.ID, c.ID); len(ms) != 1 || ms[0].UID != msg.UID {
		t.Fatalf("messages after rename: %+v", ms)
	}

	wantErr(t, s.RenameMailbox(ctx, u.ID, "INBOX", "Old"), mailmap.ErrProtected, "RenameMailbox(INBOX)")
	wantErr(t, s.RenameMailbox(ctx, u.ID, "inbox", "Old"), mailmap.ErrProtected, "RenameMailbox(inbox)")
	wantErr(t, s.RenameMailbox(ctx, u.ID, "AB", "Z"), mailmap.ErrExists, "RenameMailbox onto an existing name")
	wantErr(t, s.RenameMailbox(ctx, u.ID, "AB", "inbox"), mailmap.ErrExists, "RenameMailbox onto INBOX")
	wantErr(t, s.RenameMailbox(ctx, u.ID, "Nope", "X"), mailmap.ErrNotFound, "RenameMailbox unknown")
	wantErr(t, s.RenameMailbox(ctx, u.ID, "Z", "Z/Sub"), mailmap.ErrInvalidName, "RenameMailbox under itself")
	wantErr(t, s.RenameMailbox(ctx, u.ID, "AB", "bad*"), mailmap.ErrInvalidName, "RenameMailbox to a bad name")

	// A special-use folder may be renamed and keeps its use.
	sent := mailbox(t, s, u.ID, "Sent")
	noErr(t, s.RenameMailbox(ctx, u.ID, "Sent", "Sent Items"), "RenameMailbox(Sent)")
	m, err := s.MailboxBySpecialUse(ctx, u.ID, mailmap.SpecialSent)
	noErr(t, err, "MailboxBySpecialUse after rename")
	if m.ID != sent.ID || m.Name != "Sent Items" || m.UIDValidity != sent.UIDValidity {
		t.Fatalf("renamed Sent = %+v", m)
	}
}

func testDeleteMailbox(t *testing.T, s mailmap.Store) {
	ctx := context.Background()
	u := newUser(t, s, "alice")
	for _, n := range []string{"INBOX", "inbox", "Sent", "Drafts", "Trash", "Junk", "Archive"} {
		wantErr(t, s.DeleteMailbox(ctx, u.ID, n), mailmap.ErrProtected, "DeleteMailbox("+n+")")
	}
	_, err := s.CreateMailbox(ctx, u.ID, "P/C", "")
	noErr(t, err, "CreateMailbox")
	wantErr(t, s.DeleteMailbox(ctx, u.ID, "P"), mailmap.ErrHasChildren, "DeleteMailbox with children")
	c := mailbox(t, s, u.ID, "P/C")
	m := appendMsg(t, s, u.ID, c.ID, message("1"))
	// A copy elsewhere shares the bytes; deleting one mailbox must keep them.
	in := mailbox(t, s, u.ID, "INBOX")
	_, dst, err := s.CopyMessages(ctx, u.ID, c.ID, []uint32{m.UID}, in.ID)
	noErr(t, err, "CopyMessages")
	noErr(t, s.DeleteMailbox(ctx, u.ID, "P/C"), "DeleteMailbox(P/C)")
	_, err = s.MailboxByID(ctx, u.ID, c.ID)
	wantErr(t, err, mailmap.ErrNotFound, "MailboxByID after delete")
	_, err = s.Messages(ctx, u.ID, c.ID)
	wantErr(t, err, mailmap.ErrNotFound, "Messages of a deleted mailbox")
	raw, err := s.MessageRaw(ctx, u.ID, in.ID, dst[0])
	noErr(t, err, "MessageRaw of the copy")
	if string(raw) != string(message("1")) {
		t.Fatalf("copy's bytes changed after the original's mailbox was deleted")
	}
	noErr(t, s.DeleteMailbox(ctx, u.ID, "P"), "DeleteMailbox(P) once empty of children")
	wantErr(t, s.DeleteMailbox(ctx, u.ID, "P"), mailmap.ErrNotFound, "DeleteMailbox twice")
	// Only the copy counts against the quota now.
	checkUsage(t, s, u.ID, in.ID, int64(len(message("1"))))
}

func testRecreateMailbox(t *testing.T, s mailmap.Store) {
	ctx := context.Background()
	u := newUser(t, s, "alice")
	old, err := s.CreateMailbox(ctx, u.ID, "Box", "")
	noErr(t, err, "CreateMailbox")
	for i := range 3 {
		appendMsg(t, s, u.ID, old.ID, message(string(rune('a'+i))))
	}
	noErr(t, s.DeleteMailbox(ctx, u.ID, "Box"), "DeleteMailbox")
	again, err := s.CreateMailbox(ctx, u.ID, "Box", "")
	noErr(t, err, "CreateMailbox again")
	if again.UIDValidity == old.UIDValidity || again.ID == old.ID {
		t.Fatalf("re-created mailbox %+v reuses the old one's identity %+v (RFC 9051 §2.3.1.1)", again, old)
	}
	// A renamed-away name re-created also gets a new UIDVALIDITY.
	noErr(t, s.RenameMailbox(ctx, u.ID, "Box", "Box2"), "RenameMailbox")
	third, err := s.CreateMailbox(ctx, u.ID, "Box", "")
	noErr(t, err, "CreateMailbox third")
	if third.UIDValidity == again.UIDValidity || third.UIDValidity == old.UIDValidity {
		t.Fatalf("UIDVALIDITY reused: %d, %d, %d", old.UIDValidity, again.UIDValidity, third.UIDValidity)
	}
}
