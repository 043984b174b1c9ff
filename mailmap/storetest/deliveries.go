package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/bmgate/bmgate/bmcore/inventory"
	"github.com/bmgate/bmgate/bmcore/wire"
	"github.com/bmgate/bmgate/mailmap"
)

// deliverOnce calls DeliverOnce and checks its error.
func deliverOnce(t testing.TB, s mailmap.Store, userID, mailboxID int64, key, raw []byte) (mailmap.Message, bool) {
	t.Helper()
	m, dup, err := s.DeliverOnce(context.Background(), userID, mailboxID, key, raw, nil, time.Time{})
	if err != nil {
		t.Fatalf("DeliverOnce(user %d, key %x): %v", userID, key, err)
	}
	return m, dup
}

// testDeliverOnce: one message per (user, key), whatever the mailbox; a
// failed append records no key.
func testDeliverOnce(t *testing.T, s mailmap.Store) {
	ctx := context.Background()
	alice := newUser(t, s, "alice")
	bob := newUser(t, s, "bob")
	aIn := mailbox(t, s, alice.ID, "INBOX")
	aArch := mailbox(t, s, alice.ID, "Archive")
	bIn := mailbox(t, s, bob.ID, "INBOX")
	key := bytes.Repeat([]byte{0xab}, 32)
	ch, cancel := s.Subscribe(alice.ID)
	defer cancel()

	date := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	m, dup, err := s.DeliverOnce(ctx, alice.ID, aIn.ID, key, message("1"), []string{`\Seen`}, date)
	noErr(t, err, "DeliverOnce")
	if dup || m.UID != 1 || m.MailboxID != aIn.ID || !slices.Equal(m.Flags, []string{`\Seen`}) || !m.InternalDate.Equal(date) {
		t.Fatalf("first DeliverOnce = %+v, duplicate %v", m, dup)
	}
	expect(t, ch, mailmap.Change{UserID: alice.ID, MailboxID: aIn.ID, Kind: mailmap.ChangeNew, UID: 1})

	// The same key again, in the same or another mailbox: nothing filed.
	for _, mb := range []mailmap.Mailbox{aIn, aArch} {
		m, dup := deliverOnce(t, s, alice.ID, mb.ID, key, message("1 again"))
		if !dup || m.UID != 0 {
			t.Fatalf("DeliverOnce of a delivered key into %s = %+v, duplicate %v; want a duplicate", mb.Name, m, dup)
		}
	}
	if ms := messages(t, s, alice.ID, aIn.ID); len(ms) != 1 {
		t.Fatalf("INBOX holds %d messages after duplicates, want 1", len(ms))
	}
	if ms := messages(t, s, alice.ID, aArch.ID); len(ms) != 0 {
		t.Fatalf("Archive holds %d messages after a duplicate, want 0", len(ms))
	}
	// No change was announced for the duplicates: the next one is the next
	// real delivery's.
	other := bytes.Repeat([]byte{0xcd}, 32)
	if _, dup := deliverOnce(t, s, alice.ID, aIn.ID, other, message("2")); dup {
		t.Fatal("DeliverOnce of a new key reported a duplicate")
	}
	expect(t, ch, mailmap.Change{UserID: alice.ID, MailboxID: aIn.ID, Kind: mailmap.ChangeNew, UID: 2})

	// Keys are per user: bob gets his copy of the same object.
	if m, dup := deliverOnce(t, s, bob.ID, bIn.ID, key, message("1")); dup || m.UID != 1 {
		t.Fatalf("DeliverOnce to another user = %+v, duplicate %v", m, dup)
	}
	if _, dup := deliverOnce(t, s, bob.ID, bIn.ID, key, message("1")); !dup {
		t.Fatal("second DeliverOnce to bob filed another copy")
	}

	// Over quota: refused, and the key is not recorded, so a retry once
	// there is room delivers.
	carol := newUser(t, s, "carol")
	cIn := mailbox(t, s, carol.ID, "INBOX")
	noErr(t, s.SetQuota(ctx, carol.ID, 10), "SetQuota")
	_, _, err = s.DeliverOnce(ctx, carol.ID, cIn.ID, key, message("1"), nil, time.Time{})
	wantErr(t, err, mailmap.ErrOverQuota, "DeliverOnce over quota")
	if ms := messages(t, s, carol.ID, cIn.ID); len(ms) != 0 {
		t.Fatalf("over quota: %d messages filed", len(ms))
	}
	noErr(t, s.SetQuota(ctx, carol.ID, 0), "SetQuota unlimited")
	if m, dup := deliverOnce(t, s, carol.ID, cIn.ID, key, message("1")); dup || m.UID != 1 {
		t.Fatalf("retry after over quota = %+v, duplicate %v; want delivered", m, dup)
	}

	// Other failed appends record nothing either: another user's mailbox,
	// an empty message.
	_, _, err = s.DeliverOnce(ctx, alice.ID, bIn.ID, []byte("k-foreign"), message("3"), nil, time.Time{})
	wantErr(t, err, mailmap.ErrNotFound, "DeliverOnce into another user's mailbox")
	_, _, err = s.DeliverOnce(ctx, alice.ID, aIn.ID, []byte("k-empty"), nil, nil, time.Time{})
	if err == nil {
		t.Fatal("DeliverOnce of an empty message succeeded")
	}
	for _, k := range []string{"k-foreign", "k-empty"} {
		if _, dup := deliverOnce(t, s, alice.ID, aIn.ID, []byte(k), message(k)); dup {
			t.Fatalf("key %s was recorded by a failed append", k)
		}
	}

	// Bad keys and unknown users.
	for _, k := range [][]byte{nil, {}, bytes.Repeat([]byte{1}, 65)} {
		_, _, err := s.DeliverOnce(ctx, alice.ID, aIn.ID, k, message("bad"), nil, time.Time{})
		wantErr(t, err, mailmap.ErrInvalidName, fmt.Sprintf("DeliverOnce with a key of %d bytes", len(k)))
	}
	_, _, err = s.DeliverOnce(ctx, 999999, aIn.ID, key, message("x"), nil, time.Time{})
	wantErr(t, err, mailmap.ErrNotFound, "DeliverOnce for an unknown user")

	// A deleted user's keys go with it; the name can be reused afresh.
	noErr(t, s.DeleteUser(ctx, bob.ID), "DeleteUser")
	bob2 := newUser(t, s, "bob")
	if _, dup := deliverOnce(t, s, bob2.ID, mailbox(t, s, bob2.ID, "INBOX").ID, key, message("1")); dup {
		t.Fatal("a new user inherited a deleted user's delivery keys")
	}
}

