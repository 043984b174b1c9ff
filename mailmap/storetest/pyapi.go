package storetest

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/bmgate/bmgate/mailmap"
)

// testAPIRows: what the XML-RPC API keeps with outbox rows (api_ref,
// trashed) and DeleteSubscription, per user.
func testAPIRows(t *testing.T, s mailmap.Store) {
	ctx := context.Background()
	a := newUser(t, s, "alice")
	b := newUser(t, s, "bob")
	ref := bytes.Repeat([]byte{7}, 38)
	row := mailmap.OutboxItem{UserID: a.ID, FromAddress: "BM-a", ToAddress: "BM-b", Kind: mailmap.OutboxMsg,
		Subject: "s", Body: "b", Encoding: 2, State: mailmap.OutboxQueued, NextAttempt: time.Now(), TTL: time.Hour, APIRef: ref}
	plain := row
	plain.APIRef = nil
	rows, err := s.EnqueueOutbox(ctx, []mailmap.OutboxItem{row, plain})
	noErr(t, err, "EnqueueOutbox")
	got, err := s.OutboxItem(ctx, rows[0].ID)
	noErr(t, err, "OutboxItem")
	if !bytes.Equal(got.APIRef, ref) || got.Trashed {
		t.Fatalf("row = %+v, want api_ref kept, not trashed", got)
	}
	if got, _ := s.OutboxItem(ctx, rows[1].ID); got.APIRef != nil {
		t.Fatalf("row without api_ref: %x", got.APIRef)
	}
	// The pipeline's transitions leave both alone.
	cleared := []byte{}
	got, err = s.TransitionOutbox(ctx, mailmap.OutboxStep{ID: rows[0].ID, From: []mailmap.OutboxState{mailmap.OutboxQueued},
		To: mailmap.OutboxSent, AckData: &cleared})
	noErr(t, err, "TransitionOutbox")
	if !bytes.Equal(got.APIRef, ref) {
		t.Fatalf("transition changed api_ref: %x", got.APIRef)
	}
	n, err := s.TrashOutbox(ctx, b.ID, []int64{rows[0].ID})
	noErr(t, err, "TrashOutbox by another user")
	if n != 0 {
		t.Fatalf("bob trashed %d of alice's rows", n)
	}
	n, err = s.TrashOutbox(ctx, a.ID, []int64{rows[0].ID})
	noErr(t, err, "TrashOutbox")
	if n != 1 {
		t.Fatalf("TrashOutbox = %d", n)
	}
	list, err := s.UserOutbox(ctx, a.ID)
	noErr(t, err, "UserOutbox")
	if len(list) != 2 || !list[0].Trashed || list[1].Trashed {
		t.Fatalf("UserOutbox = %+v", list)
	}
	if n, _ := s.TrashOutbox(ctx, a.ID, []int64{rows[0].ID}); n != 0 {
		t.Fatalf("trashed twice: %d", n)
	}

	for _, u := range []mailmap.User{a, b} {
		_, err := s.AddSubscription(ctx, mailmap.Subscription{UserID: u.ID, Address: "BM-news"})
		noErr(t, err, "AddSubscription")
	}
	noErr(t, s.DeleteSubscription(ctx, a.ID, "BM-news"), "DeleteSubscription")
	wantErr(t, s.DeleteSubscription(ctx, a.ID, "BM-news"), mailmap.ErrNotFound, "DeleteSubscription again")
	if subs, _ := s.Subscriptions(ctx, a.ID); len(subs) != 0 {
		t.Fatalf("alice still follows %v", subs)
	}
	if subs, _ := s.Subscriptions(ctx, b.ID); len(subs) != 1 {
		t.Fatalf("bob's subscription went too: %v", subs)
	}
}
