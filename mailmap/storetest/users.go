package storetest

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/bmgate/bmgate/mailmap"
)

func testUsers(t *testing.T, s mailmap.Store) {
	ctx := context.Background()
	u := newUser(t, s, "Alice")
	if u.ID == 0 || u.Name != "Alice" || u.Disabled || u.DeliveryReports || u.QuotaBytes != 0 || u.CreatedAt.IsZero() {
		t.Fatalf("CreateUser returned %+v", u)
	}
	_, err := s.CreateUser(ctx, "alice", "other")
	wantErr(t, err, mailmap.ErrExists, "CreateUser with the same name in another case")

	got, err := s.Authenticate(ctx, "ALICE", password)
	noErr(t, err, "Authenticate with the right password")
	if got.ID != u.ID || got.Name != "Alice" {
		t.Fatalf("Authenticate returned %+v, want user %d", got, u.ID)
	}
	_, err = s.Authenticate(ctx, "alice", password+"x")
	wantErr(t, err, mailmap.ErrAuthFailed, "Authenticate with a wrong password")
	_, err = s.Authenticate(ctx, "alice", "")
	wantErr(t, err, mailmap.ErrAuthFailed, "Authenticate with an empty password")
	_, err = s.Authenticate(ctx, "nobody", password)
	wantErr(t, err, mailmap.ErrAuthFailed, "Authenticate an unknown user")

	noErr(t, s.SetDisabled(ctx, u.ID, true), "SetDisabled")
	_, err = s.Authenticate(ctx, "alice", password)
	wantErr(t, err, mailmap.ErrDisabled, "Authenticate a disabled user")
	_, err = s.Authenticate(ctx, "alice", "wrong")
	wantErr(t, err, mailmap.ErrAuthFailed, "Authenticate a disabled user with a wrong password")
	noErr(t, s.SetDisabled(ctx, u.ID, false), "SetDisabled(false)")

	noErr(t, s.SetPassword(ctx, u.ID, "new secret"), "SetPassword")
	_, err = s.Authenticate(ctx, "alice", password)
	wantErr(t, err, mailmap.ErrAuthFailed, "Authenticate with the old password")
	_, err = s.Authenticate(ctx, "alice", "new secret")
	noErr(t, err, "Authenticate with the new password")
	wantErr(t, s.SetPassword(ctx, u.ID, ""), mailmap.ErrInvalidName, "SetPassword empty")

	noErr(t, s.SetDeliveryReports(ctx, u.ID, true), "SetDeliveryReports")
	noErr(t, s.SetQuota(ctx, u.ID, 12345), "SetQuota")
	got, err = s.User(ctx, u.ID)
	noErr(t, err, "User")
	if !got.DeliveryReports || got.QuotaBytes != 12345 || got.Disabled || !got.CreatedAt.Equal(u.CreatedAt) {
		t.Fatalf("User after settings: %+v (created %v)", got, u.CreatedAt)
	}
	got, err = s.UserByName(ctx, "aLiCe")
	noErr(t, err, "UserByName")
	if got.ID != u.ID {
		t.Fatalf("UserByName: got user %d, want %d", got.ID, u.ID)
	}
	_, err = s.UserByName(ctx, "bob")
	wantErr(t, err, mailmap.ErrNotFound, "UserByName unknown")
	_, err = s.User(ctx, u.ID+1000)
	wantErr(t, err, mailmap.ErrNotFound, "User unknown")

	b := newUser(t, s, "bob@example.org")
	list, err := s.ListUsers(ctx)
	noErr(t, err, "ListUsers")
	if len(list) != 2 || list[0].ID != u.ID || list[1].ID != b.ID {
		t.Fatalf("ListUsers = %+v", list)
	}
	for _, f := range []func() error{
		func() error { return s.SetPassword(ctx, 99999, "x") },
		func() error { return s.SetDisabled(ctx, 99999, true) },
		func() error { return s.SetDeliveryReports(ctx, 99999, true) },
		func() error { return s.SetQuota(ctx, 99999, 1) },
		func() error { return s.DeleteUser(ctx, 99999) },
	} {
		wantErr(t, f(), mailmap.ErrNotFound, "setting on an unknown user")
	}
}