// testObjectFailures: a failed object waits for its retry time, is set
// aside after maxAttempts and is then listed, not returned as pending.
func testObjectFailures(t *testing.T, s mailmap.Store) {
	ctx := context.Background()
	now := time.Now().Truncate(time.Second)
	var objs []inventory.StoredObject
	for i := range byte(4) {
		o := object(40+i, 1, now.Add(time.Hour))
		o.Type = uint32(i)
		objs = append(objs, o)
		_, err := s.Put(ctx, o)
		noErr(t, err, "Put")
	}
	pendingHashes := func(at time.Time) []wire.InvHash {
		t.Helper()
		ps, err := s.PendingObjects(ctx, at, 10)
		noErr(t, err, "PendingObjects")
		var hs []wire.InvHash
		for _, o := range ps {
			hs = append(hs, o.Hash)
		}
		return hs
	}
	hashes := func(os ...inventory.StoredObject) []wire.InvHash {
		var hs []wire.InvHash
		for _, o := range os {
			hs = append(hs, o.Hash)
		}
		return hs
	}
	fail := func(o inventory.StoredObject, text string, retryAt time.Time, max int) (int, bool) {
		t.Helper()
		n, aside, err := s.ObjectFailed(ctx, o.Hash, text, retryAt, nil, max)
		noErr(t, err, "ObjectFailed")
		return n, aside
	}

	// First failure: skipped until its retry time, then pending again in
	// its arrival place.
	if n, aside := fail(objs[1], "boom 1", now.Add(time.Minute), 3); n != 1 || aside {
		t.Fatalf("first ObjectFailed = %d, %v; want 1, false", n, aside)
	}
	if got, want := pendingHashes(now), hashes(objs[0], objs[2], objs[3]); !slices.Equal(got, want) {
		t.Fatalf("PendingObjects before the retry time = %x, want %x", got, want)
	}
	if got, want := pendingHashes(now.Add(time.Minute-time.Microsecond)), hashes(objs[0], objs[2], objs[3]); !slices.Equal(got, want) {
		t.Fatalf("PendingObjects just before the retry time = %x, want %x", got, want)
	}
	if got, want := pendingHashes(now.Add(time.Minute)), hashes(objs...); !slices.Equal(got, want) {
		t.Fatalf("PendingObjects at the retry time = %x, want %x", got, want)
	}
	if aside, err := s.SetAsideObjects(ctx, 10); err != nil || len(aside) != 0 {
		t.Fatalf("SetAsideObjects after one failure = %+v, %v", aside, err)
	}

	// Second and third: set aside at the third, whatever its retry time.
	if n, aside := fail(objs[1], "boom 2", now.Add(2*time.Minute), 3); n != 2 || aside {
		t.Fatalf("second ObjectFailed = %d, %v; want 2, false", n, aside)
	}
	if n, aside := fail(objs[1], "boom 3", now, 3); n != 3 || !aside {
		t.Fatalf("third ObjectFailed = %d, %v; want 3, true", n, aside)
	}
	later := now.Add(24 * time.Hour)
	if got, want := pendingHashes(later), hashes(objs[0], objs[2], objs[3]); !slices.Equal(got, want) {
		t.Fatalf("PendingObjects after set-aside = %x, want %x", got, want)
	}
	// Another object set aside at once (maxAttempts 1), listed after the
	// first in arrival order.
	if n, aside := fail(objs[3], "bad\x00 \xff text", later, 1); n != 1 || !aside {
		t.Fatalf("ObjectFailed with maxAttempts 1 = %d, %v", n, aside)
	}
	aside, err := s.SetAsideObjects(ctx, 10)
	noErr(t, err, "SetAsideObjects")
	if len(aside) != 2 || aside[0].Hash != objs[1].Hash || aside[1].Hash != objs[3].Hash {
		t.Fatalf("SetAsideObjects = %+v, want objects 1 and 3", aside)
	}
	if a := aside[0]; a.Type != objs[1].Type || a.Attempts != 3 || a.LastError != "boom 3" || !a.Expires.Equal(objs[1].Expires) {
		t.Fatalf("set-aside object = %+v", a)
	}
	// The error text is made storable: valid UTF-8, no NUL.
	if e := aside[1].LastError; !utf8.ValidString(e) || strings.ContainsRune(e, 0) || !strings.HasPrefix(e, "bad") {
		t.Fatalf("stored error text %q", e)
	}
	if one, err := s.SetAsideObjects(ctx, 1); err != nil || len(one) != 1 || one[0].Hash != objs[1].Hash {
		t.Fatalf("SetAsideObjects(1) = %+v, %v", one, err)
	}
	if none, err := s.SetAsideObjects(ctx, 0); err != nil || len(none) != 0 {
		t.Fatalf("SetAsideObjects(0) = %+v, %v", none, err)
	}
	// A further failure of a set-aside object keeps it aside.
	if n, aside := fail(objs[1], "boom 4", now, 10); n != 4 || !aside {
		t.Fatalf("ObjectFailed of a set-aside object = %d, %v; want 4, true", n, aside)
	}

	// maxAttempts ≤ 0: never set aside.
	for i := range 6 {
		if n, aside := fail(objs[2], "again", now, 0); n != i+1 || aside {
			t.Fatalf("ObjectFailed %d with no limit = %d, %v", i+1, n, aside)
		}
	}
	// A long error is bounded.
	fail(objs[0], strings.Repeat("é", 5000), now, 1)
	aside, err = s.SetAsideObjects(ctx, 10)
	noErr(t, err, "SetAsideObjects")
	if len(aside) != 3 || aside[0].Hash != objs[0].Hash {
		t.Fatalf("SetAsideObjects = %+v, want objects 0, 1 and 3", aside)
	}
	if e := aside[0].LastError; len(e) == 0 || len(e) > 1000 || !utf8.ValidString(e) {
		t.Fatalf("long error stored as %d bytes (valid UTF-8 %v)", len(e), utf8.ValidString(e))
	}
	// An operator retries one set-aside object: pending again, due now,
	// attempts from zero; then sets it aside again for the next check.
	n, err := s.RetrySetAside(ctx, &objs[1].Hash)
	noErr(t, err, "RetrySetAside")
	if n != 1 {
		t.Fatalf("RetrySetAside released %d objects, want 1", n)
	}
	if aside, _ := s.SetAsideObjects(ctx, 10); len(aside) != 2 {
		t.Fatalf("SetAsideObjects after RetrySetAside = %+v", aside)
	}
	if n, aside := fail(objs[1], "boom again", now, 1); n != 1 || !aside {
		t.Fatalf("after RetrySetAside the failure counted %d (aside %v), want 1 and set aside at max 1", n, aside)
	}
	if n, err := s.RetrySetAside(ctx, &objs[2].Hash); err != nil || n != 0 {
		t.Fatalf("RetrySetAside of an object not set aside = %d, %v", n, err)
	}
	// A set-aside object processed after all (an operator's doing) is no
	// longer listed.
	noErr(t, s.MarkProcessed(ctx, objs[0].Hash, "", now), "MarkProcessed")
	if aside, err := s.SetAsideObjects(ctx, 10); err != nil || len(aside) != 2 {
		t.Fatalf("SetAsideObjects after MarkProcessed = %+v, %v", aside, err)
	}

	// Unknown objects.
	_, _, err = s.ObjectFailed(ctx, object(250, 1, now).Hash, "x", now, nil, 3)
	wantErr(t, err, mailmap.ErrNotFound, "ObjectFailed of an unknown object")
	if !errors.Is(err, inventory.ErrNotFound) {
		t.Fatalf("ObjectFailed of an unknown object = %v, want inventory.ErrNotFound too", err)
	}
}

