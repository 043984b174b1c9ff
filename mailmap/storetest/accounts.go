package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/bmgate/bmgate/mailmap"
)

// generationWait bounds how long AccountsGeneration may trail a commit
// (PostgreSQL: the notification's trip).
const generationWait = 10 * time.Second

// waitGeneration waits until the store's AccountsGeneration differs from
// from, and returns it.
func waitGeneration(t testing.TB, s mailmap.Store, from uint64, what string) uint64 {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(generationWait)
	for {
		g, err := s.AccountsGeneration(ctx)
		noErr(t, err, "AccountsGeneration")
		if g != from {
			return g
		}
		if time.Now().After(deadline) {
			t.Fatalf("AccountsGeneration still %d %v after %s", g, generationWait, what)
		}
		time.Sleep(time.Millisecond)
	}
}

func readGeneration(t testing.TB, s mailmap.Store) uint64 {
	t.Helper()
	g, err := s.ReadAccountsGeneration(context.Background())
	noErr(t, err, "ReadAccountsGeneration")
	return g
}

// testAccountsGeneration: every kind of change to account data moves the
// generation, seen at once by ReadAccountsGeneration and soon by
// AccountsGeneration; mail activity does not move it.
func testAccountsGeneration(t *testing.T, s mailmap.Store) {
	ctx := context.Background()
	var u mailmap.User
	var id mailmap.Identity
	steps := []struct {
		what string
		fn   func() error
	}{
		{"CreateUser", func() (err error) { u, err = s.CreateUser(ctx, "alice", password); return err }},
		{"SetDisabled", func() error { return s.SetDisabled(ctx, u.ID, true) }},
		{"SetDisabled(false)", func() error { return s.SetDisabled(ctx, u.ID, false) }},
		{"SetQuota", func() error { return s.SetQuota(ctx, u.ID, 1<<20) }},
		{"SetDeliveryReports", func() error { return s.SetDeliveryReports(ctx, u.ID, true) }},
		{"SetPassword", func() error { return s.SetPassword(ctx, u.ID, password) }},
		{"AddIdentity", func() (err error) { id, err = s.AddIdentity(ctx, testIdentity(u.ID, "BM-generation")); return err }},
		{"MarkPubkeySent", func() error { return s.MarkPubkeySent(ctx, id.ID, time.Now()) }},
		{"AddContact", func() error {
			_, err := s.AddContact(ctx, mailmap.Contact{UserID: u.ID, Alias: "bob@example.org", Address: "BM-bob"})
			return err
		}},
		{"AddSubscription", func() error {
			_, err := s.AddSubscription(ctx, mailmap.Subscription{UserID: u.ID, Address: "BM-news"})
			return err
		}},
		{"DeleteIdentity", func() error { return s.DeleteIdentity(ctx, u.ID, id.ID) }},
		{"DeleteUser", func() error { return s.DeleteUser(ctx, u.ID) }},
	}
	mem, err := s.AccountsGeneration(ctx)
	noErr(t, err, "AccountsGeneration")
	direct := readGeneration(t, s)
	for i, st := range steps {
		noErr(t, st.fn(), st.what)
		d := readGeneration(t, s)
		if d == direct {
			t.Fatalf("ReadAccountsGeneration did not move after %s", st.what)
		}
		direct = d
		mem = waitGeneration(t, s, mem, st.what)
		if i == 0 {
			// Mail activity is not account data.
			in := mailbox(t, s, u.ID, "INBOX")
			appendMsg(t, s, u.ID, in.ID, message("not-account-data"))
			_, err := s.UpdateFlags(ctx, u.ID, in.ID, []uint32{1}, mailmap.FlagsAdd, []string{`\Seen`})
			noErr(t, err, "UpdateFlags")
			_, err = s.CreateMailbox(ctx, u.ID, "Projects", "")
			noErr(t, err, "CreateMailbox")
			_, err = s.Expunge(ctx, u.ID, in.ID, []uint32{1})
			noErr(t, err, "Expunge")
			if d := readGeneration(t, s); d != direct {
				t.Fatalf("mail activity moved the accounts generation from %d to %d", direct, d)
			}
		}
	}
}

