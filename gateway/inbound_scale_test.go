package gateway

// Tests of inbound work shared between cores and between instances: the
// msg objects of a batch are trial-decrypted on a worker pool, and every
// instance on one database claims batches of its own.

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bmgate/bmgate/bmcore/identity"
	"github.com/bmgate/bmgate/bmcore/inventory"
	"github.com/bmgate/bmgate/bmcore/object"
	"github.com/bmgate/bmgate/bmcore/params"
	"github.com/bmgate/bmgate/bmcore/wire"
	"github.com/bmgate/bmgate/mailmap"
	"github.com/bmgate/bmgate/mailmap/storetest"
)

// TestWorkerPoolKeepsArrivalOrder: with several workers decrypting a batch
// at once, each owner's mail is still filed in arrival order, once.
func TestWorkerPoolKeepsArrivalOrder(t *testing.T) {
	onBackends(t, func(t *testing.T, dsn string) {
		e := newInboundEnv(t, dsn, func(c *Config) { c.InboundWorkers = 4 })
		alice := e.user("alice")
		ids := make([]*identity.Identity, 3)
		for i := range ids {
			ids[i] = randomIdentity(t)
			e.addIdentity(alice, ids[i], mailmap.KindNormal, "")
		}
		sender, stranger := randomIdentity(t), randomIdentity(t)
		var mine []inventory.StoredObject
		for i := range 24 {
			if i%3 == 2 {
				e.msgTo(sender, stranger, fmt.Sprintf("not ours %d", i))
				continue
			}
			mine = append(mine, e.msgTo(sender, ids[i%len(ids)], fmt.Sprintf("ours %d", i)))
		}
		e.once()
		if got := e.pending(e.clock.Now()); len(got) != 0 {
			t.Fatalf("%d objects still pending", len(got))
		}
		ctx := context.Background()
		mb, err := e.store.Mailbox(ctx, alice.ID, "INBOX")
		if err != nil {
			t.Fatal(err)
		}
		msgs, err := e.store.Messages(ctx, alice.ID, mb.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) != len(mine) {
			t.Fatalf("%d messages filed, want %d", len(msgs), len(mine))
		}
		for i, m := range msgs { // Messages lists by UID
			raw, err := e.store.MessageRaw(ctx, alice.ID, mb.ID, m.UID)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := header(raw, "X-Bitmessage-Inventory"), mine[i].Hash.String(); got != want {
				t.Fatalf("UID %d holds %s, want %s (arrival order)", m.UID, got, want)
			}
		}
		if got := e.g.Stats().Objects; got != 24 {
			t.Errorf("Stats().Objects = %d, want 24", got)
		}
	})
}

// claimGate holds each instance's first non-empty claim until the other
// instance has claimed too, so the test knows both took part of the pool
// whatever the scheduler does.
type claimGate struct {
	mailmap.Store
	first   sync.Once
	mine    chan struct{} // closed at this instance's first claim
	other   chan struct{} // the other instance's
	claimed func()
}

func (c *claimGate) ClaimObjects(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int) ([]inventory.StoredObject, error) {
	objs, err := c.Store.ClaimObjects(ctx, owner, now, lease, limit)
	c.first.Do(func() {
		close(c.mine)
		select {
		case <-c.other:
		case <-ctx.Done():
		}
	})
	return objs, err
}

