package storetest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/bmgate/bmgate/mailmap"
)

// Shared describes a backend where several Store instances (standing in for
// several processes) open one database.
type Shared struct {
	// New creates a new, empty database and returns a function that opens
	// another Store instance over it, closed when its t ends.
	New func(t *testing.T) (open func(t *testing.T) mailmap.Store)
	// CrossInstanceNotify says instances see each other's changes through
	// their Notifier (PostgreSQL LISTEN/NOTIFY).
	CrossInstanceNotify bool
}

// RunShared runs the tests that need several Store instances over one database.
func RunShared(t *testing.T, b Shared) {
	t.Run("Reopen", func(t *testing.T) { testReopen(t, b.New(t)) })
	t.Run("DeliveryFromTwoInstances", func(t *testing.T) {
		open := b.New(t)
		s1, s2 := open(t), open(t)
		u := newUser(t, s1, "alice")
		deliverConcurrently(t, []mailmap.Store{s1, s2}, u.ID, mailbox(t, s1, u.ID, "INBOX").ID, 8, 15)
	})
	t.Run("ClaimsFromTwoInstances", func(t *testing.T) {
		open := b.New(t)
		s1, s2 := open(t), open(t)
		u := newUser(t, s1, "alice")
		claimConcurrently(t, []mailmap.Store{s1, s2}, enqueueMany(t, s1, u.ID, 120), 6)
	})
	t.Run("AccountsAcrossInstances", func(t *testing.T) { testAccountsAcrossInstances(t, b.New(t)) })
	if b.CrossInstanceNotify {
		t.Run("NotifyAcrossInstances", func(t *testing.T) { testCrossNotify(t, b.New(t)) })
	}
}

// testReopen: data survives closing and re-opening (migrations applied on
// the second open are a no-op), and UIDVALIDITY does not change.
func testReopen(t *testing.T, open func(t *testing.T) mailmap.Store) {
	ctx := context.Background()
	s1 := open(t)
	u := newUser(t, s1, "alice")
	in := mailbox(t, s1, u.ID, "INBOX")
	m := appendMsg(t, s1, u.ID, in.ID, message("kept"), `\Flagged`)
	_, err := s1.AddIdentity(ctx, testIdentity(u.ID, "BM-kept"))
	noErr(t, err, "AddIdentity")
	mbs1, err := s1.Mailboxes(ctx, u.ID)
	noErr(t, err, "Mailboxes")
	noErr(t, s1.Close(), "Close")

	for range 2 {
		s := open(t)
		if _, err := s.Authenticate(ctx, "alice", password); err != nil {
			t.Fatalf("Authenticate after reopen: %v", err)
		}
		mbs, err := s.Mailboxes(ctx, u.ID)
		noErr(t, err, "Mailboxes after reopen")
		if !slices.Equal(mbs, mbs1) {
			t.Fatalf("mailboxes changed across reopen:\n%+v\n%+v", mbs1, mbs)
		}
		ms := messages(t, s, u.ID, in.ID)
		if len(ms) != 1 || ms[0].UID != m.UID || !slices.Equal(ms[0].Flags, m.Flags) {
			t.Fatalf("messages after reopen: %+v", ms)
		}
		id, err := s.IdentityByAddress(ctx, "BM-kept")
		noErr(t, err, "IdentityByAddress after reopen")
		sameIdentity(t, id, func() mailmap.Identity {
			want := testIdentity(u.ID, "BM-kept")
			want.ID, want.CreatedAt = id.ID, id.CreatedAt
			return want
		}())
		noErr(t, s.Close(), "Close")
	}
}

func testCrossNotify(t *testing.T, open func(t *testing.T) mailmap.Store) {
	ctx := context.Background()
	s1, s2 := open(t), open(t)
	u := newUser(t, s1, "alice")
	in := mailbox(t, s1, u.ID, "INBOX")
	ch1, cancel1 := s1.Subscribe(u.ID)
	defer cancel1()
	ch2, cancel2 := s2.Subscribe(u.ID)
	defer cancel2()
	// Notices of creating the user may still be on their way to s2: skip
	// up to a marker change.
	marker, err := s1.CreateMailbox(ctx, u.ID, "Marker", "")
	noErr(t, err, "CreateMailbox")
	for _, ch := range []<-chan mailmap.Change{ch1, ch2} {
		for c := recv(t, ch, "marker"); c.MailboxID != marker.ID; c = recv(t, ch, "marker") {
		}
	}

	appendMsg(t, s1, u.ID, in.ID, message("x"))
	want := mailmap.Change{UserID: u.ID, MailboxID: in.ID, Kind: mailmap.ChangeNew, UID: 1}
	expect(t, ch2, want) // the other instance
	expect(t, ch1, want) // the writing instance, once
	quiet(t, ch1, "the writer's own change echoed back")

	_, err = s2.UpdateFlags(ctx, u.ID, in.ID, []uint32{1}, mailmap.FlagsAdd, []string{`\Seen`})
	noErr(t, err, "UpdateFlags")
	want = mailmap.Change{UserID: u.ID, MailboxID: in.ID, Kind: mailmap.ChangeFlags, UID: 1}
	expect(t, ch1, want)
	expect(t, ch2, want)

	// A big transaction arrives whole, across several notifications.
	arch := mailbox(t, s1, u.ID, "Archive")
	many := make([]uint32, 0, 200)
	for range 199 {
		appendMsg(t, s1, u.ID, in.ID, message("m"))
	}
	for i := range 200 {
		many = append(many, uint32(i+1))
	}
	drainFor(ch2, 200*time.Millisecond)
	_, dst, err := s1.CopyMessages(ctx, u.ID, in.ID, many, arch.ID)
	noErr(t, err, "CopyMessages")
	for _, d := range dst {
		expect(t, ch2, mailmap.Change{UserID: u.ID, MailboxID: arch.ID, Kind: mailmap.ChangeNew, UID: d})
	}
}

// drainFor reads and drops whatever arrives for d.
func drainFor(ch <-chan mailmap.Change, d time.Duration) {
	deadline := time.After(d)
	for {
		select {
		case <-ch:
		case <-deadline:
			return
		}
	}
}