func testUserNames(t *testing.T, s mailmap.Store) {
	ctx := context.Background()
	for _, name := range []string{"", "a b", "tab\tname", "nul\x00", "\xff\xfe", string(bytes.Repeat([]byte("x"), 300))} {
		_, err := s.CreateUser(ctx, name, "pw")
		wantErr(t, err, mailmap.ErrInvalidName, "CreateUser("+name+")")
	}
	_, err := s.CreateUser(ctx, "carol", "")
	wantErr(t, err, mailmap.ErrInvalidName, "CreateUser with an empty password")
	// Unicode names are case-folded too.
	newUser(t, s, "Émile")
	_, err = s.CreateUser(ctx, "émile", "pw")
	wantErr(t, err, mailmap.ErrExists, "CreateUser(émile) after Émile")
}

func testDeleteUser(t *testing.T, s mailmap.Store) {
	ctx := context.Background()
	a := newUser(t, s, "alice")
	b := newUser(t, s, "bob")
	in := mailbox(t, s, a.ID, "INBOX")
	appendMsg(t, s, a.ID, in.ID, message("1"))
	_, err := s.AddIdentity(ctx, testIdentity(a.ID, "BM-alice"))
	noErr(t, err, "AddIdentity")
	_, err = s.EnqueueOutbox(ctx, []mailmap.OutboxItem{testOutboxItem(a.ID, 1)})
	noErr(t, err, "EnqueueOutbox")

	noErr(t, s.DeleteUser(ctx, a.ID), "DeleteUser")
	_, err = s.User(ctx, a.ID)
	wantErr(t, err, mailmap.ErrNotFound, "User after DeleteUser")
	_, err = s.MailboxByID(ctx, a.ID, in.ID)
	wantErr(t, err, mailmap.ErrNotFound, "mailbox after DeleteUser")
	_, err = s.IdentityByAddress(ctx, "BM-alice")
	wantErr(t, err, mailmap.ErrNotFound, "identity after DeleteUser")
	if ob, err := s.UserOutbox(ctx, a.ID); err != nil || len(ob) != 0 {
		t.Fatalf("outbox after DeleteUser: %v, %v", ob, err)
	}
	if mbs, err := s.Mailboxes(ctx, a.ID); err != nil || len(mbs) != 0 {
		t.Fatalf("Mailboxes after DeleteUser: %v, %v", mbs, err)
	}
	// The other user is untouched, and the name is free again.
	if mbs, err := s.Mailboxes(ctx, b.ID); err != nil || len(mbs) != 6 {
		t.Fatalf("other user's mailboxes after DeleteUser: %d, %v", len(mbs), err)
	}
	a2 := newUser(t, s, "alice")
	if a2.ID == a.ID {
		t.Fatalf("a re-created user reuses id %d", a.ID)
	}
	if m := mailbox(t, s, a2.ID, "INBOX"); m.ID == in.ID {
		t.Fatalf("a re-created user's INBOX reuses mailbox id %d", in.ID)
	}
}

// testIdentity returns an identity with distinct, recognisable keys.
func testIdentity(userID int64, address string) mailmap.Identity {
	sk := bytes.Repeat([]byte{0xA5}, 32)
	ek := bytes.Repeat([]byte{0x5A}, 32)
	copy(sk, address)
	copy(ek[16:], address)
	return mailmap.Identity{
		UserID: userID, Address: address, Label: "label of " + address, Kind: mailmap.KindNormal,
		SigningKey: sk, EncryptionKey: ek, PublishPubkey: true,
		NonceTrialsPerByte: 1000, ExtraBytes: 1 << 63,
	}
}

func sameIdentity(t testing.TB, got, want mailmap.Identity) {
	t.Helper()
	if got.ID != want.ID || got.UserID != want.UserID || got.Address != want.Address || got.Label != want.Label ||
		got.Kind != want.Kind || !bytes.Equal(got.SigningKey, want.SigningKey) ||
		!bytes.Equal(got.EncryptionKey, want.EncryptionKey) || got.PublishPubkey != want.PublishPubkey ||
		got.NonceTrialsPerByte != want.NonceTrialsPerByte || got.ExtraBytes != want.ExtraBytes ||
		!got.LastPubkeySent.Equal(want.LastPubkeySent) || !got.CreatedAt.Equal(want.CreatedAt) {
		t.Fatalf("identity = %+v\nwant %+v", got, want)
	}
}

