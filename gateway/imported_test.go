package gateway

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"slices"
	"testing"
	"time"

	"github.com/bmgate/bmgate/bmcore/wire"
	"github.com/bmgate/bmgate/mailmap"
)

// importedRow stores what bmgate import pybitmessage writes for a message
// PyBitmessage sent that still awaits its ack: its Sent copy, and an outbox
// row in state sent with PyBitmessage's ackdata (object type 2, version 1,
// stream 1, 32 random bytes), no proof-of-work job, due when PyBitmessage
// would have resent it.
func (e *sendEnv) importedRow(ackData []byte) mailmap.OutboxItem {
	e.t.Helper()
	ctx := context.Background()
	now := e.clock.Now()
	sent, err := e.store.MailboxBySpecialUse(ctx, e.alice.ID, mailmap.SpecialSent)
	if err != nil {
		e.t.Fatal(err)
	}
	raw := "From: " + e.aliceID.Address.String() + "@bm.test\r\nTo: " + e.bob.Address.String() +
		"@bm.test\r\nSubject: from PyBitmessage\r\nMessage-ID: <pyb@bm.test>\r\n\r\nbody\r\n"
	if _, err := e.store.AppendMessage(ctx, e.alice.ID, sent.ID, []byte(raw), []string{`\Seen`}, now); err != nil {
		e.t.Fatal(err)
	}
	items, err := e.store.EnqueueOutbox(ctx, []mailmap.OutboxItem{{
		UserID: e.alice.ID, FromAddress: e.aliceID.Address.String(), ToAddress: e.bob.Address.String(),
		Kind: mailmap.OutboxMsg, Subject: "from PyBitmessage", Body: "body", Encoding: 2, MessageID: "pyb@bm.test",
		State: mailmap.OutboxSent, Attempts: 1, NextAttempt: now.Add(3 * 24 * time.Hour), TTL: 4 * 24 * time.Hour,
		AckData: ackData, CreatedAt: now.Add(-time.Hour), SentAt: now.Add(-time.Hour),
	}})
	if err != nil {
		e.t.Fatal(err)
	}
	return items[0]
}

func pybAckData(t *testing.T) []byte {
	b := make([]byte, 38)
	copy(b, []byte{0, 0, 0, 2, 1, 1})
	if _, err := rand.Read(b[6:]); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestImportedRowAcked: the ack of a message PyBitmessage sent completes
// the imported outbox row and marks its Sent copy $Delivered.
func TestImportedRowAcked(t *testing.T) {
	onBackends(t, func(t *testing.T, dsn string) {
		e := newSendEnv(t, dsn, 1, nil)
		ctx := context.Background()
		ackData := pybAckData(t)
		e.importedRow(ackData)
		// The recipient's node publishes the ack: nonce, expiresTime, then
		// the ack data.
		ack := make([]byte, 16, 16+len(ackData))
		binary.BigEndian.PutUint64(ack[8:], uint64(e.clock.Now().Add(time.Hour).Unix()))
		e.putRaw(append(ack, ackData...))
		e.once()
		if r := e.row(); r.State != mailmap.OutboxAcked {
			t.Fatalf("row %s after the ack", r.State)
		}
		msgs, err := e.store.FindByMessageID(ctx, e.alice.ID, mailmap.SpecialSent, "pyb@bm.test")
		if err != nil || len(msgs) != 1 || !slices.Contains(msgs[0].Flags, DeliveredKeyword) {
			t.Errorf("Sent copy: %+v, %v", msgs, err)
		}
	})
}

// TestImportedRowResent: without an ack, the imported row is resent when
// PyBitmessage would have resent it, with a doubled lifetime.
func TestImportedRowResent(t *testing.T) {
	e := newSendEnv(t, t.TempDir()+"/g.db", 1, nil)
	ctx := context.Background()
	e.importedRow(pybAckData(t))
	if n, err := e.g.outboundOnce(ctx); err != nil || n != 0 {
		t.Fatalf("outboundOnce before it is due = %d, %v", n, err)
	}
	e.clock.Advance(3*24*time.Hour + time.Second)
	drive(t, ctx, e.g)
	if n := len(e.pub.ofType(wire.ObjectMsg)); n != 1 {
		t.Fatalf("%d msg objects published by the resend", n)
	}
	if r := e.row(); r.State != mailmap.OutboxSent || r.TTL != 8*24*time.Hour || r.Attempts != 2 {
		t.Errorf("row after the resend: state %s TTL %s attempts %d", r.State, r.TTL, r.Attempts)
	}
}
