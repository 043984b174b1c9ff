package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/bmgate/bmgate/mailmap"
)

// testSenderLists: each user has a mode (blacklist by default) and two
// lists; SenderAllowed applies them as PyBitmessage does (only enabled
// entries count), and one user's lists never touch another's.
func testSenderLists(t *testing.T, s mailmap.Store) {
	ctx := context.Background()
	a, b := newUser(t, s, "alice"), newUser(t, s, "bob")
	const spammer, friend, other = "BM-spammer", "BM-friend", "BM-other"
	allowed := func(u mailmap.User, addr string, want, wantWhite bool) {
		t.Helper()
		ok, white, err := s.SenderAllowed(ctx, u.ID, addr)
		noErr(t, err, "SenderAllowed")
		if ok != want || white != wantWhite {
			t.Fatalf("SenderAllowed(%s, %s) = %v, %v; want %v, %v", u.Name, addr, ok, white, want, wantWhite)
		}
	}
	if m, err := s.ListMode(ctx, a.ID); err != nil || m != mailmap.Blacklist {
		t.Fatalf("ListMode of a new user = %q, %v; want black", m, err)
	}
	allowed(a, spammer, true, false)

	e, err := s.AddListEntry(ctx, mailmap.ListEntry{UserID: a.ID, Kind: mailmap.Blacklist, Address: spammer, Label: "spam", Enabled: true})
	noErr(t, err, "AddListEntry")
	if e.ID == 0 || e.CreatedAt.IsZero() {
		t.Fatalf("AddListEntry returned %+v", e)
	}
	_, err = s.AddListEntry(ctx, mailmap.ListEntry{UserID: a.ID, Kind: mailmap.Blacklist, Address: spammer, Enabled: true})
	wantErr(t, err, mailmap.ErrExists, "AddListEntry twice")
	_, err = s.AddListEntry(ctx, mailmap.ListEntry{UserID: a.ID, Kind: "grey", Address: spammer})
	wantErr(t, err, mailmap.ErrInvalidName, "AddListEntry of an unknown kind")
	_, err = s.AddListEntry(ctx, mailmap.ListEntry{UserID: 1 << 40, Kind: mailmap.Blacklist, Address: spammer})
	wantErr(t, err, mailmap.ErrNotFound, "AddListEntry for an unknown user")
	allowed(a, spammer, false, false)
	allowed(a, friend, true, false)
	allowed(b, spammer, true, false) // bob's lists are empty

	// A disabled entry does not count.
	noErr(t, s.SetListEntryEnabled(ctx, a.ID, mailmap.Blacklist, spammer, false), "disable")
	allowed(a, spammer, true, false)
	noErr(t, s.SetListEntryEnabled(ctx, a.ID, mailmap.Blacklist, spammer, true), "enable")
	wantErr(t, s.SetListEntryEnabled(ctx, b.ID, mailmap.Blacklist, spammer, true), mailmap.ErrNotFound, "enable bob's missing entry")

	// Whitelist mode: only enabled whitelist entries get through; the
	// blacklist no longer applies.
	_, err = s.AddListEntry(ctx, mailmap.ListEntry{UserID: a.ID, Kind: mailmap.Whitelist, Address: friend, Label: "friend", Enabled: true})
	noErr(t, err, "AddListEntry white")
	allowed(a, friend, true, true) // whitelisted even in blacklist mode
	noErr(t, s.SetListMode(ctx, a.ID, mailmap.Whitelist), "SetListMode white")
	wantErr(t, s.SetListMode(ctx, a.ID, "grey"), mailmap.ErrInvalidName, "SetListMode grey")
	wantErr(t, s.SetListMode(ctx, 1<<40, mailmap.Whitelist), mailmap.ErrNotFound, "SetListMode unknown user")
	if m, err := s.ListMode(ctx, a.ID); err != nil || m != mailmap.Whitelist {
		t.Fatalf("ListMode = %q, %v; want white", m, err)
	}
	allowed(a, friend, true, true)
	allowed(a, other, false, false)
	allowed(a, spammer, false, false)
	allowed(b, other, true, false)
	noErr(t, s.SetListEntryEnabled(ctx, a.ID, mailmap.Whitelist, friend, false), "disable friend")
	allowed(a, friend, false, false)

	entries, err := s.ListEntries(ctx, a.ID)
	noErr(t, err, "ListEntries")
	if len(entries) != 2 || entries[0].Kind != mailmap.Blacklist || entries[0].Address != spammer || entries[0].Label != "spam" || !entries[0].Enabled ||
		entries[1].Kind != mailmap.Whitelist || entries[1].Address != friend || entries[1].Enabled {
		t.Fatalf("ListEntries = %+v", entries)
	}
	if entries, _ := s.ListEntries(ctx, b.ID); len(entries) != 0 {
		t.Fatalf("bob's ListEntries = %+v", entries)
	}
	wantErr(t, s.DeleteListEntry(ctx, b.ID, mailmap.Blacklist, spammer), mailmap.ErrNotFound, "DeleteListEntry of another user's entry")
	noErr(t, s.DeleteListEntry(ctx, a.ID, mailmap.Blacklist, spammer), "DeleteListEntry")
	wantErr(t, s.DeleteListEntry(ctx, a.ID, mailmap.Blacklist, spammer), mailmap.ErrNotFound, "DeleteListEntry twice")
	if entries, _ := s.ListEntries(ctx, a.ID); len(entries) != 1 {
		t.Fatalf("ListEntries after delete = %+v", entries)
	}
	_, _, err = s.SenderAllowed(ctx, 1<<40, spammer)
	wantErr(t, err, mailmap.ErrNotFound, "SenderAllowed of an unknown user")
	// Deleting the user takes the lists with it.
	noErr(t, s.DeleteUser(ctx, a.ID), "DeleteUser")
	if entries, _ := s.ListEntries(ctx, a.ID); len(entries) != 0 {
		t.Fatalf("ListEntries of a deleted user = %+v", entries)
	}
}