// TestInstancesShareInbound: two instances on one PostgreSQL database
// process one pool of msg objects, to many local identities and to
// strangers: every object is processed once, every local message is
// delivered exactly once, and each instance did part of the work.
func TestInstancesShareInbound(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	gates := [2]*claimGate{}
	chans := [2]chan struct{}{make(chan struct{}), make(chan struct{})}
	var envs [2]*inboundEnv
	for i := range envs {
		envs[i] = newInboundEnv(t, dsn, func(c *Config) {
			c.InboundWorkers = 1 // batches of inboundBatch objects
			gates[i] = &claimGate{Store: c.Store, mine: chans[i], other: chans[1-i]}
			c.Store = gates[i]
		})
	}
	e := envs[0]
	var users []mailmap.User
	var ids []*identity.Identity
	for u := range 4 {
		user := e.user(fmt.Sprintf("user%d", u))
		users = append(users, user)
		for range 10 {
			id := randomIdentity(t)
			e.addIdentity(user, id, mailmap.KindNormal, "")
			ids = append(ids, id)
		}
	}
	sender, stranger := randomIdentity(t), randomIdentity(t)
	type local struct {
		user mailmap.User
		obj  inventory.StoredObject
	}
	var locals []local
	const pool = 3*inboundBatch + 5
	for i := range pool {
		if i%4 == 0 {
			k := i % len(ids)
			locals = append(locals, local{users[k/10], e.msgTo(sender, ids[k], fmt.Sprintf("local %d", i))})
			continue
		}
		e.msgTo(sender, stranger, fmt.Sprintf("stranger %d", i))
	}

	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, env := range envs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n, err := env.g.inboundOnce(context.Background())
				if err != nil || n == 0 {
					errs[i] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("instance %d: %v", i, err)
		}
	}
	if got := e.pending(e.clock.Now()); len(got) != 0 {
		t.Fatalf("%d objects still pending", len(got))
	}
	n0, n1 := envs[0].g.Stats().Objects, envs[1].g.Stats().Objects
	if n0 == 0 || n1 == 0 || n0+n1 != pool {
		t.Fatalf("instances processed %d and %d objects, want both some and %d in all", n0, n1, pool)
	}
	for _, l := range locals {
		if n := e.copies(l.user, "INBOX", l.obj.Hash); n != 1 {
			t.Errorf("%s has %d copies of %x, want 1", l.user.Name, n, l.obj.Hash[:4])
		}
	}
	if in := envs[0].g.Stats().MessagesIn + envs[1].g.Stats().MessagesIn; in != uint64(len(locals)) {
		t.Errorf("%d deliveries, want %d", in, len(locals))
	}
	b, err := e.store.InboundBacklog(context.Background(), e.clock.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if b.Pending != 0 || b.Processed != pool {
		t.Errorf("backlog = %+v, want nothing pending and %d processed", b, pool)
	}
	t.Logf("instance 0 processed %d objects, instance 1 %d", n0, n1)
}

