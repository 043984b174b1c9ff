package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/bmgate/bmgate/mailmap"
)

// waitLimit bounds every wait for a notification.
const waitLimit = 10 * time.Second

func recv(t testing.TB, ch <-chan mailmap.Change, what string) mailmap.Change {
	t.Helper()
	select {
	case c, ok := <-ch:
		if !ok {
			t.Fatalf("%s: channel closed", what)
		}
		return c
	case <-time.After(waitLimit):
		t.Fatalf("%s: no change within %v", what, waitLimit)
	}
	return mailmap.Change{}
}

func expect(t testing.TB, ch <-chan mailmap.Change, want ...mailmap.Change) {
	t.Helper()
	for i, w := range want {
		if got := recv(t, ch, fmt.Sprintf("change %d (%+v)", i, w)); got != w {
			t.Fatalf("change %d = %+v, want %+v", i, got, w)
		}
	}
}

// quiet checks nothing more arrives for a moment.
func quiet(t testing.TB, ch <-chan mailmap.Change, what string) {
	t.Helper()
	select {
	case c, ok := <-ch:
		if ok {
			t.Fatalf("%s: unexpected change %+v", what, c)
		}
	case <-time.After(200 * time.Millisecond):
	}
}

func testNotifier(t *testing.T, s mailmap.Store) {
	ctx := context.Background()
	a := newUser(t, s, "alice")
	b := newUser(t, s, "bob")
	in := mailbox(t, s, a.ID, "INBOX")
	arch := mailbox(t, s, a.ID, "Archive")
	trash := mailbox(t, s, a.ID, "Trash")
	chA, cancelA := s.Subscribe(a.ID)
	chA2, cancelA2 := s.Subscribe(a.ID) // two sessions of one user
	chB, cancelB := s.Subscribe(b.ID)
	defer cancelA()
	defer cancelB()

	appendMsg(t, s, a.ID, in.ID, message("1"))
	expect(t, chA, mailmap.Change{UserID: a.ID, MailboxID: in.ID, Kind: mailmap.ChangeNew, UID: 1})
	expect(t, chA2, mailmap.Change{UserID: a.ID, MailboxID: in.ID, Kind: mailmap.ChangeNew, UID: 1})
	cancelA2()
	cancelA2() // idempotent
	if _, ok := <-chA2; ok {
		t.Fatal("cancelled subscription still delivers")
	}

	_, err := s.UpdateFlags(ctx, a.ID, in.ID, []uint32{1}, mailmap.FlagsAdd, []string{`\Seen`})
	noErr(t, err, "UpdateFlags")
	expect(t, chA, mailmap.Change{UserID: a.ID, MailboxID: in.ID, Kind: mailmap.ChangeFlags, UID: 1})
	_, err = s.UpdateFlags(ctx, a.ID, in.ID, []uint32{1}, mailmap.FlagsAdd, []string{`\Seen`})
	noErr(t, err, "UpdateFlags no-op")
	quiet(t, chA, "a no-op flag change")

	_, _, err = s.CopyMessages(ctx, a.ID, in.ID, []uint32{1}, arch.ID)
	noErr(t, err, "CopyMessages")
	expect(t, chA, mailmap.Change{UserID: a.ID, MailboxID: arch.ID, Kind: mailmap.ChangeNew, UID: 1})
	_, _, err = s.MoveMessages(ctx, a.ID, arch.ID, []uint32{1}, trash.ID)
	noErr(t, err, "MoveMessages")
	expect(t, chA,
		mailmap.Change{UserID: a.ID, MailboxID: arch.ID, Kind: mailmap.ChangeExpunge, UID: 1},
		mailmap.Change{UserID: a.ID, MailboxID: trash.ID, Kind: mailmap.ChangeNew, UID: 1})
	_, err = s.UpdateFlags(ctx, a.ID, trash.ID, []uint32{1}, mailmap.FlagsAdd, []string{`\Deleted`})
	noErr(t, err, "UpdateFlags")
	_, err = s.Expunge(ctx, a.ID, trash.ID, nil)
	noErr(t, err, "Expunge")
	expect(t, chA,
		mailmap.Change{UserID: a.ID, MailboxID: trash.ID, Kind: mailmap.ChangeFlags, UID: 1},
		mailmap.Change{UserID: a.ID, MailboxID: trash.ID, Kind: mailmap.ChangeExpunge, UID: 1})

	box, err := s.CreateMailbox(ctx, a.ID, "Box", "")
	noErr(t, err, "CreateMailbox")
	expect(t, chA, mailmap.Change{UserID: a.ID, MailboxID: box.ID, Kind: mailmap.ChangeMailboxes})
	noErr(t, s.RenameMailbox(ctx, a.ID, "Box", "Box2"), "RenameMailbox")
	expect(t, chA, mailmap.Change{UserID: a.ID, MailboxID: box.ID, Kind: mailmap.ChangeMailboxes})
	noErr(t, s.SetSubscribed(ctx, a.ID, "Box2", true), "SetSubscribed")
	expect(t, chA, mailmap.Change{UserID: a.ID, MailboxID: box.ID, Kind: mailmap.ChangeMailboxes})
	noErr(t, s.DeleteMailbox(ctx, a.ID, "Box2"), "DeleteMailbox")
	expect(t, chA, mailmap.Change{UserID: a.ID, MailboxID: box.ID, Kind: mailmap.ChangeMailboxes})

	// Failed writes announce nothing.
	noErr(t, s.SetQuota(ctx, a.ID, 1), "SetQuota")
	_, err = s.AppendMessage(ctx, a.ID, in.ID, message("2"), nil, time.Time{})
	wantErr(t, err, mailmap.ErrOverQuota, "AppendMessage over quota")
	_, err = s.CreateMailbox(ctx, a.ID, "INBOX", "")
	wantErr(t, err, mailmap.ErrExists, "CreateMailbox(INBOX)")
	quiet(t, chA, "failed writes")
	// Other users hear nothing of it.
	quiet(t, chB, "another user's changes")

	cancelA()
	if _, ok := <-chA; ok {
		t.Fatal("cancelled subscription still delivers")
	}
	// Close ends the remaining subscriptions.
	noErr(t, s.Close(), "Close")
	select {
	case _, ok := <-chB:
		if ok {
			t.Fatal("change after Close")
		}
	case <-time.After(waitLimit):
		t.Fatal("Close left a subscription open")
	}
}