// testUserActive: the per-command account check follows enabling,
// disabling and deletion.
func testUserActive(t *testing.T, s mailmap.Store) {
	ctx := context.Background()
	u := newUser(t, s, "alice")
	noErr(t, s.UserActive(ctx, u.ID), "UserActive")
	noErr(t, s.UserActive(ctx, u.ID), "UserActive (cached)")
	wantErr(t, s.UserActive(ctx, u.ID+1000), mailmap.ErrNotFound, "UserActive of an unknown user")

	g, err := s.AccountsGeneration(ctx)
	noErr(t, err, "AccountsGeneration")
	noErr(t, s.SetDisabled(ctx, u.ID, true), "SetDisabled")
	g = waitGeneration(t, s, g, "SetDisabled")
	wantErr(t, s.UserActive(ctx, u.ID), mailmap.ErrDisabled, "UserActive of a disabled user")
	noErr(t, s.SetDisabled(ctx, u.ID, false), "SetDisabled(false)")
	g = waitGeneration(t, s, g, "SetDisabled(false)")
	noErr(t, s.UserActive(ctx, u.ID), "UserActive after enabling again")
	noErr(t, s.DeleteUser(ctx, u.ID), "DeleteUser")
	waitGeneration(t, s, g, "DeleteUser")
	wantErr(t, s.UserActive(ctx, u.ID), mailmap.ErrNotFound, "UserActive of a deleted user")
}

// testAccountsAcrossInstances: a change made through another Store on the
// same database (another bmgate process, or the CLI) is seen: at once by
// ReadAccountsGeneration, soon by AccountsGeneration, and by UserActive
// once the generation moved.
func testAccountsAcrossInstances(t *testing.T, open func(t *testing.T) mailmap.Store) {
	ctx := context.Background()
	s1, s2 := open(t), open(t)
	u := newUser(t, s1, "alice")
	waitFor := func(what string, fn func() error) {
		t.Helper()
		mem, err := s1.AccountsGeneration(ctx)
		noErr(t, err, "AccountsGeneration")
		direct := readGeneration(t, s1)
		noErr(t, fn(), what)
		if readGeneration(t, s1) == direct {
			t.Fatalf("ReadAccountsGeneration of the other store did not move after %s", what)
		}
		waitGeneration(t, s1, mem, what+" through the other store")
	}
	noErr(t, s1.UserActive(ctx, u.ID), "UserActive")
	waitFor("AddIdentity", func() error { _, err := s2.AddIdentity(ctx, testIdentity(u.ID, "BM-other")); return err })
	ids, err := s1.AllIdentities(ctx)
	noErr(t, err, "AllIdentities")
	if len(ids) != 1 || ids[0].Address != "BM-other" {
		t.Fatalf("identities seen by the first store: %+v", ids)
	}
	waitFor("AddSubscription", func() error {
		_, err := s2.AddSubscription(ctx, mailmap.Subscription{UserID: u.ID, Address: "BM-news"})
		return err
	})
	waitFor("SetDisabled", func() error { return s2.SetDisabled(ctx, u.ID, true) })
	wantErr(t, s1.UserActive(ctx, u.ID), mailmap.ErrDisabled, "UserActive after another store disabled the user")
	waitFor("SetDisabled(false)", func() error { return s2.SetDisabled(ctx, u.ID, false) })
	noErr(t, s1.UserActive(ctx, u.ID), "UserActive after another store enabled the user")
	waitFor("DeleteUser", func() error { return s2.DeleteUser(ctx, u.ID) })
	wantErr(t, s1.UserActive(ctx, u.ID), mailmap.ErrNotFound, "UserActive after another store deleted the user")
}
