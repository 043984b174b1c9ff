package storetest

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/bmgate/bmgate/mailmap"
)

var t0 = time.Date(2026, 3, 4, 5, 6, 7, 890123000, time.UTC)

// testOutboxItem fills every field, so a round trip proves each is stored.
func testOutboxItem(userID int64, i int) mailmap.OutboxItem {
	return mailmap.OutboxItem{
		UserID: userID, FromAddress: "BM-from", ToAddress: fmt.Sprintf("BM-to%d", i), Kind: mailmap.OutboxMsg,
		Subject: fmt.Sprintf("subject %d ünïcode", i), Body: "body\x00with NUL and \xff bytes", Encoding: 2,
		Extra: []byte{1, 2, 3}, MessageID: fmt.Sprintf("m%d@example.org", i), State: mailmap.OutboxQueued,
		Attempts: 1, NextAttempt: t0.Add(time.Duration(i) * time.Second), TTL: 4 * 24 * time.Hour,
		AckData: bytes.Repeat([]byte{byte(i)}, 32), InvHash: bytes.Repeat([]byte{0xEE}, 32), LastError: "none yet",
		PoWDuration: 1500 * time.Millisecond, CreatedAt: t0.Add(-time.Hour),
		SentAt: t0.Add(time.Minute), AckedAt: time.Time{},
		Notify: mailmap.NotifySuccess | mailmap.NotifyDelay, Ret: "HDRS", EnvID: "env-1", OrigRcpt: "rfc822;Bob@Example.org",
		DelayReported: true, Reported: false, Original: []byte("From: x\r\n\r\noriginal"),
	}
}

func sameOutbox(t testing.TB, got, want mailmap.OutboxItem) {
	t.Helper()
	norm := func(it mailmap.OutboxItem) mailmap.OutboxItem {
		// Times compare by instant; nil and empty byte slices are the same.
		for _, p := range []*time.Time{&it.NextAttempt, &it.CreatedAt, &it.SentAt, &it.AckedAt} {
			if p.IsZero() {
				*p = time.Time{}
			} else {
				*p = p.UTC()
			}
		}
		for _, p := range []*[]byte{&it.Extra, &it.AckData, &it.InvHash, &it.Original} {
			if len(*p) == 0 {
				*p = nil
			}
		}
		return it
	}
	if g, w := norm(got), norm(want); !reflect.DeepEqual(g, w) {
		t.Fatalf("outbox item\n got %+v\nwant %+v", g, w)
	}
}

