package gateway

// Spam control as PyBitmessage users know it: per-user blacklist or
// whitelist, demanded difficulty per address, mailing-list addresses.

import (
	"context"
	"crypto/rand"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/bmgate/bmgate/bmcore/address"
	"github.com/bmgate/bmgate/bmcore/identity"
	"github.com/bmgate/bmgate/bmcore/inventory"
	"github.com/bmgate/bmgate/bmcore/object"
	"github.com/bmgate/bmgate/bmcore/params"
	"github.com/bmgate/bmgate/bmcore/wire"
	"github.com/bmgate/bmgate/mailmap"
)

// msgWithAck stores a msg from sender to the recipient that carries an
// embedded ack, and returns it with the ack object's inventory hash.
func (e *inboundEnv) msgWithAck(sender, to *identity.Identity, subject string) (inventory.StoredObject, wire.InvHash) {
	e.t.Helper()
	ackObj := e.solve(object.BuildAck(object.NewAckData(1, rand.Reader), e.expires()))
	headless, err := object.BuildMsg(sender, object.PubkeyOf(to), to.Address,
		object.MsgContent{Encoding: 2, Message: object.EncodeSimple(subject, "body of "+subject),
			AckPacket: wire.EncodePacket(params.Testnet.Magic, "object", ackObj)}, e.expires(), rand.Reader)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.put(headless), wire.ComputeInvHash(ackObj)
}

// acked reports whether the ack object was published.
func (e *inboundEnv) acked(h wire.InvHash) bool {
	e.pub.mu.Lock()
	defer e.pub.mu.Unlock()
	for _, b := range e.pub.objs {
		if wire.ComputeInvHash(b) == h {
			return true
		}
	}
	return false
}

func (e *inboundEnv) listEntry(u mailmap.User, kind mailmap.ListKind, addr *identity.Identity) {
	e.t.Helper()
	if _, err := e.store.AddListEntry(context.Background(), mailmap.ListEntry{UserID: u.ID, Kind: kind,
		Address: addr.Address.String(), Enabled: true}); err != nil {
		e.t.Fatal(err)
	}
}

// TestBlacklistDropsMsg: a msg from a sender on the recipient's blacklist
// is not filed, not acknowledged (PyBitmessage sends no ack for a blocked
// sender), counted and logged; other senders' mail is unaffected.
func TestBlacklistDropsMsg(t *testing.T) {
	onBackends(t, func(t *testing.T, dsn string) {
		e := newInboundEnv(t, dsn, nil)
		alice := e.user("alice")
		aliceID := randomIdentity(t)
		e.addIdentity(alice, aliceID, mailmap.KindNormal, "")
		spammer, friend := randomIdentity(t), randomIdentity(t)
		e.listEntry(alice, mailmap.Blacklist, spammer)

		spam, spamAck := e.msgWithAck(spammer, aliceID, "buy now")
		good, goodAck := e.msgWithAck(friend, aliceID, "hello")
		e.once()
		if n := e.copies(alice, "INBOX", spam.Hash); n != 0 {
			t.Fatalf("alice got %d copies of a blacklisted sender's msg", n)
		}
		if e.acked(spamAck) {
			t.Fatal("the ack of a blacklisted sender's msg was published")
		}
		if n := e.copies(alice, "INBOX", good.Hash); n != 1 || !e.acked(goodAck) {
			t.Fatalf("the other msg: %d copies, acked %v", n, e.acked(goodAck))
		}
		if got := e.g.Stats().Blocked; got != 1 {
			t.Fatalf("Stats().Blocked = %d, want 1", got)
		}
		if e.logs.find(slog.LevelInfo, "blocked", "from", spammer.Address.String()) != 1 {
			t.Fatal("the blocked msg was not logged at info")
		}
		if len(e.pending(e.clock.Now().Add(time.Hour))) != 0 {
			t.Fatal("a blocked msg stays pending")
		}
	})
}