// testIdentitySettings: SetIdentityDifficulty writes the demand and
// clears LastPubkeySent; SetMailingList sets the flag and name; both act
// on the user's own identities only, and a chan cannot be a mailing list.
func testIdentitySettings(t *testing.T, s mailmap.Store) {
	ctx := context.Background()
	a, b := newUser(t, s, "alice"), newUser(t, s, "bob")
	id, err := s.AddIdentity(ctx, testIdentity(a.ID, "BM-settings"))
	noErr(t, err, "AddIdentity")
	if id.MailingList || id.MailingListName != "" {
		t.Fatalf("new identity is a mailing list: %+v", id)
	}
	noErr(t, s.MarkPubkeySent(ctx, id.ID, time.Now()), "MarkPubkeySent")
	noErr(t, s.SetIdentityDifficulty(ctx, a.ID, id.ID, 4000, 2000), "SetIdentityDifficulty")
	wantErr(t, s.SetIdentityDifficulty(ctx, b.ID, id.ID, 1, 1), mailmap.ErrNotFound, "SetIdentityDifficulty by another user")
	got, err := s.IdentityByAddress(ctx, id.Address)
	noErr(t, err, "IdentityByAddress")
	if got.NonceTrialsPerByte != 4000 || got.ExtraBytes != 2000 || !got.LastPubkeySent.IsZero() {
		t.Fatalf("after SetIdentityDifficulty: ntpb %d extra %d last sent %v", got.NonceTrialsPerByte, got.ExtraBytes, got.LastPubkeySent)
	}

	noErr(t, s.SetMailingList(ctx, a.ID, id.ID, true, "Friends"), "SetMailingList")
	wantErr(t, s.SetMailingList(ctx, b.ID, id.ID, true, "x"), mailmap.ErrNotFound, "SetMailingList by another user")
	ids, err := s.Identities(ctx, a.ID)
	noErr(t, err, "Identities")
	if len(ids) != 1 || !ids[0].MailingList || ids[0].MailingListName != "Friends" {
		t.Fatalf("after SetMailingList: %+v", ids)
	}
	all, err := s.AllIdentities(ctx)
	noErr(t, err, "AllIdentities")
	if len(all) != 1 || !all[0].MailingList {
		t.Fatalf("AllIdentities after SetMailingList: %+v", all)
	}
	noErr(t, s.SetMailingList(ctx, a.ID, id.ID, false, ""), "SetMailingList off")
	if got, _ := s.IdentityByAddress(ctx, id.Address); got.MailingList || got.MailingListName != "" {
		t.Fatalf("after SetMailingList off: %+v", got)
	}
	ch := testIdentity(a.ID, "BM-chan")
	ch.Kind = mailmap.KindChan
	ch, err = s.AddIdentity(ctx, ch)
	noErr(t, err, "AddIdentity chan")
	wantErr(t, s.SetMailingList(ctx, a.ID, ch.ID, true, "x"), mailmap.ErrNotFound, "SetMailingList of a chan")

	// AddIdentity (and so Import) keeps the setting.
	ml := testIdentity(a.ID, "BM-imported-list")
	ml.MailingList, ml.MailingListName = true, "Imported"
	_, err = s.AddIdentity(ctx, ml)
	noErr(t, err, "AddIdentity of a mailing list")
	if got, _ := s.IdentityByAddress(ctx, ml.Address); !got.MailingList || got.MailingListName != "Imported" {
		t.Fatalf("AddIdentity of a mailing list stored %+v", got)
	}
	bad := testIdentity(a.ID, "BM-chan-list")
	bad.Kind, bad.MailingList = mailmap.KindChan, true
	_, err = s.AddIdentity(ctx, bad)
	wantErr(t, err, mailmap.ErrInvalidName, "AddIdentity of a chan that is a mailing list")
}