// testExpireDeliveries: Expire prunes the delivery keys of the objects it
// removes, and keys of no object once they are old, and no others.
func testExpireDeliveries(t *testing.T, s mailmap.Store) {
	ctx := context.Background()
	now := time.Now().Truncate(time.Second)
	u := newUser(t, s, "alice")
	in := mailbox(t, s, u.ID, "INBOX")
	short := object(60, 1, now.Add(time.Hour))
	long := object(61, 1, now.Add(3*time.Hour))
	for _, o := range []inventory.StoredObject{short, long} {
		_, err := s.Put(ctx, o)
		noErr(t, err, "Put")
	}
	stray := bytes.Repeat([]byte{0xee}, 32) // a key naming no stored object
	for _, k := range [][]byte{short.Hash[:], long.Hash[:], stray} {
		if _, dup := deliverOnce(t, s, u.ID, in.ID, k, message("m")); dup {
			t.Fatalf("first delivery of %x reported a duplicate", k)
		}
	}
	gone, err := s.Expire(ctx, now.Add(2*time.Hour))
	noErr(t, err, "Expire")
	if gone != 1 {
		t.Fatalf("Expire removed %d objects, want 1", gone)
	}
	// The expired object's key is gone with it; the others stay.
	if _, dup := deliverOnce(t, s, u.ID, in.ID, long.Hash[:], message("m")); !dup {
		t.Fatal("Expire pruned the key of an object still stored")
	}
	if _, dup := deliverOnce(t, s, u.ID, in.ID, stray, message("m")); !dup {
		t.Fatal("Expire pruned a recent key of no object")
	}
	if _, dup := deliverOnce(t, s, u.ID, in.ID, short.Hash[:], message("m")); dup {
		t.Fatal("the key of an expired object survived Expire")
	}
	// Much later every key is old enough to go, object or not.
	_, err = s.Expire(ctx, time.Now().Add(60*24*time.Hour))
	noErr(t, err, "Expire much later")
	for _, k := range [][]byte{long.Hash[:], stray, short.Hash[:]} {
		if _, dup := deliverOnce(t, s, u.ID, in.ID, k, message("m")); dup {
			t.Fatalf("key %x survived an Expire long after it", k)
		}
	}
}