// testNotifierOverflow: a subscriber that does not read never blocks
// writers; it misses changes and is told to resynchronise.
func testNotifierOverflow(t *testing.T, s mailmap.Store) {
	ctx := context.Background()
	u := newUser(t, s, "alice")
	in := mailbox(t, s, u.ID, "INBOX")
	arch := mailbox(t, s, u.ID, "Archive")
	for i := range 20 {
		appendMsg(t, s, u.ID, in.ID, message(fmt.Sprint(i)))
	}
	ch, cancel := s.Subscribe(u.ID)
	defer cancel()
	all := make([]uint32, 20)
	for i := range all {
		all[i] = uint32(i + 1)
	}
	const rounds = 60 // 1200 changes, far more than any sane buffer
	for range rounds {
		_, _, err := s.CopyMessages(ctx, u.ID, in.ID, all, arch.ID)
		noErr(t, err, "CopyMessages")
	}
	var got []mailmap.Change
drain:
	for {
		select {
		case c := <-ch:
			got = append(got, c)
		default:
			break drain
		}
	}
	if len(got) == 0 || len(got) >= rounds*20 {
		t.Fatalf("drained %d changes from a subscriber that did not read", len(got))
	}
	last := got[len(got)-1]
	if last != (mailmap.Change{UserID: u.ID, Kind: mailmap.ChangeMailboxes}) {
		t.Fatalf("last change after overflow = %+v, want a resync notice (ChangeMailboxes, mailbox 0)", last)
	}
	resyncs := 0
	for _, c := range got {
		if c.Kind == mailmap.ChangeMailboxes {
			resyncs++
		}
	}
	if resyncs != 1 {
		t.Fatalf("%d resync notices, want 1", resyncs)
	}
	// Once drained, changes flow again.
	m := appendMsg(t, s, u.ID, in.ID, message("after"))
	expect(t, ch, mailmap.Change{UserID: u.ID, MailboxID: in.ID, Kind: mailmap.ChangeNew, UID: m.UID})
}