// testEnqueueOutboxOnce: rows are enqueued once per (user, key), however
// often they are offered; other users' keys are their own; Expire prunes
// a key with its object.
func testEnqueueOutboxOnce(t *testing.T, s mailmap.Store) {
	ctx := context.Background()
	now := time.Now().Truncate(time.Second)
	a, b := newUser(t, s, "alice"), newUser(t, s, "bob")
	row := func(u mailmap.User) mailmap.OutboxItem {
		return mailmap.OutboxItem{UserID: u.ID, FromAddress: "BM-list", ToAddress: "BM-list", Kind: mailmap.OutboxBroadcast,
			Subject: "[list] s", Body: "b", Encoding: 2, State: mailmap.OutboxQueued, NextAttempt: now, TTL: time.Hour}
	}
	o := object(70, 1, now.Add(time.Hour))
	_, err := s.Put(ctx, o)
	noErr(t, err, "Put")
	key := o.Hash[:]
	out, dup, err := s.EnqueueOutboxOnce(ctx, a.ID, key, []mailmap.OutboxItem{row(a)})
	noErr(t, err, "EnqueueOutboxOnce")
	if dup || len(out) != 1 || out[0].ID == 0 {
		t.Fatalf("first EnqueueOutboxOnce = %+v, dup %v", out, dup)
	}
	out, dup, err = s.EnqueueOutboxOnce(ctx, a.ID, key, []mailmap.OutboxItem{row(a)})
	noErr(t, err, "EnqueueOutboxOnce again")
	if !dup || len(out) != 0 {
		t.Fatalf("second EnqueueOutboxOnce = %+v, dup %v", out, dup)
	}
	if items, _ := s.UserOutbox(ctx, a.ID); len(items) != 1 {
		t.Fatalf("%d rows after two EnqueueOutboxOnce, want 1", len(items))
	}
	_, dup, err = s.EnqueueOutboxOnce(ctx, b.ID, key, []mailmap.OutboxItem{row(b)})
	noErr(t, err, "EnqueueOutboxOnce of bob")
	if dup {
		t.Fatal("bob's key collided with alice's")
	}
	_, _, err = s.EnqueueOutboxOnce(ctx, a.ID, []byte("k2"), []mailmap.OutboxItem{row(b)})
	wantErr(t, err, mailmap.ErrInvalidName, "EnqueueOutboxOnce with another user's row")
	_, _, err = s.EnqueueOutboxOnce(ctx, a.ID, nil, []mailmap.OutboxItem{row(a)})
	wantErr(t, err, mailmap.ErrInvalidName, "EnqueueOutboxOnce without a key")
	// A refused enqueue (rate) records no key.
	noErr(t, s.SetSendRate(ctx, a.ID, 1), "SetSendRate")
	_, _, err = s.EnqueueOutboxOnce(ctx, a.ID, []byte("k3"), []mailmap.OutboxItem{row(a)})
	wantErr(t, err, mailmap.ErrRateLimited, "EnqueueOutboxOnce over the rate")
	noErr(t, s.SetSendRate(ctx, a.ID, 0), "SetSendRate 0")
	if _, dup, err := s.EnqueueOutboxOnce(ctx, a.ID, []byte("k3"), []mailmap.OutboxItem{row(a)}); err != nil || dup {
		t.Fatalf("EnqueueOutboxOnce after a refusal = dup %v, %v", dup, err)
	}
	// The key goes with its object.
	_, err = s.Expire(ctx, now.Add(2*time.Hour))
	noErr(t, err, "Expire")
	if _, dup, err := s.EnqueueOutboxOnce(ctx, a.ID, key, []mailmap.OutboxItem{row(a)}); err != nil || dup {
		t.Fatalf("EnqueueOutboxOnce after Expire = dup %v, %v", dup, err)
	}
}