// TestOverQuotaHeld: mail for a user over quota is held, not dropped and
// not acknowledged: the other members of a chan get their copy at once;
// once there is room, the held copy is filed and the ack goes out.
func TestOverQuotaHeld(t *testing.T) {
	onBackends(t, func(t *testing.T, dsn string) {
		e := newInboundEnv(t, dsn, nil)
		ctx := context.Background()
		alice, bob := e.user("alice"), e.user("bob")
		aliceID := randomIdentity(t)
		e.addIdentity(alice, aliceID, mailmap.KindNormal, "")
		ch := chanIdentity(t, "quota test")
		folder := e.joinChan(alice, ch, "quota test")
		e.joinChan(bob, ch, "quota test")
		if err := e.store.SetQuota(ctx, alice.ID, 1); err != nil {
			t.Fatal(err)
		}
		sender := randomIdentity(t)
		post := e.msgTo(sender, ch, "chan post")
		// A personal msg that carries an ack.
		ackHeadless := object.BuildAck(object.NewAckData(1, rand.Reader), e.expires())
		ackObj := e.solve(ackHeadless)
		headless, err := object.BuildMsg(sender, object.PubkeyOf(aliceID), aliceID.Address,
			object.MsgContent{Encoding: 2, Message: object.EncodeSimple("personal", "body"),
				AckPacket: wire.EncodePacket(params.Testnet.Magic, "object", ackObj)}, e.expires(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		msg := e.put(headless)

		e.once()
		if n := e.copies(bob, folder, post.Hash); n != 1 {
			t.Fatalf("bob has %d copies of the chan post, want 1 while alice is over quota", n)
		}
		if n := e.copies(alice, folder, post.Hash) + e.copies(alice, "INBOX", msg.Hash); n != 0 {
			t.Fatalf("alice got %d messages over her quota", n)
		}
		if n := len(e.pub.ofType(wire.ObjectMsg)); n != 0 {
			t.Fatalf("%d acks published for a held message", n)
		}
		if got := e.pending(e.clock.Now().Add(holdRetry)); len(got) != 2 {
			t.Fatalf("%d objects held, want 2", len(got))
		}
		if got := e.pending(e.clock.Now()); len(got) != 0 {
			t.Fatalf("held objects due again at once: %x", got)
		}
		if aside, err := e.store.SetAsideObjects(ctx, 10); err != nil || len(aside) != 0 {
			t.Fatalf("SetAsideObjects = %+v, %v; a held object is not failing", aside, err)
		}
		if e.logs.find(slog.LevelWarn, "inbound object held", "inv", msg.Hash.String()) != 1 {
			t.Error("holding the msg was not logged")
		}

		// Still over quota at the next try: held again, never set aside.
		for range 6 {
			e.clock.Advance(holdRetry)
			e.once()
		}
		if aside, _ := e.store.SetAsideObjects(ctx, 10); len(aside) != 0 {
			t.Fatalf("held objects set aside after repeated tries: %+v", aside)
		}
		// Room at last.
		if err := e.store.SetQuota(ctx, alice.ID, 0); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(holdRetry)
		e.once()
		if n := e.copies(alice, folder, post.Hash); n != 1 {
			t.Errorf("alice has %d copies of the chan post, want 1", n)
		}
		if n := e.copies(alice, "INBOX", msg.Hash); n != 1 {
			t.Errorf("alice has %d copies of her msg, want 1", n)
		}
		if n := e.copies(bob, folder, post.Hash); n != 1 {
			t.Errorf("bob has %d copies of the chan post after the retry, want still 1", n)
		}
		if n := len(e.pub.ofType(wire.ObjectMsg)); n != 1 {
			t.Errorf("%d acks published after delivery, want 1", n)
		}
		if got := e.pending(e.clock.Now().Add(time.Hour)); len(got) != 0 {
			t.Errorf("still pending: %x", got)
		}
	})
}

// TestSendRateRefusal: a submission over the user's sending rate gets a
// temporary 450 4.7.1 that names the limit, and queues nothing.
func TestSendRateRefusal(t *testing.T) {
	e := newInboundEnv(t, filepath.Join(t.TempDir(), "g.db"), nil)
	ctx := context.Background()
	alice := e.user("alice")
	id := randomIdentity(t)
	e.addIdentity(alice, id, mailmap.KindNormal, "")
	if err := e.store.SetSendRate(ctx, alice.ID, 1); err != nil {
		t.Fatal(err)
	}
	from := id.Address.String() + "@bm.test"
	rcpts := make([]Recipient, 2)
	for i := range rcpts {
		r, err := e.g.CheckRecipient(ctx, alice, randomIdentity(t).Address.String()+"@bm.test")
		if err != nil {
			t.Fatal(err)
		}
		rcpts[i] = r
	}
	raw := "From: " + from + "\r\nSubject: hi\r\n\r\nhello\r\n"
	err := e.g.Submit(ctx, Submission{User: alice, From: id.Address.String(), Recipients: rcpts, Raw: []byte(raw)})
	var ge *Error
	if !errors.As(err, &ge) || ge.Code != 450 || ge.Enhanced != [3]int{4, 7, 1} || !ge.Temporary ||
		!strings.Contains(ge.Message, "at most 1 messages an hour") {
		t.Fatalf("Submit over the rate = %#v", err)
	}
	if items, _ := e.store.UserOutbox(ctx, alice.ID); len(items) != 0 {
		t.Fatalf("%d rows queued by a refused submission", len(items))
	}
	if err := e.g.Submit(ctx, Submission{User: alice, From: id.Address.String(), Recipients: rcpts[:1], Raw: []byte(raw)}); err != nil {
		t.Fatalf("Submit within the rate: %v", err)
	}
}