func testIdentities(t *testing.T, s mailmap.Store) {
	ctx := context.Background()
	a := newUser(t, s, "alice")
	b := newUser(t, s, "bob")
	ia, err := s.AddIdentity(ctx, testIdentity(a.ID, "BM-2cAlice"))
	noErr(t, err, "AddIdentity")
	if ia.ID == 0 || ia.CreatedAt.IsZero() {
		t.Fatalf("AddIdentity returned %+v", ia)
	}
	chanID := testIdentity(b.ID, "BM-2cChan")
	chanID.Kind = mailmap.KindChan
	chanID.PublishPubkey = false
	ib, err := s.AddIdentity(ctx, chanID)
	noErr(t, err, "AddIdentity chan")

	// A personal address is unique across the whole store.
	_, err = s.AddIdentity(ctx, testIdentity(b.ID, "BM-2cAlice"))
	wantErr(t, err, mailmap.ErrExists, "AddIdentity with another user's address")
	// A chan may be joined by several users, but by each only once.
	_, err = s.AddIdentity(ctx, chanID)
	wantErr(t, err, mailmap.ErrExists, "AddIdentity of the same chan twice for one user")
	chanOfA := chanID
	chanOfA.UserID = a.ID
	ic, err := s.AddIdentity(ctx, chanOfA)
	noErr(t, err, "AddIdentity of a chan another user joined")
	members, err := s.IdentitiesByAddress(ctx, "BM-2cChan")
	noErr(t, err, "IdentitiesByAddress")
	if len(members) != 2 || members[0].UserID != b.ID || members[1].UserID != a.ID {
		t.Fatalf("IdentitiesByAddress(chan) = %+v", members)
	}
	first, err := s.IdentityByAddress(ctx, "BM-2cChan")
	noErr(t, err, "IdentityByAddress(chan)")
	sameIdentity(t, first, ib)
	noErr(t, s.DeleteIdentity(ctx, a.ID, ic.ID), "DeleteIdentity(chan of alice)")
	if none, err := s.IdentitiesByAddress(ctx, "BM-nobody"); err != nil || len(none) != 0 {
		t.Fatalf("IdentitiesByAddress(unknown) = %v, %v", none, err)
	}
	_, err = s.AddIdentity(ctx, testIdentity(99999, "BM-nouser"))
	wantErr(t, err, mailmap.ErrNotFound, "AddIdentity for an unknown user")
	bad := testIdentity(a.ID, "BM-bad")
	bad.SigningKey = bad.SigningKey[:31]
	_, err = s.AddIdentity(ctx, bad)
	wantErr(t, err, mailmap.ErrInvalidName, "AddIdentity with a short key")

	got, err := s.IdentityByAddress(ctx, "BM-2cAlice")
	noErr(t, err, "IdentityByAddress")
	sameIdentity(t, got, ia)
	list, err := s.Identities(ctx, a.ID)
	noErr(t, err, "Identities")
	if len(list) != 1 {
		t.Fatalf("Identities(alice) = %d identities", len(list))
	}
	sameIdentity(t, list[0], ia)
	all, err := s.AllIdentities(ctx)
	noErr(t, err, "AllIdentities")
	if len(all) != 2 {
		t.Fatalf("AllIdentities = %d identities", len(all))
	}
	sameIdentity(t, all[0], ia)
	sameIdentity(t, all[1], ib)

	at := time.Date(2026, 5, 6, 7, 8, 9, 123456000, time.UTC)
	noErr(t, s.MarkPubkeySent(ctx, ia.ID, at), "MarkPubkeySent")
	got, err = s.IdentityByAddress(ctx, "BM-2cAlice")
	noErr(t, err, "IdentityByAddress")
	if !got.LastPubkeySent.Equal(at) {
		t.Fatalf("LastPubkeySent = %v, want %v", got.LastPubkeySent, at)
	}
	wantErr(t, s.MarkPubkeySent(ctx, 99999, at), mailmap.ErrNotFound, "MarkPubkeySent unknown")

	wantErr(t, s.DeleteIdentity(ctx, a.ID, ib.ID), mailmap.ErrNotFound, "DeleteIdentity of another user's identity")
	if _, err := s.IdentityByAddress(ctx, "BM-2cChan"); err != nil {
		t.Fatalf("the other user's identity is gone after a refused delete: %v", err)
	}
	noErr(t, s.DeleteIdentity(ctx, a.ID, ia.ID), "DeleteIdentity")
	_, err = s.IdentityByAddress(ctx, "BM-2cAlice")
	wantErr(t, err, mailmap.ErrNotFound, "IdentityByAddress after delete")
	// The address is free again.
	_, err = s.AddIdentity(ctx, testIdentity(b.ID, "BM-2cAlice"))
	noErr(t, err, "AddIdentity after delete")
}