// TestWhitelistMode: in whitelist mode only enabled whitelist entries get
// through; a whitelisted sender also skips the address's demanded
// difficulty, as in PyBitmessage, whatever the mode.
func TestWhitelistMode(t *testing.T) {
	onBackends(t, func(t *testing.T, dsn string) {
		e := newInboundEnv(t, dsn, nil)
		ctx := context.Background()
		alice := e.user("alice")
		aliceID := randomIdentity(t)
		e.addIdentity(alice, aliceID, mailmap.KindNormal, "")
		friend, stranger := randomIdentity(t), randomIdentity(t)
		e.listEntry(alice, mailmap.Whitelist, friend)

		// Blacklist mode, high demand: the stranger's minimum PoW is not
		// enough, the whitelisted friend's is.
		m := e.identityOf(aliceID)
		if err := e.store.SetIdentityDifficulty(ctx, alice.ID, m.ID, 1<<40, 1); err != nil {
			t.Fatal(err)
		}
		e.g.invalidateIdentities()
		a := e.msgTo(friend, aliceID, "from a friend")
		b := e.msgTo(stranger, aliceID, "from a stranger")
		e.once()
		if e.copies(alice, "INBOX", a.Hash) != 1 || e.copies(alice, "INBOX", b.Hash) != 0 {
			t.Fatal("the whitelist did not waive the demand for the friend alone")
		}

		// Whitelist mode, minimum demand: the stranger is blocked.
		if err := e.store.SetIdentityDifficulty(ctx, alice.ID, m.ID, 1, 1); err != nil {
			t.Fatal(err)
		}
		if err := e.store.SetListMode(ctx, alice.ID, mailmap.Whitelist); err != nil {
			t.Fatal(err)
		}
		e.g.invalidateIdentities()
		c, cAck := e.msgWithAck(friend, aliceID, "again")
		d, dAck := e.msgWithAck(stranger, aliceID, "again")
		e.once()
		if e.copies(alice, "INBOX", c.Hash) != 1 || !e.acked(cAck) {
			t.Fatal("a whitelisted sender's msg was not delivered and acked")
		}
		if e.copies(alice, "INBOX", d.Hash) != 0 || e.acked(dAck) {
			t.Fatal("whitelist mode let an unlisted sender through")
		}
		if got := e.g.Stats().Blocked; got != 1 {
			t.Fatalf("Stats().Blocked = %d, want 1", got)
		}
	})
}

// TestChanMembersOwnLists: a chan post is filed for each member whose own
// list lets the sender through (PyBitmessage applies its lists to chan
// posts too); one member's list does not block another's copy.
func TestChanMembersOwnLists(t *testing.T) {
	onBackends(t, func(t *testing.T, dsn string) {
		e := newInboundEnv(t, dsn, nil)
		alice, bob := e.user("alice"), e.user("bob")
		ch := chanIdentity(t, "lists test")
		folder := e.joinChan(alice, ch, "lists test")
		e.joinChan(bob, ch, "lists test")
		troll := randomIdentity(t)
		e.listEntry(alice, mailmap.Blacklist, troll)
		post := e.msgTo(troll, ch, "flame")
		e.once()
		if e.copies(alice, folder, post.Hash) != 0 {
			t.Fatal("alice got a post from a sender she blacklisted")
		}
		if e.copies(bob, folder, post.Hash) != 1 {
			t.Fatal("bob lost a post alice blacklisted")
		}
		if got := e.g.Stats().Blocked; got != 1 {
			t.Fatalf("Stats().Blocked = %d, want 1", got)
		}
	})
}

// TestBroadcastIgnoresLists: subscriptions are not filtered by the lists
// (PyBitmessage's processbroadcast does not consult them).
func TestBroadcastIgnoresLists(t *testing.T) {
	onBackends(t, func(t *testing.T, dsn string) {
		e := newInboundEnv(t, dsn, nil)
		ctx := context.Background()
		alice := e.user("alice")
		news := randomIdentity(t)
		if _, err := e.store.AddSubscription(ctx, mailmap.Subscription{UserID: alice.ID, Address: news.Address.String(), Label: "news"}); err != nil {
			t.Fatal(err)
		}
		e.listEntry(alice, mailmap.Blacklist, news)
		b := e.broadcastOf(news, "headline")
		e.once()
		if e.copies(alice, SubscriptionFolder("news", news.Address.String()), b.Hash) != 1 {
			t.Fatal("a subscribed broadcast was filtered by the blacklist")
		}
	})
}