func testOutbox(t *testing.T, s mailmap.Store) {
	ctx := context.Background()
	a := newUser(t, s, "alice")
	b := newUser(t, s, "bob")
	in := []mailmap.OutboxItem{testOutboxItem(a.ID, 1), testOutboxItem(a.ID, 2), testOutboxItem(b.ID, 3)}
	in[2].Kind, in[2].AckData, in[2].Extra, in[2].Original = mailmap.OutboxBroadcast, nil, nil, nil
	in[2].State, in[2].SentAt = "", time.Time{} // defaults: queued
	in[2].CreatedAt = time.Time{}               // default: now
	out, err := s.EnqueueOutbox(ctx, in)
	noErr(t, err, "EnqueueOutbox")
	if len(out) != 3 || out[0].ID == 0 || out[1].ID <= out[0].ID || out[2].State != mailmap.OutboxQueued || out[2].CreatedAt.IsZero() {
		t.Fatalf("EnqueueOutbox = %+v", out)
	}
	for i, it := range out {
		got, err := s.OutboxItem(ctx, it.ID)
		noErr(t, err, "OutboxItem")
		want := in[i]
		want.ID, want.State, want.CreatedAt = it.ID, it.State, it.CreatedAt
		sameOutbox(t, got, want)
		sameOutbox(t, it, want)
	}
	// A failing row rolls the whole batch back.
	bad := []mailmap.OutboxItem{testOutboxItem(a.ID, 4), testOutboxItem(99999, 5)}
	_, err = s.EnqueueOutbox(ctx, bad)
	wantErr(t, err, mailmap.ErrNotFound, "EnqueueOutbox with an unknown user")
	bad = []mailmap.OutboxItem{testOutboxItem(a.ID, 4), {UserID: a.ID, Kind: "bogus", FromAddress: "x", ToAddress: "y"}}
	_, err = s.EnqueueOutbox(ctx, bad)
	wantErr(t, err, mailmap.ErrInvalidName, "EnqueueOutbox with a bad kind")
	if ob, err := s.UserOutbox(ctx, a.ID); err != nil || len(ob) != 2 {
		t.Fatalf("UserOutbox(alice) after failed batches = %d rows, %v", len(ob), err)
	}

	// A checked transition writes only its own columns.
	up := out[0]
	attempts, next, invHash, lastErr := 3, t0.Add(time.Hour), bytes.Repeat([]byte{0xAB}, 32), ""
	sent, acked, ttl, ack := t0.Add(2*time.Minute), t0.Add(3*time.Minute), time.Hour, []byte("ack")
	got, err := s.TransitionOutbox(ctx, mailmap.OutboxStep{
		ID: up.ID, From: []mailmap.OutboxState{up.State}, To: mailmap.OutboxAcked,
		Attempts: &attempts, NextAttempt: &next, InvHash: invHash, LastError: &lastErr, AddPoWDuration: 2 * time.Second,
		SentAt: &sent, AckedAt: &acked, TTL: &ttl, AckData: &ack,
	})
	noErr(t, err, "TransitionOutbox")
	up.State, up.Attempts, up.NextAttempt, up.InvHash, up.LastError = mailmap.OutboxAcked, 3, next, invHash, ""
	up.PoWDuration += 2 * time.Second
	up.SentAt, up.AckedAt, up.TTL, up.AckData = sent, acked, ttl, ack
	sameOutbox(t, got, up)
	got, err = s.OutboxItem(ctx, up.ID)
	noErr(t, err, "OutboxItem after transition")
	sameOutbox(t, got, up)
	_, err = s.TransitionOutbox(ctx, mailmap.OutboxStep{ID: up.ID, From: []mailmap.OutboxState{mailmap.OutboxQueued}, To: mailmap.OutboxFailed})
	wantErr(t, err, mailmap.ErrConflict, "TransitionOutbox from a state the row is not in")
	_, err = s.TransitionOutbox(ctx, mailmap.OutboxStep{ID: 99999, From: []mailmap.OutboxState{mailmap.OutboxQueued}, To: mailmap.OutboxFailed})
	wantErr(t, err, mailmap.ErrConflict, "TransitionOutbox unknown row")
	_, err = s.TransitionOutbox(ctx, mailmap.OutboxStep{ID: up.ID, From: []mailmap.OutboxState{"bogus"}, To: mailmap.OutboxFailed})
	wantErr(t, err, mailmap.ErrInvalidName, "TransitionOutbox from a bogus state")
	_, err = s.OutboxItem(ctx, 99999)
	wantErr(t, err, mailmap.ErrNotFound, "OutboxItem unknown")

	byAck, err := s.OutboxByAckData(ctx, []byte("ack"))
	noErr(t, err, "OutboxByAckData")
	if byAck.ID != up.ID {
		t.Fatalf("OutboxByAckData = row %d, want %d", byAck.ID, up.ID)
	}
	byAck, err = s.OutboxByAckData(ctx, in[1].AckData)
	noErr(t, err, "OutboxByAckData")
	if byAck.ID != out[1].ID {
		t.Fatalf("OutboxByAckData = row %d, want %d", byAck.ID, out[1].ID)
	}
	_, err = s.OutboxByAckData(ctx, []byte("nope"))
	wantErr(t, err, mailmap.ErrNotFound, "OutboxByAckData unknown")
	_, err = s.OutboxByAckData(ctx, nil)
	wantErr(t, err, mailmap.ErrNotFound, "OutboxByAckData(nil)")

	counts, err := s.OutboxCounts(ctx)
	noErr(t, err, "OutboxCounts")
	if !reflect.DeepEqual(counts, map[mailmap.OutboxState]int{mailmap.OutboxQueued: 2, mailmap.OutboxAcked: 1}) {
		t.Fatalf("OutboxCounts = %v", counts)
	}
	ob, err := s.UserOutbox(ctx, b.ID)
	noErr(t, err, "UserOutbox")
	if len(ob) != 1 || ob[0].ID != out[2].ID {
		t.Fatalf("UserOutbox(bob) = %+v", ob)
	}
}

