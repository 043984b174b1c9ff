package storetest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/bmgate/bmgate/mailmap"
)

// deliverConcurrently appends per×len(stores)×perStore messages from many
// goroutines into one mailbox and checks the UIDs: unique, increasing for
// each goroutine, and together exactly 1..total.
func deliverConcurrently(t *testing.T, stores []mailmap.Store, userID, mailboxID int64, goroutines, per int) {
	t.Helper()
	var wg sync.WaitGroup
	got := make([][]uint32, goroutines)
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			s := stores[g%len(stores)]
			for i := range per {
				m, err := s.AppendMessage(context.Background(), userID, mailboxID, message(fmt.Sprintf("g%d-%d", g, i)), nil, time.Time{})
				if err != nil {
					errs <- err
					return
				}
				got[g] = append(got[g], m.UID)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent AppendMessage: %v", err)
	}
	var all []uint32
	for g, us := range got {
		if !slices.IsSorted(us) {
			t.Fatalf("goroutine %d got decreasing UIDs %v", g, us)
		}
		all = append(all, us...)
	}
	slices.Sort(all)
	total := goroutines * per
	for i, u := range all {
		if u != uint32(i+1) {
			t.Fatalf("UIDs are not exactly 1..%d: position %d holds %d", total, i, u)
		}
	}
	ms := messages(t, stores[0], userID, mailboxID)
	if len(ms) != total || !slices.Equal(uids(ms), all) {
		t.Fatalf("mailbox holds %d messages, want %d", len(ms), total)
	}
	if st := status(t, stores[0], userID, mailboxID); st.UIDNext != uint32(total+1) {
		t.Fatalf("UIDNext = %d, want %d", st.UIDNext, total+1)
	}
}

func testConcurrentDelivery(t *testing.T, s mailmap.Store) {
	u := newUser(t, s, "alice")
	deliverConcurrently(t, []mailmap.Store{s}, u.ID, mailbox(t, s, u.ID, "INBOX").ID, 8, 25)
}