func testContactsSubscriptions(t *testing.T, s mailmap.Store) {
	ctx := context.Background()
	a := newUser(t, s, "alice")
	b := newUser(t, s, "bob")
	c, err := s.AddContact(ctx, mailmap.Contact{UserID: a.ID, Alias: "Friend@Example.org", Address: "BM-friend"})
	noErr(t, err, "AddContact")
	if c.ID == 0 || c.Alias != "friend@example.org" {
		t.Fatalf("AddContact = %+v, want a lower-cased alias", c)
	}
	_, err = s.AddContact(ctx, mailmap.Contact{UserID: a.ID, Alias: "FRIEND@example.org", Address: "BM-other"})
	wantErr(t, err, mailmap.ErrExists, "AddContact duplicate alias")
	_, err = s.AddContact(ctx, mailmap.Contact{UserID: b.ID, Alias: "friend@example.org", Address: "BM-bobs"})
	noErr(t, err, "AddContact same alias for another user")
	_, err = s.AddContact(ctx, mailmap.Contact{UserID: 99999, Alias: "x@y", Address: "BM-x"})
	wantErr(t, err, mailmap.ErrNotFound, "AddContact unknown user")

	addr, err := s.ResolveAlias(ctx, a.ID, "friend@EXAMPLE.org")
	noErr(t, err, "ResolveAlias")
	if addr != "BM-friend" {
		t.Fatalf("ResolveAlias = %q", addr)
	}
	addr, err = s.ResolveAlias(ctx, b.ID, "friend@example.org")
	noErr(t, err, "ResolveAlias bob")
	if addr != "BM-bobs" {
		t.Fatalf("ResolveAlias(bob) = %q, want bob's own contact", addr)
	}
	_, err = s.ResolveAlias(ctx, a.ID, "stranger@example.org")
	wantErr(t, err, mailmap.ErrNotFound, "ResolveAlias unknown")
	cs, err := s.Contacts(ctx, a.ID)
	noErr(t, err, "Contacts")
	if len(cs) != 1 || cs[0] != c {
		t.Fatalf("Contacts = %+v", cs)
	}
	wantErr(t, s.DeleteContact(ctx, a.ID, "stranger@example.org"), mailmap.ErrNotFound, "DeleteContact unknown")
	noErr(t, s.DeleteContact(ctx, a.ID, "FRIEND@example.org"), "DeleteContact")
	_, err = s.ResolveAlias(ctx, a.ID, "friend@example.org")
	wantErr(t, err, mailmap.ErrNotFound, "ResolveAlias after DeleteContact")
	if addr, err := s.ResolveAlias(ctx, b.ID, "friend@example.org"); err != nil || addr != "BM-bobs" {
		t.Fatalf("ResolveAlias(bob) after alice's DeleteContact = %q, %v", addr, err)
	}
	c, err = s.AddContact(ctx, mailmap.Contact{UserID: a.ID, Alias: "friend@example.org", Address: "BM-friend"})
	noErr(t, err, "AddContact again")

	s1, err := s.AddSubscription(ctx, mailmap.Subscription{UserID: a.ID, Address: "BM-news", Label: "News"})
	noErr(t, err, "AddSubscription")
	_, err = s.AddSubscription(ctx, mailmap.Subscription{UserID: a.ID, Address: "BM-news"})
	wantErr(t, err, mailmap.ErrExists, "AddSubscription duplicate")
	s2, err := s.AddSubscription(ctx, mailmap.Subscription{UserID: b.ID, Address: "BM-news", Label: "Bob's"})
	noErr(t, err, "AddSubscription bob")
	subs, err := s.Subscriptions(ctx, a.ID)
	noErr(t, err, "Subscriptions")
	if len(subs) != 1 || subs[0] != s1 {
		t.Fatalf("Subscriptions = %+v", subs)
	}
	all, err := s.AllSubscriptions(ctx)
	noErr(t, err, "AllSubscriptions")
	if len(all) != 2 || all[0] != s1 || all[1] != s2 {
		t.Fatalf("AllSubscriptions = %+v", all)
	}
}