// identityOf returns the stored identity of an address.
func (e *inboundEnv) identityOf(id *identity.Identity) mailmap.Identity {
	e.t.Helper()
	m, err := e.store.IdentityByAddress(context.Background(), id.Address.String())
	if err != nil {
		e.t.Fatal(err)
	}
	return m
}

// TestDifficultyChangeRepublishes: after the demand of an address changes
// its pubkey is published again at once with the new values, a pubkey
// with the old values does not count as published, and msgs with less
// proof of work than the new demand are dropped.
func TestDifficultyChangeRepublishes(t *testing.T) {
	onBackends(t, func(t *testing.T, dsn string) {
		e := newInboundEnv(t, dsn, nil)
		ctx := context.Background()
		alice := e.user("alice")
		aliceID := randomIdentity(t)
		if _, err := e.store.AddIdentity(ctx, mailmap.Identity{UserID: alice.ID, Address: aliceID.Address.String(),
			Kind: mailmap.KindNormal, SigningKey: aliceID.Signing.Serialize(), EncryptionKey: aliceID.Encryption.Serialize(),
			PublishPubkey: true, NonceTrialsPerByte: 1, ExtraBytes: 1}); err != nil {
			t.Fatal(err)
		}
		publish := func() *object.PubkeyData {
			t.Helper()
			e.g.maintain(ctx)
			for {
				ok, err := e.g.powOnce(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if !ok {
					break
				}
			}
			pks := e.pub.ofType(wire.ObjectPubkey)
			if len(pks) == 0 {
				return nil
			}
			d, err := object.ParsePubkey(pks[len(pks)-1], aliceID.Address)
			if err != nil {
				t.Fatal(err)
			}
			return &d
		}
		if d := publish(); d == nil || d.NonceTrialsPerByte != 1 {
			t.Fatalf("first pubkey: %+v", d)
		}
		before := len(e.pub.ofType(wire.ObjectPubkey))
		m := e.identityOf(aliceID)
		if m.LastPubkeySent.IsZero() {
			t.Fatal("the first pubkey was not marked sent")
		}

		// A job with the old demand still queued when the demand changes.
		e.g.maintain(ctx) // nothing to do: published
		if err := e.store.MarkPubkeySent(ctx, m.ID, time.Time{}); err != nil {
			t.Fatal(err)
		}
		e.g.invalidateIdentities()
		e.g.maintain(ctx) // queues a job with demand 1/1
		if _, err := e.store.PoWJobByKey(ctx, pubkeyJobKey(m)); err != nil {
			t.Fatalf("no job with the old demand: %v", err)
		}
		if err := e.store.SetIdentityDifficulty(ctx, alice.ID, m.ID, 5000, 7000); err != nil {
			t.Fatal(err)
		}
		e.g.invalidateIdentities()
		d := publish()
		pks := e.pub.ofType(wire.ObjectPubkey)
		if len(pks) != before+2 {
			t.Fatalf("%d pubkeys published after the change, want 2 (the old job's and the new one)", len(pks)-before)
		}
		if d.NonceTrialsPerByte != 5000 || d.ExtraBytes != 7000 {
			// The old job may have run last; look at both.
			found := false
			for _, o := range pks[before:] {
				if d, err := object.ParsePubkey(o, aliceID.Address); err == nil && d.NonceTrialsPerByte == 5000 && d.ExtraBytes == 7000 {
					found = true
				}
			}
			if !found {
				t.Fatal("no pubkey with the new demand was published")
			}
		}
		if e.identityOf(aliceID).LastPubkeySent.IsZero() {
			t.Fatal("the pubkey with the new demand was not marked sent")
		}
		// Nothing more to publish now.
		if publish(); len(e.pub.ofType(wire.ObjectPubkey)) != len(pks) {
			t.Fatal("the pubkey was published again without a change")
		}

		// The old demand's job alone does not count as the new pubkey.
		if err := e.g.pubkeyPublished(ctx, m.Address, "1/1"); err != nil {
			t.Fatal(err)
		}
		if err := e.store.SetIdentityDifficulty(ctx, alice.ID, m.ID, 1<<40, 1); err != nil {
			t.Fatal(err)
		}
		if err := e.g.pubkeyPublished(ctx, m.Address, "5000/7000"); err != nil {
			t.Fatal(err)
		}
		if !e.identityOf(aliceID).LastPubkeySent.IsZero() {
			t.Fatal("a pubkey with a superseded demand was marked as the address's pubkey")
		}

		// A msg at the network minimum is below the new demand: dropped.
		e.g.invalidateIdentities()
		low := e.msgTo(randomIdentity(t), aliceID, "cheap")
		e.once()
		if e.copies(alice, "INBOX", low.Hash) != 0 {
			t.Fatal("a msg below the new demand was delivered")
		}
		if !e.logHas("below the address's demand") {
			t.Fatal("the dropped msg was not logged")
		}
	})
}

// logHas reports whether any record's message contains s.
func (e *inboundEnv) logHas(s string) bool {
	e.logs.mu.Lock()
	defer e.logs.mu.Unlock()
	for _, r := range e.logs.recs {
		if strings.Contains(r.Message, s) {
			return true
		}
	}
	return false
}

// TestMailingList: a msg to a mailing-list address is filed for the owner
// and queued once as a broadcast from that address, with PyBitmessage's
// subject and body; processing the object again queues nothing more; a
// blocked sender's msg is not relayed.
func TestMailingList(t *testing.T) {
	onBackends(t, func(t *testing.T, dsn string) {
		e := newInboundEnv(t, dsn, nil)
		ctx := context.Background()
		alice := e.user("alice")
		listID := randomIdentity(t)
		e.addIdentity(alice, listID, mailmap.KindNormal, "")
		m := e.identityOf(listID)
		if err := e.store.SetMailingList(ctx, alice.ID, m.ID, true, "Friends"); err != nil {
			t.Fatal(err)
		}
		e.g.invalidateIdentities()
		sender, spammer := randomIdentity(t), randomIdentity(t)
		e.listEntry(alice, mailmap.Blacklist, spammer)
		post, ack := e.msgWithAck(sender, listID, "Re: meeting")
		spam := e.msgTo(spammer, listID, "spam")
		e.once()
		if e.copies(alice, "INBOX", post.Hash) != 1 || !e.acked(ack) {
			t.Fatal("the owner of the mailing list did not get the msg as usual")
		}
		rows, err := e.store.UserOutbox(ctx, alice.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != 1 {
			t.Fatalf("%d outbox rows, want 1 broadcast", len(rows))
		}
		r := rows[0]
		if r.Kind != mailmap.OutboxBroadcast || r.FromAddress != listID.Address.String() || r.ToAddress != listID.Address.String() {
			t.Fatalf("relay row: %+v", r)
		}
		if r.Subject != "[Friends] meeting" {
			t.Fatalf("relay subject %q", r.Subject)
		}
		wantBody := e.clock.Now().UTC().Format("Mon, 2006-01-02 15:04:05") + " UTC   Message ostensibly from " +
			sender.Address.String() + ":\n\nbody of Re: meeting"
		if r.Body != wantBody {
			t.Fatalf("relay body %q, want %q", r.Body, wantBody)
		}
		if r.TTL != 14*24*time.Hour || r.Encoding != 2 || r.State != mailmap.OutboxQueued {
			t.Fatalf("relay row: ttl %v encoding %d state %s", r.TTL, r.Encoding, r.State)
		}
		if rows, _ := e.store.UserOutbox(ctx, alice.ID); len(rows) != 1 || e.copies(alice, "INBOX", spam.Hash) != 0 {
			t.Fatal("a blocked sender's msg was delivered or relayed")
		}

		// Processed again (a crash before MarkProcessed): no second relay.
		e.markPending(post.Hash)
		e.once()
		if rows, _ := e.store.UserOutbox(ctx, alice.ID); len(rows) != 1 {
			t.Fatalf("%d outbox rows after processing the msg again, want 1", len(rows))
		}
		if e.copies(alice, "INBOX", post.Hash) != 1 {
			t.Fatal("second copy filed")
		}

		// The relay goes out as a broadcast from the list's address.
		if _, err := e.g.outboundOnce(ctx); err != nil {
			t.Fatal(err)
		}
		for {
			ok, err := e.g.powOnce(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				break
			}
		}
		bs := e.pub.ofType(wire.ObjectBroadcast)
		if len(bs) != 1 {
			t.Fatalf("%d broadcasts published, want 1", len(bs))
		}
		b, from, err := object.DecryptBroadcast(bs[0], []address.Address{listID.Address})
		if err != nil || from != listID.Address {
			t.Fatalf("DecryptBroadcast: from %s, %v", from, err)
		}
		c, err := object.DecodeMessage(b.Encoding, b.Message)
		if err != nil || c.Subject != "[Friends] meeting" || !strings.Contains(c.Body, "Message ostensibly from "+sender.Address.String()) {
			t.Fatalf("broadcast content %+v, %v", c, err)
		}
	})
}

// TestMailingListRelayRetried: when queueing the re-broadcast fails after
// the owner's copy was filed, the object is tried again: the broadcast is
// queued then, the owner's copy is not filed twice, and the ack goes out
// only once everything is done.
func TestMailingListRelayRetried(t *testing.T) {
	onBackends(t, func(t *testing.T, dsn string) {
		e := newInboundEnv(t, dsn, nil)
		ctx := context.Background()
		alice := e.user("alice")
		listID := randomIdentity(t)
		e.addIdentity(alice, listID, mailmap.KindNormal, "The list")
		if err := e.store.SetMailingList(ctx, alice.ID, e.identityOf(listID).ID, true, "L"); err != nil {
			t.Fatal(err)
		}
		e.g.invalidateIdentities()
		post, ack := e.msgWithAck(randomIdentity(t), listID, "hi")
		e.store.failEnqueueOnce = errInjected
		e.once()
		if e.copies(alice, "INBOX", post.Hash) != 1 {
			t.Fatal("the owner's copy was not filed")
		}
		if rows, _ := e.store.UserOutbox(ctx, alice.ID); len(rows) != 0 || e.acked(ack) {
			t.Fatalf("after a failed relay: %d rows, acked %v", len(rows), e.acked(ack))
		}
		e.clock.Advance(time.Hour)
		e.once()
		if rows, _ := e.store.UserOutbox(ctx, alice.ID); len(rows) != 1 || rows[0].Subject != "[L] hi" {
			t.Fatalf("after the retry: %+v", rows)
		}
		if e.copies(alice, "INBOX", post.Hash) != 1 || !e.acked(ack) {
			t.Fatalf("after the retry: %d copies, acked %v", e.copies(alice, "INBOX", post.Hash), e.acked(ack))
		}
	})
}

// TestMailingListSubject: PyBitmessage's addMailingListNameToSubject.
func TestMailingListSubject(t *testing.T) {
	for _, c := range []struct{ in, name, want string }{
		{"hello", "L", "[L] hello"},
		{"  hello  ", "L", "[L] hello"},
		{"Re: hello", "L", "[L] hello"},
		{"RE:hello", "L", "[L] hello"},
		{"re: hello", "L", "[L] re: hello"}, // PyBitmessage drops only "Re:" and "RE:"
		{"Re: [L] hello", "L", "[L] hello"},
		{"about [L] things", "L", "about [L] things"},
		{"hello", "", "[] hello"},
	} {
		if got := MailingListSubject(c.in, c.name); got != c.want {
			t.Errorf("MailingListSubject(%q, %q) = %q, want %q", c.in, c.name, got, c.want)
		}
	}
	at := time.Date(2026, 3, 7, 9, 5, 1, 0, time.FixedZone("x", 3600))
	if got, want := MailingListBody(at, "BM-x", "hi\n"), "Sat, 2026-03-07 08:05:01 UTC   Message ostensibly from BM-x:\n\nhi\n"; got != want {
		t.Errorf("MailingListBody = %q, want %q", got, want)
	}
}
