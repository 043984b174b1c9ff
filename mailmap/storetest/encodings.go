package storetest

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/bmgate/bmgate/mailmap"
)

// testEncodings: the highest encoding seen per address only rises.
func testEncodings(t *testing.T, s mailmap.Store) {
	ctx := context.Background()
	if e, err := s.EncodingSeen(ctx, "BM-nobody"); err != nil || e != 0 {
		t.Fatalf("EncodingSeen(unknown) = %d, %v", e, err)
	}
	for _, step := range []struct {
		enc, want uint64
	}{{2, 2}, {3, 3}, {2, 3}, {1, 3}} {
		noErr(t, s.NoteEncoding(ctx, "BM-peer", step.enc), "NoteEncoding")
		if e, err := s.EncodingSeen(ctx, "BM-peer"); err != nil || e != step.want {
			t.Fatalf("after NoteEncoding(%d): EncodingSeen = %d, %v; want %d", step.enc, e, err, step.want)
		}
	}
	if e, _ := s.EncodingSeen(ctx, "BM-other"); e != 0 {
		t.Fatalf("EncodingSeen(other) = %d", e)
	}
	if err := s.NoteEncoding(ctx, "", 3); err == nil {
		t.Fatal("NoteEncoding with no address succeeded")
	}
}

// testOutboxLookups: a row by the inventory hash it published (one user's
// only), and the latest getpubkey request of rows waiting for an address.
func testOutboxLookups(t *testing.T, s mailmap.Store) {
	ctx := context.Background()
	a := newUser(t, s, "alice")
	b := newUser(t, s, "bob")
	one, two := testOutboxItem(a.ID, 1), testOutboxItem(a.ID, 2)
	one.InvHash, two.InvHash = bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	other := testOutboxItem(b.ID, 3)
	other.InvHash = bytes.Repeat([]byte{3}, 32)
	// Waiting for BM-to9's pubkey: two rows asked, at different times.
	w1, w2 := testOutboxItem(a.ID, 9), testOutboxItem(b.ID, 9)
	w1.State, w1.Attempts, w1.SentAt = mailmap.OutboxAwaitingPubkey, 1, t0
	w2.State, w2.Attempts, w2.SentAt = mailmap.OutboxAwaitingPubkey, 3, t0.Add(time.Hour)
	got, err := s.EnqueueOutbox(ctx, []mailmap.OutboxItem{one, two, other, w1, w2})
	noErr(t, err, "EnqueueOutbox")
	it, err := s.OutboxByInvHash(ctx, a.ID, two.InvHash)
	if err != nil || it.ID != got[1].ID {
		t.Fatalf("OutboxByInvHash = %d, %v; want row %d", it.ID, err, got[1].ID)
	}
	if _, err := s.OutboxByInvHash(ctx, a.ID, other.InvHash); !errors.Is(err, mailmap.ErrNotFound) {
		t.Fatalf("OutboxByInvHash of another user's row: %v", err)
	}
	if _, err := s.OutboxByInvHash(ctx, a.ID, nil); !errors.Is(err, mailmap.ErrNotFound) {
		t.Fatalf("OutboxByInvHash(nil): %v", err)
	}
	n, at, err := s.PubkeyRequest(ctx, "BM-to9")
	if err != nil || n != 3 || !at.Equal(t0.Add(time.Hour)) {
		t.Fatalf("PubkeyRequest = %d, %v, %v", n, at, err)
	}
	if _, _, err := s.PubkeyRequest(ctx, "BM-to1"); !errors.Is(err, mailmap.ErrNotFound) {
		t.Fatalf("PubkeyRequest(not waiting) = %v", err)
	}
}

// testPendingSends: the rows still needing proof of work, with their
// sizes, of one user or of all.
func testPendingSends(t *testing.T, s mailmap.Store) {
	ctx := context.Background()
	a := newUser(t, s, "alice")
	b := newUser(t, s, "bob")
	queued, waiting, sent := testOutboxItem(a.ID, 1), testOutboxItem(b.ID, 2), testOutboxItem(a.ID, 3)
	queued.Encoding = 3
	waiting.State, sent.State = mailmap.OutboxAwaitingPubkey, mailmap.OutboxSent
	_, err := s.EnqueueOutbox(ctx, []mailmap.OutboxItem{queued, waiting, sent})
	noErr(t, err, "EnqueueOutbox")
	all, err := s.PendingSends(ctx, 0)
	noErr(t, err, "PendingSends")
	if len(all) != 2 || all[0].UserID != a.ID || all[1].UserID != b.ID {
		t.Fatalf("PendingSends(all) = %+v", all)
	}
	p := all[0]
	if p.Kind != queued.Kind || p.ToAddress != queued.ToAddress || p.Encoding != 3 || p.TTL != queued.TTL ||
		p.TextBytes != len(queued.Subject)+len(queued.Body)+len(queued.Extra) || p.OriginalBytes != len(queued.Original) {
		t.Fatalf("PendingSend %+v", p)
	}
	mine, err := s.PendingSends(ctx, b.ID)
	if err != nil || len(mine) != 1 || mine[0].ToAddress != waiting.ToAddress {
		t.Fatalf("PendingSends(bob) = %+v, %v", mine, err)
	}
}