func testPubkeys(t *testing.T, s mailmap.Store) {
	ctx := context.Background()
	p := mailmap.Pubkey{
		Address: "BM-peer", Version: 4, Stream: 1, Bitfield: 0x80000001,
		SigningKey: bytes.Repeat([]byte{1}, 64), EncryptionKey: bytes.Repeat([]byte{2}, 64),
		NonceTrialsPerByte: 1<<64 - 1, ExtraBytes: 1000, Source: "pubkey",
		LearnedAt: time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC),
	}
	noErr(t, s.PutPubkey(ctx, p), "PutPubkey")
	got, err := s.Pubkey(ctx, "BM-peer")
	noErr(t, err, "Pubkey")
	samePubkey(t, got, p)

	p.Source, p.Stream, p.LearnedAt = "msg", 2, p.LearnedAt.Add(time.Hour)
	p.SigningKey = bytes.Repeat([]byte{3}, 64)
	noErr(t, s.PutPubkey(ctx, p), "PutPubkey again")
	got, err = s.Pubkey(ctx, "BM-peer")
	noErr(t, err, "Pubkey")
	samePubkey(t, got, p)

	_, err = s.Pubkey(ctx, "BM-unknown")
	wantErr(t, err, mailmap.ErrNotFound, "Pubkey unknown")
	p.SigningKey = p.SigningKey[:10]
	wantErr(t, s.PutPubkey(ctx, p), mailmap.ErrInvalidName, "PutPubkey with a short key")
}

func samePubkey(t testing.TB, got, want mailmap.Pubkey) {
	t.Helper()
	if got.Address != want.Address || got.Version != want.Version || got.Stream != want.Stream ||
		got.Bitfield != want.Bitfield || !bytes.Equal(got.SigningKey, want.SigningKey) ||
		!bytes.Equal(got.EncryptionKey, want.EncryptionKey) || got.NonceTrialsPerByte != want.NonceTrialsPerByte ||
		got.ExtraBytes != want.ExtraBytes || got.Source != want.Source || !got.LearnedAt.Equal(want.LearnedAt) {
		t.Fatalf("pubkey = %+v\nwant %+v", got, want)
	}
}

// testLoginByAddress: a user logs in with the user name or with one of the
// user's own addresses, bare or as a mail address; never with a chan
// address (several users may share one) nor with another user's password.
func testLoginByAddress(t *testing.T, s mailmap.Store) {
	ctx := context.Background()
	alice, bob := newUser(t, s, "alice"), newUser(t, s, "bob")
	const aliceAddr, bobAddr, chanAddr = "BM-2cWzSnwjJ7yRP3nLEWUV5LisTZyREWSzUK", "BM-2cTux3PGRqHTEH6wyUP2sWeT4LrsGgy63z", "BM-2cXxCEVHcY7HsnfvCjVgQ1R8YkK4GyCV3x"
	_, err := s.AddIdentity(ctx, testIdentity(alice.ID, aliceAddr))
	noErr(t, err, "AddIdentity")
	_, err = s.AddIdentity(ctx, testIdentity(bob.ID, bobAddr))
	noErr(t, err, "AddIdentity")
	ch := testIdentity(alice.ID, chanAddr)
	ch.Kind = mailmap.KindChan
	_, err = s.AddIdentity(ctx, ch)
	noErr(t, err, "AddIdentity chan")
	for _, name := range []string{aliceAddr, aliceAddr + "@bmaddr.lan"} {
		got, err := s.Authenticate(ctx, name, password)
		noErr(t, err, "Authenticate as "+name)
		if got.ID != alice.ID {
			t.Fatalf("Authenticate(%s) = user %d, want alice (%d)", name, got.ID, alice.ID)
		}
	}
	_, err = s.Authenticate(ctx, aliceAddr+"@bmaddr.lan", "wrong")
	wantErr(t, err, mailmap.ErrAuthFailed, "Authenticate by address with a wrong password")
	_, err = s.Authenticate(ctx, chanAddr, password)
	wantErr(t, err, mailmap.ErrAuthFailed, "Authenticate with a chan address")
	_, err = s.Authenticate(ctx, "BM-2cVz4ZyQ1cUJRSDgvP5cBXRWq8QXKtTqkQ", password)
	wantErr(t, err, mailmap.ErrAuthFailed, "Authenticate with an unknown address")
	// Bob's address with alice's password is bob's account: it fails
	// unless the password is bob's (both use the test password here, so
	// check it is bob who logs in).
	for name, want := range map[string]string{"alice": "alice", aliceAddr + "@bmaddr.lan": "alice", bobAddr: "bob",
		chanAddr + "@x": chanAddr, "BM-2cVz4ZyQ1cUJRSDgvP5cBXRWq8QXKtTqkQ@a.example": "BM-2cVz4ZyQ1cUJRSDgvP5cBXRWq8QXKtTqkQ"} {
		if got, err := s.LoginAccount(ctx, name); err != nil || got != want {
			t.Errorf("LoginAccount(%s) = %q, %v; want %q", name, got, err, want)
		}
	}
	got, err := s.Authenticate(ctx, bobAddr, password)
	noErr(t, err, "Authenticate as bob's address")
	if got.ID != bob.ID {
		t.Fatalf("Authenticate(bob's address) = user %d, want bob (%d)", got.ID, bob.ID)
	}
}