func testOutboxClaim(t *testing.T, s mailmap.Store) {
	ctx := context.Background()
	u := newUser(t, s, "alice")
	var items []mailmap.OutboxItem
	for i := range 6 {
		it := testOutboxItem(u.ID, i)
		it.NextAttempt = t0.Add(time.Duration(i) * time.Minute)
		items = append(items, it)
	}
	items[4].State = mailmap.OutboxAwaitingPubkey
	items[5].State = mailmap.OutboxAcked
	out, err := s.EnqueueOutbox(ctx, items)
	noErr(t, err, "EnqueueOutbox")

	states := []mailmap.OutboxState{mailmap.OutboxQueued, mailmap.OutboxAwaitingPubkey}
	now := t0.Add(150 * time.Second) // rows 0, 1, 2 are due
	lease := 10 * time.Minute
	got, err := s.ClaimOutbox(ctx, states, now, lease, 2, "w1")
	noErr(t, err, "ClaimOutbox")
	if len(got) != 2 || got[0].ID != out[0].ID || got[1].ID != out[1].ID {
		t.Fatalf("ClaimOutbox(limit 2) = %v, want the two oldest due rows", ids(got))
	}
	for _, it := range got {
		if !it.NextAttempt.Equal(now.Add(lease)) {
			t.Fatalf("claimed row's NextAttempt = %v, want now+lease", it.NextAttempt)
		}
	}
	got, err = s.ClaimOutbox(ctx, states, now, lease, 10, "w1")
	noErr(t, err, "ClaimOutbox again")
	if len(got) != 1 || got[0].ID != out[2].ID {
		t.Fatalf("second ClaimOutbox = %v, want only row 2 (0 and 1 are leased)", ids(got))
	}
	got, err = s.ClaimOutbox(ctx, states, now, lease, 10, "w1")
	noErr(t, err, "ClaimOutbox third")
	if len(got) != 0 {
		t.Fatalf("third ClaimOutbox = %v, want nothing", ids(got))
	}
	// Later, the rest is due, except acked rows, and the leases ran out.
	later := now.Add(lease + time.Second)
	got, err = s.ClaimOutbox(ctx, states, later, lease, 10, "w1")
	noErr(t, err, "ClaimOutbox later")
	if want := []int64{out[0].ID, out[1].ID, out[2].ID, out[3].ID, out[4].ID}; !equalIDs(got, want) {
		t.Fatalf("ClaimOutbox later = %v, want %v", ids(got), want)
	}
	got, err = s.ClaimOutbox(ctx, []mailmap.OutboxState{mailmap.OutboxAwaitingPubkey}, later.Add(time.Hour), lease, 10, "w1")
	noErr(t, err, "ClaimOutbox by state")
	if !equalIDs(got, []int64{out[4].ID}) {
		t.Fatalf("ClaimOutbox(awaiting_pubkey) = %v", ids(got))
	}
	if got, err := s.ClaimOutbox(ctx, nil, later, lease, 10, "w1"); err != nil || len(got) != 0 {
		t.Fatalf("ClaimOutbox with no states = %v, %v", ids(got), err)
	}
	if got, err := s.ClaimOutbox(ctx, states, later, lease, 0, "w1"); err != nil || len(got) != 0 {
		t.Fatalf("ClaimOutbox with limit 0 = %v, %v", ids(got), err)
	}
}

func ids(items []mailmap.OutboxItem) []int64 {
	out := make([]int64, len(items))
	for i, it := range items {
		out[i] = it.ID
	}
	return out
}

func equalIDs(items []mailmap.OutboxItem, want []int64) bool {
	got := ids(items)
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

// testOutboxTo: the latest rows from one address to another, of one user,
// newest first, limited.
func testOutboxTo(t *testing.T, s mailmap.Store) {
	ctx := context.Background()
	a := newUser(t, s, "alice")
	b := newUser(t, s, "bob")
	first, err := s.EnqueueOutbox(ctx, []mailmap.OutboxItem{testOutboxItem(a.ID, 1), testOutboxItem(a.ID, 2)})
	noErr(t, err, "EnqueueOutbox")
	// OutboxTo: one sender and recipient of one user, newest first, limited.
	again := testOutboxItem(a.ID, 1)
	again.MessageID = "m1-again@example.org"
	more, err := s.EnqueueOutbox(ctx, []mailmap.OutboxItem{again, testOutboxItem(b.ID, 1)})
	noErr(t, err, "EnqueueOutbox")
	to, err := s.OutboxTo(ctx, a.ID, "BM-from", "BM-to1", 10)
	noErr(t, err, "OutboxTo")
	if len(to) != 2 || to[0].ID != more[0].ID || to[1].ID != first[0].ID {
		t.Fatalf("OutboxTo(alice, BM-to1) = %+v", to)
	}
	if to, err := s.OutboxTo(ctx, a.ID, "BM-from", "BM-to1", 1); err != nil || len(to) != 1 || to[0].ID != more[0].ID {
		t.Fatalf("OutboxTo limit 1 = %+v, %v", to, err)
	}
	if to, err := s.OutboxTo(ctx, a.ID, "BM-other", "BM-to1", 10); err != nil || len(to) != 0 {
		t.Fatalf("OutboxTo(other sender) = %+v, %v", to, err)
	}
}