// claimConcurrently runs workers (spread over the stores) that claim until
// nothing is left, and checks every row was claimed exactly once.
func claimConcurrently(t *testing.T, stores []mailmap.Store, rows []mailmap.OutboxItem, workers int) {
	t.Helper()
	now := time.Now()
	states := []mailmap.OutboxState{mailmap.OutboxQueued}
	var mu sync.Mutex
	claimed := map[int64]int{}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			s := stores[w%len(stores)]
			for range 1000 { // bounded; ends when a claim comes back empty
				items, err := s.ClaimOutbox(context.Background(), states, now, time.Hour, 3, fmt.Sprintf("w%d", w))
				if err != nil {
					errs <- err
					return
				}
				if len(items) == 0 {
					return
				}
				mu.Lock()
				for _, it := range items {
					claimed[it.ID]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent ClaimOutbox: %v", err)
	}
	for _, r := range rows {
		if claimed[r.ID] != 1 {
			t.Fatalf("row %d claimed %d times", r.ID, claimed[r.ID])
		}
	}
	if len(claimed) != len(rows) {
		t.Fatalf("claimed %d distinct rows, enqueued %d", len(claimed), len(rows))
	}
}

func enqueueMany(t *testing.T, s mailmap.Store, userID int64, n int) []mailmap.OutboxItem {
	t.Helper()
	var items []mailmap.OutboxItem
	for i := range n {
		it := testOutboxItem(userID, i)
		it.NextAttempt = time.Now().Add(-time.Minute)
		items = append(items, it)
	}
	out, err := s.EnqueueOutbox(context.Background(), items)
	noErr(t, err, "EnqueueOutbox")
	return out
}

func testConcurrentClaims(t *testing.T, s mailmap.Store) {
	u := newUser(t, s, "alice")
	claimConcurrently(t, []mailmap.Store{s}, enqueueMany(t, s, u.ID, 120), 6)
}

// testCancel cancels contexts at many points inside multi-row writes and
// checks each write happened completely or not at all.
func testCancel(t *testing.T, s mailmap.Store) {
	ctx := context.Background()
	u := newUser(t, s, "alice")
	in := mailbox(t, s, u.ID, "INBOX")
	arch := mailbox(t, s, u.ID, "Archive")
	for i := range 8 {
		appendMsg(t, s, u.ID, in.ID, message(fmt.Sprint(i)))
	}
	// Double INBOX to 256 messages with copies (cheap: bodies are shared).
	for n := 8; n < 256; n *= 2 {
		_, _, err := s.CopyMessages(ctx, u.ID, in.ID, uids(messages(t, s, u.ID, in.ID)), in.ID)
		noErr(t, err, "CopyMessages")
	}
	src := uids(messages(t, s, u.ID, in.ID))
	if len(src) != 256 {
		t.Fatalf("setup: %d messages", len(src))
	}

	// For each kind of write, cancel after growing delays until one
	// completes: the early ones stop it before it starts, the later ones
	// somewhere inside.
	for _, what := range []string{"CopyMessages", "MoveMessages", "UpdateFlags"} {
		cancelled := 0
		delay := time.Duration(0) // the first attempt is cancelled before it starts
		for i := 0; ; i++ {
			if i == 100 {
				t.Fatalf("%s never completed within %v", what, delay)
			}
			before := status(t, s, u.ID, arch.ID)
			inBefore := status(t, s, u.ID, in.ID)
			key := fmt.Sprintf("$k%d", i)
			cctx, cancel := context.WithTimeout(ctx, delay)
			var err error
			switch what {
			case "CopyMessages":
				_, _, err = s.CopyMessages(cctx, u.ID, in.ID, src, arch.ID)
			case "MoveMessages":
				_, _, err = s.MoveMessages(cctx, u.ID, in.ID, src, arch.ID)
			case "UpdateFlags":
				_, err = s.UpdateFlags(cctx, u.ID, in.ID, src, mailmap.FlagsAdd, []string{key})
			}
			cancel()
			delay = max(20*time.Microsecond, delay+delay/2)
			after := status(t, s, u.ID, arch.ID)
			inAfter := status(t, s, u.ID, in.ID)
			if what == "UpdateFlags" {
				n := 0
				for _, m := range messages(t, s, u.ID, in.ID) {
					if slices.Contains(m.Flags, key) {
						n++
					}
				}
				if (err == nil) != (n == len(src)) || (n != 0 && n != len(src)) {
					t.Fatalf("UpdateFlags (err %v) flagged %d of %d messages", err, n, len(src))
				}
			} else if err == nil {
				if after.Messages != before.Messages+256 || after.UIDNext != before.UIDNext+256 {
					t.Fatalf("%s succeeded but the destination went %+v → %+v", what, before, after)
				}
				if what == "MoveMessages" && inAfter.Messages != 0 {
					t.Fatalf("MoveMessages succeeded but the source holds %d", inAfter.Messages)
				}
			} else if after.Messages != before.Messages || after.UIDNext != before.UIDNext ||
				after.HighestModSeq != before.HighestModSeq || inAfter != inBefore {
				t.Fatalf("%s failed (%v) but left half a change: destination %+v → %+v, source %+v → %+v",
					what, err, before, after, inBefore, inAfter)
			}
			if err != nil {
				cancelled++
				continue
			}
			if what == "MoveMessages" {
				// Move them back for the next kind.
				_, _, err := s.MoveMessages(ctx, u.ID, arch.ID, uids(messages(t, s, u.ID, arch.ID))[before.Messages:], in.ID)
				noErr(t, err, "MoveMessages back")
				src = uids(messages(t, s, u.ID, in.ID))
			}
			break
		}
		if cancelled == 0 {
			t.Fatalf("%s: no attempt was cancelled", what)
		}
	}
	// Whatever happened, the quota bookkeeping matches what is stored.
	var all []mailmap.Message
	for _, m := range []mailmap.Mailbox{in, arch} {
		all = append(all, messages(t, s, u.ID, m.ID)...)
	}
	checkUsage(t, s, u.ID, in.ID, sumSizes(all))
}