// testSendRate: EnqueueOutbox refuses rows that take a user over the
// sending rate, counting the last hour, and enqueues nothing of them;
// other users are not limited by it.
func testSendRate(t *testing.T, s mailmap.Store) {
	ctx := context.Background()
	a, b := newUser(t, s, "alice"), newUser(t, s, "bob")
	noErr(t, s.SetSendRate(ctx, a.ID, 3), "SetSendRate")
	wantErr(t, s.SetSendRate(ctx, a.ID, -1), mailmap.ErrInvalidName, "SetSendRate negative")
	if u, err := s.User(ctx, a.ID); err != nil || u.SendRate != 3 {
		t.Fatalf("User().SendRate = %d, %v", u.SendRate, err)
	}
	now := time.Now()
	row := func(u mailmap.User, created time.Time) mailmap.OutboxItem {
		return mailmap.OutboxItem{UserID: u.ID, FromAddress: "BM-a", ToAddress: "BM-b", Kind: mailmap.OutboxMsg,
			Subject: "s", Body: "b", Encoding: 2, State: mailmap.OutboxQueued, NextAttempt: now, TTL: time.Hour, CreatedAt: created}
	}
	_, err := s.EnqueueOutbox(ctx, []mailmap.OutboxItem{row(a, now.Add(-2*time.Hour)), row(a, now.Add(-2*time.Hour))})
	noErr(t, err, "EnqueueOutbox of old rows")
	_, err = s.EnqueueOutbox(ctx, []mailmap.OutboxItem{row(a, now), row(a, now)})
	noErr(t, err, "EnqueueOutbox within the rate")
	_, err = s.EnqueueOutbox(ctx, []mailmap.OutboxItem{row(a, now), row(a, now)})
	wantErr(t, err, mailmap.ErrRateLimited, "EnqueueOutbox over the rate")
	if items, _ := s.UserOutbox(ctx, a.ID); len(items) != 4 {
		t.Fatalf("%d rows after a refused enqueue, want 4", len(items))
	}
	_, err = s.EnqueueOutbox(ctx, []mailmap.OutboxItem{row(a, now)})
	noErr(t, err, "EnqueueOutbox of the last allowed row")
	_, err = s.EnqueueOutbox(ctx, []mailmap.OutboxItem{row(b, now), row(b, now), row(b, now), row(b, now)})
	noErr(t, err, "EnqueueOutbox of another user")
	noErr(t, s.SetSendRate(ctx, a.ID, 0), "SetSendRate 0")
	_, err = s.EnqueueOutbox(ctx, []mailmap.OutboxItem{row(a, now)})
	noErr(t, err, "EnqueueOutbox without a rate")
}
