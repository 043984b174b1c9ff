package storetest

import (
	"bytes"
	"context"
	"slices"
	"testing"
	"time"

	"github.com/bmgate/bmgate/mailmap"
)

// accountState is what an import may write for a user, to compare.
func accountState(t *testing.T, s mailmap.Store, userID int64) map[string]int {
	t.Helper()
	ctx := context.Background()
	out := map[string]int{}
	ids, err := s.Identities(ctx, userID)
	noErr(t, err, "Identities")
	out["identities"] = len(ids)
	cs, err := s.Contacts(ctx, userID)
	noErr(t, err, "Contacts")
	out["contacts"] = len(cs)
	ss, err := s.Subscriptions(ctx, userID)
	noErr(t, err, "Subscriptions")
	out["subscriptions"] = len(ss)
	ob, err := s.UserOutbox(ctx, userID)
	noErr(t, err, "UserOutbox")
	out["outbox"] = len(ob)
	mbs, err := s.Mailboxes(ctx, userID)
	noErr(t, err, "Mailboxes")
	for _, mb := range mbs {
		out["folder "+mb.Name] = len(messages(t, s, userID, mb.ID))
	}
	return out
}

// testImport: Import writes a batch in one transaction, counts what is
// already there instead of writing it again, and on any error (another
// user's address, quota) writes nothing.
func testImport(t *testing.T, s mailmap.Store) {
	ctx := context.Background()
	alice := newUser(t, s, "alice")
	bob := newUser(t, s, "bob")
	chanID := testIdentity(0, "BM-2cImpChan")
	chanID.Kind, chanID.PublishPubkey, chanID.ChanPassphrase = mailmap.KindChan, false, "imported chan"
	ack := append([]byte{0, 0, 0, 2, 1, 1}, bytes.Repeat([]byte{0xac}, 32)...)
	date := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	batch := func(userID int64) mailmap.ImportBatch {
		return mailmap.ImportBatch{
			UserID:        userID,
			Identities:    []mailmap.Identity{testIdentity(0, "BM-2cImpA"), chanID},
			Subscriptions: []mailmap.Subscription{{Address: "BM-2cNews", Label: "News"}},
			Contacts:      []mailmap.Contact{{Alias: "Carol@Example.org", Address: "BM-2cCarol"}},
			Folders:       []mailmap.ImportFolder{{Name: "Chans/imported"}},
			Messages: []mailmap.ImportMessage{
				{Folder: mailmap.ImportFolder{Name: "INBOX"}, Key: []byte("k1"), Raw: message("i1"), Flags: []string{`\Seen`}, Date: date},
				{Folder: mailmap.ImportFolder{Name: "INBOX"}, Key: []byte("k2"), Raw: message("i2"), Date: date},
				// Its Message-ID is in INBOX already: filed once.
				{Folder: mailmap.ImportFolder{Name: "INBOX"}, Key: []byte("k3"), Raw: message("i2"), Date: date},
				{Folder: mailmap.ImportFolder{Name: "Sent items", SpecialUse: mailmap.SpecialSent}, Key: []byte("k4"), Raw: message("s1"), Date: date},
				{Folder: mailmap.ImportFolder{Name: "Subscriptions/News"}, Key: []byte("k5"), Raw: message("b1"), Date: date},
			},
			Outbox: []mailmap.OutboxItem{{FromAddress: "BM-2cImpA", ToAddress: "BM-2cDave", Kind: mailmap.OutboxMsg,
				Subject: "s", Body: "b", Encoding: 2, State: mailmap.OutboxSent, TTL: time.Hour, AckData: ack, NextAttempt: date}},
			ListEntries: []mailmap.ListEntry{{Kind: mailmap.Blacklist, Address: "BM-2cSpam", Label: "spam", Enabled: true},
				{Kind: mailmap.Whitelist, Address: "BM-2cFriend", Enabled: false}},
			ListMode: mailmap.Whitelist,
		}
	}
	res, err := s.Import(ctx, batch(alice.ID))
	noErr(t, err, "Import")
	if res.Identities != 2 || res.Subscriptions != 1 || res.Contacts != 1 || res.Outbox != 1 ||
		res.Filed["INBOX"] != 2 || res.Present["INBOX"] != 1 || res.Filed["Sent"] != 1 || res.Filed["Subscriptions/News"] != 1 {
		t.Fatalf("first Import = %+v", res)
	}
	want := accountState(t, s, alice.ID)
	if want["identities"] != 2 || want["folder INBOX"] != 2 || want["folder Sent"] != 1 || want["folder Sent items"] != 0 ||
		want["folder Chans/imported"] != 0 || want["folder Subscriptions/News"] != 1 || want["outbox"] != 1 {
		t.Fatalf("after Import: %v", want)
	}
	for _, name := range []string{"Chans", "Chans/imported", "Subscriptions", "Subscriptions/News"} {
		if mb := mailbox(t, s, alice.ID, name); !mb.Subscribed {
			t.Errorf("folder %s not subscribed", name)
		}
	}
	in := messages(t, s, alice.ID, mailbox(t, s, alice.ID, "INBOX").ID)
	if !slices.Equal(in[0].Flags, []string{`\Seen`}) || !in[0].InternalDate.Equal(date) || len(in[1].Flags) != 0 {
		t.Errorf("INBOX after Import: %+v", in)
	}
	ids, err := s.Identities(ctx, alice.ID)
	noErr(t, err, "Identities")
	if ids[1].ChanPassphrase != "imported chan" || ids[1].Kind != mailmap.KindChan || ids[0].UserID != alice.ID {
		t.Errorf("identities after Import: %+v", ids)
	}
	if r, err := s.ResolveAlias(ctx, alice.ID, "carol@example.org"); err != nil || r != "BM-2cCarol" {
		t.Errorf("ResolveAlias = %q, %v", r, err)
	}
	if it, err := s.OutboxByAckData(ctx, ack); err != nil || it.UserID != alice.ID || it.State != mailmap.OutboxSent {
		t.Errorf("OutboxByAckData = %+v, %v", it, err)
	}
	if ls, err := s.ListEntries(ctx, alice.ID); err != nil || len(ls) != 2 || ls[0].Address != "BM-2cSpam" || ls[0].Label != "spam" ||
		!ls[0].Enabled || ls[1].Kind != mailmap.Whitelist || ls[1].Enabled || res.ListEntries != 2 {
		t.Errorf("sender lists after Import: %+v, %v (result %+v)", ls, err, res)
	}
	if m, err := s.ListMode(ctx, alice.ID); err != nil || m != mailmap.Whitelist {
		t.Errorf("list mode after Import: %q, %v", m, err)
	}

	// Again: everything is there, nothing is written.
	res, err = s.Import(ctx, batch(alice.ID))
	noErr(t, err, "Import again")
	if res.Identities+res.Subscriptions+res.Contacts+res.Outbox != 0 || len(res.Filed) != 0 ||
		res.IdentitiesPresent != 2 || res.OutboxPresent != 1 || res.Present["INBOX"] != 3 || res.Present["Sent"] != 1 ||
		res.ListEntries != 0 || res.ListEntriesPresent != 2 {
		t.Errorf("second Import = %+v", res)
	}
	if got := accountState(t, s, alice.ID); !mapsEqual(got, want) {
		t.Errorf("second Import changed %v into %v", want, got)
	}

	// Another user: alice's address is hers, and nothing of the batch is
	// written; the chan alone may be shared.
	before := accountState(t, s, bob.ID)
	b := batch(bob.ID)
	b.Outbox = nil
	slices.Reverse(b.Identities) // the chan, which bob may join, is written first
	_, err = s.Import(ctx, b)
	wantErr(t, err, mailmap.ErrOwned, "Import of another user's address")
	if got := accountState(t, s, bob.ID); !mapsEqual(got, before) {
		t.Errorf("failed Import wrote %v (before %v)", got, before)
	}
	if ls, _ := s.ListEntries(ctx, bob.ID); len(ls) != 0 {
		t.Errorf("failed Import wrote sender lists: %+v", ls)
	}
	if m, _ := s.ListMode(ctx, bob.ID); m != mailmap.Blacklist {
		t.Errorf("failed Import set the list mode to %q", m)
	}
	res, err = s.Import(ctx, mailmap.ImportBatch{UserID: bob.ID, Identities: []mailmap.Identity{chanID}})
	if err != nil || res.Identities != 1 {
		t.Errorf("Import of a chan another user has: %+v, %v", res, err)
	}

	// Over quota: the identities written before the message are undone too.
	carol := newUser(t, s, "carol")
	noErr(t, s.SetQuota(ctx, carol.ID, 10), "SetQuota")
	before = accountState(t, s, carol.ID)
	_, err = s.Import(ctx, mailmap.ImportBatch{UserID: carol.ID, Identities: []mailmap.Identity{testIdentity(0, "BM-2cImpC")},
		Messages: []mailmap.ImportMessage{{Folder: mailmap.ImportFolder{Name: "Archive/PyBitmessage"}, Key: []byte("k"), Raw: message("big"), Date: date}}})
	wantErr(t, err, mailmap.ErrOverQuota, "Import over quota")
	if got := accountState(t, s, carol.ID); !mapsEqual(got, before) {
		t.Errorf("failed Import wrote %v (before %v)", got, before)
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
