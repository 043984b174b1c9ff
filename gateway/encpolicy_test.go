package gateway

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bmgate/bmgate/bmcore/object"
	"github.com/bmgate/bmgate/bmcore/wire"
	"github.com/bmgate/bmgate/mailmap"
)

// folderRaws returns the bytes of every message in a user's folder.
func (e *inboundEnv) folderRaws(u mailmap.User, folder string) []string {
	e.t.Helper()
	ctx := context.Background()
	mb, err := e.store.Mailbox(ctx, u.ID, folder)
	if err != nil {
		e.t.Fatal(err)
	}
	msgs, err := e.store.Messages(ctx, u.ID, mb.ID)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, m := range msgs {
		raw, err := e.store.MessageRaw(ctx, u.ID, mb.ID, m.UID)
		if err != nil {
			e.t.Fatal(err)
		}
		out = append(out, string(raw))
	}
	return out
}

// sentFlags returns the flags of the Sent copies, in UID order.
func (e *sendEnv) sentFlags() [][]string {
	e.t.Helper()
	ctx := context.Background()
	mb, err := e.store.MailboxBySpecialUse(ctx, e.alice.ID, mailmap.SpecialSent)
	if err != nil {
		e.t.Fatal(err)
	}
	msgs, err := e.store.Messages(ctx, e.alice.ID, mb.ID)
	if err != nil {
		e.t.Fatal(err)
	}
	var out [][]string
	for _, m := range msgs {
		out = append(out, m.Flags)
	}
	return out
}

// sendAndFile submits raw from alice to bob, files it in Sent as the
// client would, and publishes it.
func (e *sendEnv) sendAndFile(raw string) *wire.Object {
	e.t.Helper()
	ctx := context.Background()
	rcpt, err := e.g.CheckRecipient(ctx, e.alice, e.bob.Address.String()+"@bm.test")
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.g.Submit(ctx, Submission{User: e.alice, From: e.aliceID.Address.String(), Recipients: []Recipient{rcpt}, Raw: []byte(raw)}); err != nil {
		e.t.Fatal(err)
	}
	mb, err := e.store.MailboxBySpecialUse(ctx, e.alice.ID, mailmap.SpecialSent)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.store.AppendMessage(ctx, e.alice.ID, mb.ID, []byte(raw), []string{`\Seen`}, e.clock.Now()); err != nil {
		e.t.Fatal(err)
	}
	drive(e.t, ctx, e.g)
	msgs := e.pub.ofType(wire.ObjectMsg)
	if len(msgs) == 0 {
		e.t.Fatal("nothing published")
	}
	return msgs[len(msgs)-1]
}

