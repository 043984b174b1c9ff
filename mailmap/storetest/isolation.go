package storetest

import (
	"bytes"
	"context"
	"slices"
	"testing"
	"time"

	"github.com/bmgate/bmgate/mailmap"
)

// testIsolation proves user A cannot read, flag, copy, move, expunge,
// rename or delete user B's mailboxes and messages through the Store, even
// with B's mailbox ids and UIDs in hand.
func testIsolation(t *testing.T, s mailmap.Store) {
	ctx := context.Background()
	a := newUser(t, s, "alice")
	b := newUser(t, s, "bob")
	aIn := mailbox(t, s, a.ID, "INBOX")
	bIn := mailbox(t, s, b.ID, "INBOX")
	bSecret, err := s.CreateMailbox(ctx, b.ID, "Secret", "")
	noErr(t, err, "CreateMailbox")
	appendMsg(t, s, a.ID, aIn.ID, message("a1"))
	bRaw := message("b-private")
	bm := appendMsg(t, s, b.ID, bIn.ID, bRaw, `\Deleted`)
	appendMsg(t, s, b.ID, bSecret.ID, message("b-secret"))
	bIdent, err := s.AddIdentity(ctx, testIdentity(b.ID, "BM-bob"))
	noErr(t, err, "AddIdentity")
	_, err = s.AddContact(ctx, mailmap.Contact{UserID: b.ID, Alias: "x@y", Address: "BM-x"})
	noErr(t, err, "AddContact")
	bBefore := snapshot(t, s, b.ID)

	nf := mailmap.ErrNotFound
	for _, id := range []int64{bIn.ID, bSecret.ID} {
		_, err = s.MailboxByID(ctx, a.ID, id)
		wantErr(t, err, nf, "MailboxByID of B's mailbox")
		_, err = s.MailboxStatus(ctx, a.ID, id)
		wantErr(t, err, nf, "MailboxStatus of B's mailbox")
		_, err = s.Messages(ctx, a.ID, id)
		wantErr(t, err, nf, "Messages of B's mailbox")
		_, err = s.MessageRaw(ctx, a.ID, id, bm.UID)
		wantErr(t, err, nf, "MessageRaw of B's message")
		_, err = s.AppendMessage(ctx, a.ID, id, message("intruder"), nil, time.Time{})
		wantErr(t, err, nf, "AppendMessage into B's mailbox")
		_, err = s.UpdateFlags(ctx, a.ID, id, []uint32{bm.UID}, mailmap.FlagsReplace, nil)
		wantErr(t, err, nf, "UpdateFlags on B's message")
		_, err = s.UpdateFlags(ctx, a.ID, id, nil, mailmap.FlagsAdd, []string{`\Seen`})
		wantErr(t, err, nf, "UpdateFlags on B's mailbox without UIDs")
		_, _, err = s.CopyMessages(ctx, a.ID, id, []uint32{bm.UID}, aIn.ID)
		wantErr(t, err, nf, "CopyMessages out of B's mailbox")
		_, _, err = s.CopyMessages(ctx, a.ID, aIn.ID, []uint32{1}, id)
		wantErr(t, err, nf, "CopyMessages into B's mailbox")
		_, _, err = s.MoveMessages(ctx, a.ID, id, []uint32{bm.UID}, aIn.ID)
		wantErr(t, err, nf, "MoveMessages out of B's mailbox")
		_, _, err = s.MoveMessages(ctx, a.ID, aIn.ID, []uint32{1}, id)
		wantErr(t, err, nf, "MoveMessages into B's mailbox")
		_, err = s.Expunge(ctx, a.ID, id, nil)
		wantErr(t, err, nf, "Expunge of B's mailbox")
		_, err = s.Expunge(ctx, a.ID, id, []uint32{bm.UID})
		wantErr(t, err, nf, "Expunge of B's message")
	}
	_, err = s.Mailbox(ctx, a.ID, "Secret")
	wantErr(t, err, nf, "Mailbox by B's folder name")
	wantErr(t, s.DeleteMailbox(ctx, a.ID, "Secret"), nf, "DeleteMailbox of B's folder name")
	wantErr(t, s.RenameMailbox(ctx, a.ID, "Secret", "Mine"), nf, "RenameMailbox of B's folder name")
	wantErr(t, s.SetSubscribed(ctx, a.ID, "Secret", true), nf, "SetSubscribed of B's folder name")
	wantErr(t, s.DeleteIdentity(ctx, a.ID, bIdent.ID), nf, "DeleteIdentity of B's identity")
	_, err = s.ResolveAlias(ctx, a.ID, "x@y")
	wantErr(t, err, nf, "ResolveAlias of B's contact")
	wantErr(t, s.DeleteContact(ctx, a.ID, "x@y"), nf, "DeleteContact of B's contact")
	if ms, err := s.FindByMessageID(ctx, a.ID, "", "b-private@test"); err != nil || len(ms) != 0 {
		t.Fatalf("FindByMessageID found B's message for A: %+v, %v", ms, err)
	}
	if ids, err := s.Identities(ctx, a.ID); err != nil || len(ids) != 0 {
		t.Fatalf("Identities(A) = %+v, %v", ids, err)
	}
	if cs, err := s.Contacts(ctx, a.ID); err != nil || len(cs) != 0 {
		t.Fatalf("Contacts(A) = %+v, %v", cs, err)
	}
	mbs, err := s.Mailboxes(ctx, a.ID)
	noErr(t, err, "Mailboxes(A)")
	for _, m := range mbs {
		if m.UserID != a.ID {
			t.Fatalf("Mailboxes(A) lists %+v", m)
		}
	}
	// A creating a folder of the same name gets a folder of its own.
	mine, err := s.CreateMailbox(ctx, a.ID, "Secret", "")
	noErr(t, err, "CreateMailbox(Secret) for A")
	if mine.ID == bSecret.ID || len(messages(t, s, a.ID, mine.ID)) != 0 {
		t.Fatalf("A's Secret is B's: %+v", mine)
	}
	noErr(t, s.DeleteMailbox(ctx, a.ID, "Secret"), "DeleteMailbox(Secret) for A")

	// B's data is exactly as before.
	if after := snapshot(t, s, b.ID); !after.equal(bBefore) {
		t.Fatalf("B's data changed:\nbefore %+v\nafter  %+v", bBefore, after)
	}
	raw, err := s.MessageRaw(ctx, b.ID, bIn.ID, bm.UID)
	noErr(t, err, "B reads own message")
	if !bytes.Equal(raw, bRaw) {
		t.Fatal("B's message bytes changed")
	}
	if _, err := s.IdentityByAddress(ctx, "BM-bob"); err != nil {
		t.Fatalf("B's identity: %v", err)
	}
	// And A's own INBOX holds only A's message.
	if ms := messages(t, s, a.ID, aIn.ID); len(ms) != 1 || ms[0].MessageID != "a1@test" {
		t.Fatalf("A's INBOX: %+v", ms)
	}
}

type userSnapshot struct {
	mailboxes []mailmap.Mailbox
	messages  [][]mailmap.Message
}

func snapshot(t testing.TB, s mailmap.Store, userID int64) userSnapshot {
	t.Helper()
	mbs, err := s.Mailboxes(context.Background(), userID)
	noErr(t, err, "Mailboxes")
	snap := userSnapshot{mailboxes: mbs}
	for _, m := range mbs {
		snap.messages = append(snap.messages, messages(t, s, userID, m.ID))
	}
	return snap
}

func (a userSnapshot) equal(b userSnapshot) bool {
	if !slices.Equal(a.mailboxes, b.mailboxes) || len(a.messages) != len(b.messages) {
		return false
	}
	for i := range a.messages {
		if !slices.EqualFunc(a.messages[i], b.messages[i], func(x, y mailmap.Message) bool {
			return x.ID == y.ID && x.UID == y.UID && x.ModSeq == y.ModSeq && slices.Equal(x.Flags, y.Flags) &&
				x.MailboxID == y.MailboxID && x.Size == y.Size
		}) {
			return false
		}
	}
	return true
}