// testObjectBackoffFromStore: the backoff is sized by the attempts the
// store counted, so a restarted process does not retry sooner.
func testObjectBackoffFromStore(t *testing.T, s mailmap.Store) {
	ctx := context.Background()
	now := time.Now().Truncate(time.Second)
	raw := append(bytes.Repeat([]byte{7}, 16), []byte("backoff object")...)
	o := inventory.StoredObject{Hash: wire.ComputeInvHash(raw), Type: 2, Version: 1, Stream: 1, Expires: now.Add(time.Hour), Raw: raw}
	if _, err := s.Put(ctx, o); err != nil {
		t.Fatal(err)
	}
	var seen []int
	backoff := func(attempts int) time.Duration {
		seen = append(seen, attempts)
		return time.Duration(attempts) * time.Minute
	}
	for range 3 {
		if _, _, err := s.ObjectFailed(ctx, o.Hash, "boom", now, backoff, 0); err != nil {
			t.Fatal(err)
		}
	}
	if len(seen) != 3 || seen[0] != 1 || seen[2] != 3 {
		t.Fatalf("backoff saw attempts %v, want [1 2 3]", seen)
	}
	if p, err := s.PendingObjects(ctx, now.Add(179*time.Second), 10); err != nil || len(p) != 0 {
		t.Fatalf("pending before the third backoff = %d, %v", len(p), err)
	}
	if p, err := s.PendingObjects(ctx, now.Add(180*time.Second), 10); err != nil || len(p) != 1 {
		t.Fatalf("pending after the third backoff = %d, %v", len(p), err)
	}
}