// TestDeliveredMatchedByRow: the ack of a msg puts $Delivered on its Sent
// copy whether or not the mail had a Message-ID (without one, the copy is
// found by its content); other copies are left alone.
func TestDeliveredMatchedByRow(t *testing.T) {
	e := newSendEnv(t, filepath.Join(t.TempDir(), "g.db"), 1, nil)
	ctx := context.Background()
	hdr := "From: " + e.aliceID.Address.String() + "@bm.test\r\nTo: " + e.bob.Address.String() + "@bm.test\r\n"
	// An unrelated copy without a Message-ID, never sent.
	mb, err := e.store.MailboxBySpecialUse(ctx, e.alice.ID, mailmap.SpecialSent)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.AppendMessage(ctx, e.alice.ID, mb.ID, []byte(hdr+"Subject: cron\r\n\r\nother text\r\n"), nil, e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	withID := e.sendAndFile(hdr + "Subject: with id\r\nMessage-ID: <x1@client.test>\r\n\r\nhello\r\n")
	noID := e.sendAndFile(hdr + "Subject: cron\r\n\r\nbackup done\r\n")
	// Thunderbird-like: its Sent copy differs in bytes (a header added), not in text.
	rcpt, _ := e.g.CheckRecipient(ctx, e.alice, e.bob.Address.String()+"@bm.test")
	if err := e.g.Submit(ctx, Submission{User: e.alice, From: e.aliceID.Address.String(), Recipients: []Recipient{rcpt},
		Raw: []byte(hdr + "Subject: reworded\r\n\r\nsame text\r\n")}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.AppendMessage(ctx, e.alice.ID, mb.ID, []byte(hdr+"Subject: reworded\r\nX-Mozilla-Draft-Info: x\r\n\r\nsame text\r\n"), nil, e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	drive(t, ctx, e.g)
	msgs := e.pub.ofType(wire.ObjectMsg)
	for _, o := range []*wire.Object{withID, noID, msgs[len(msgs)-1]} {
		e.putRaw(e.ackOf(o))
	}
	e.once()
	items, err := e.store.UserOutbox(ctx, e.alice.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range items {
		if it.State != mailmap.OutboxAcked {
			t.Fatalf("row %d (%s): %s, want acked", it.ID, it.Subject, it.State)
		}
	}
	flags := e.sentFlags()
	want := []bool{false, true, true, true} // unrelated, with id, cron, reworded
	if len(flags) != len(want) {
		t.Fatalf("%d Sent copies", len(flags))
	}
	for i, f := range flags {
		if hasFlag(f, DeliveredKeyword) != want[i] {
			t.Errorf("Sent copy %d: flags %v, want %s: %v", i+1, f, DeliveredKeyword, want[i])
		}
	}
}

// TestReplyNamesOurInventoryHash: alice's mail went to bob in encoding 2
// (no Message-ID in the object), so bob's bmgate showed it as
// <hex(inventory hash)@its domain>. Bob's reply names that id; on alice's
// side it becomes the Message-ID of her Sent copy, whatever the subject.
// The reply came in encoding 3: bob's address is remembered as a reader.
func TestReplyNamesOurInventoryHash(t *testing.T) {
	e := newSendEnv(t, filepath.Join(t.TempDir(), "g.db"), 1, nil)
	ctx := context.Background()
	hdr := "From: " + e.aliceID.Address.String() + "@bm.test\r\nTo: " + e.bob.Address.String() + "@bm.test\r\n"
	o := e.sendAndFile(hdr + "Subject: question\r\nMessage-ID: <q1@client.test>\r\n\r\nwhen?\r\n")
	if it := e.row(); it.Encoding != 2 {
		t.Fatalf("sent in encoding %d, want 2", it.Encoding)
	}
	theirID := wire.ComputeInvHash(o.Raw).String() + "@elsewhere.example"
	reply, err := object.EncodeExtended(object.Extended{Subject: "a different subject", Body: "tomorrow\n", Extra: map[string]string{
		ExtraMessageID: "r1@bob.example", ExtraInReplyTo: theirID, ExtraReferences: "root@bob.example " + theirID}})
	if err != nil {
		t.Fatal(err)
	}
	headless, err := object.BuildMsg(e.bob, object.PubkeyOf(e.aliceID), e.aliceID.Address,
		object.MsgContent{Encoding: 3, Message: reply}, e.expires(), e.g.cfg.Rand)
	if err != nil {
		t.Fatal(err)
	}
	e.put(headless)
	e.once()
	var got string
	for _, raw := range e.folderRaws(e.alice, "INBOX") {
		if strings.Contains(raw, "a different subject") {
			got = raw
		}
	}
	if got == "" {
		t.Fatal("reply not delivered")
	}
	for _, want := range []string{"In-Reply-To: <q1@client.test>\r\n", "References: <root@bob.example> <q1@client.test>\r\n", "Message-Id: <r1@bob.example>"} {
		if !strings.Contains(got, want) {
			t.Errorf("reply lacks %q:\n%s", want, got)
		}
	}
	if enc, err := e.store.EncodingSeen(ctx, e.bob.Address.String()); err != nil || enc != 3 {
		t.Errorf("EncodingSeen(bob) = %d, %v; want 3", enc, err)
	}
}

// TestDeliveredSendmailCopy: bmgate sendmail gives a script's mail a
// Message-ID; the script's own Sent copy has none. Its $Delivered is
// found by content all the same (docs/interop-notbit.md, scenario b).
func TestDeliveredSendmailCopy(t *testing.T) {
	e := newSendEnv(t, filepath.Join(t.TempDir(), "g.db"), 1, nil)
	ctx := context.Background()
	hdr := "From: " + e.aliceID.Address.String() + "@bm.test\r\nTo: " + e.bob.Address.String() + "@bm.test\r\n"
	rcpt, _ := e.g.CheckRecipient(ctx, e.alice, e.bob.Address.String()+"@bm.test")
	if err := e.g.Submit(ctx, Submission{User: e.alice, From: e.aliceID.Address.String(), Recipients: []Recipient{rcpt},
		Raw: []byte(hdr + "Subject: disk\r\nMessage-ID: <sm1@bm.test>\r\n\r\ndisk full\r\n")}); err != nil {
		t.Fatal(err)
	}
	mb, err := e.store.MailboxBySpecialUse(ctx, e.alice.ID, mailmap.SpecialSent)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.AppendMessage(ctx, e.alice.ID, mb.ID, []byte(hdr+"Subject: disk\r\n\r\ndisk full\r\n"), nil, e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	drive(t, ctx, e.g)
	msgs := e.pub.ofType(wire.ObjectMsg)
	e.putRaw(e.ackOf(msgs[len(msgs)-1]))
	e.once()
	if it := e.row(); it.State != mailmap.OutboxAcked {
		t.Fatalf("row %s, want acked", it.State)
	}
	e.g.markDelivered(ctx)
	if flags := e.sentFlags(); len(flags) != 1 || !hasFlag(flags[0], DeliveredKeyword) {
		t.Fatalf("Sent copy flags %v, want %s", flags, DeliveredKeyword)
	}
}
