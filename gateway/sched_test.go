package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bmgate/bmgate/bmcore/identity"
	"github.com/bmgate/bmgate/bmcore/inventory"
	"github.com/bmgate/bmgate/bmcore/object"
	"github.com/bmgate/bmgate/bmcore/wire"
	"github.com/bmgate/bmgate/mailmap"
)

// sendEnv is an inboundEnv with a local sender (alice) and a remote
// recipient (bob) whose pubkey is cached.
type sendEnv struct {
	*inboundEnv
	alice    mailmap.User
	aliceID  *identity.Identity
	bob      *identity.Identity
	bobNTPB  uint64
	sender   string
	rcptAddr string
}

func newSendEnv(t *testing.T, dsn string, bobNTPB uint64, tweak func(*Config)) *sendEnv {
	t.Helper()
	e := &sendEnv{inboundEnv: newInboundEnv(t, dsn, tweak), bobNTPB: bobNTPB}
	ctx := context.Background()
	e.alice = e.user("alice")
	var err error
	if e.aliceID, err = identity.NewRandom(1, rand.Reader); err != nil {
		t.Fatal(err)
	}
	e.addIdentity(e.alice, e.aliceID, mailmap.KindNormal, "Alice")
	if e.bob, err = identity.NewRandom(1, rand.Reader); err != nil {
		t.Fatal(err)
	}
	if err := e.store.PutPubkey(ctx, mailmap.Pubkey{Address: e.bob.Address.String(), Version: 4, Stream: 1, Bitfield: doesAck,
		SigningKey: e.bob.PublicSigning(), EncryptionKey: e.bob.PublicEncryption(), NonceTrialsPerByte: bobNTPB, ExtraBytes: 1,
		Source: "test", LearnedAt: e.clock.Now()}); err != nil {
		t.Fatal(err)
	}
	return e
}

// submit queues a mail from alice to bob with the NOTIFY bits.
func (e *sendEnv) submit(subject string, notify int) {
	e.t.Helper()
	ctx := context.Background()
	from, to := e.aliceID.Address.String()+"@bm.test", e.bob.Address.String()+"@bm.test"
	rcpt, err := e.g.CheckRecipient(ctx, e.alice, to)
	if err != nil {
		e.t.Fatal(err)
	}
	rcpt.Notify = notify
	sender, err := e.g.CheckSender(ctx, e.alice, from)
	if err != nil {
		e.t.Fatal(err)
	}
	raw := "From: " + from + "\r\nTo: " + to + "\r\nSubject: " + subject + "\r\nMessage-ID: <" + subject + "@client.test>\r\n\r\nhello\r\n"
	if err := e.g.Submit(ctx, Submission{User: e.alice, From: sender, Recipients: []Recipient{rcpt}, Raw: []byte(raw)}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *sendEnv) row() mailmap.OutboxItem {
	e.t.Helper()
	items, err := e.store.UserOutbox(context.Background(), e.alice.ID)
	if err != nil || len(items) == 0 {
		e.t.Fatalf("UserOutbox = %d rows, %v", len(items), err)
	}
	return items[len(items)-1]
}

// inboxSubjects lists the subjects in alice's INBOX (reports land there).
func (e *sendEnv) reports() []string {
	e.t.Helper()
	ctx := context.Background()
	in, err := e.store.Mailbox(ctx, e.alice.ID, "INBOX")
	if err != nil {
		e.t.Fatal(err)
	}
	msgs, err := e.store.Messages(ctx, e.alice.ID, in.ID)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, m := range msgs {
		raw, err := e.store.MessageRaw(ctx, e.alice.ID, in.ID, m.UID)
		if err != nil {
			e.t.Fatal(err)
		}
		for _, line := range strings.Split(string(raw), "\r\n") {
			if strings.HasPrefix(line, "Action: ") {
				out = append(out, strings.TrimPrefix(line, "Action: "))
			}
		}
	}
	return out
}

// ackOf returns the embedded ack object of a msg to bob.
func (e *sendEnv) ackOf(o *wire.Object) []byte {
	e.t.Helper()
	m, _, err := object.DecryptMsg(o, []*identity.Identity{e.bob})
	if err != nil {
		e.t.Fatal(err)
	}
	_, payload, err := wire.ReadPacket(bytes.NewReader(m.AckPacket), e.g.cfg.Network.Magic)
	if err != nil {
		e.t.Fatal(err)
	}
	return payload
}

// TestAckDuringResend: the ack of the first send arrives while the resend
// waits for its proof of work. The row ends acked, the resend is never
// published (no duplicate for the recipient) and one "delivered" report is
// filed. Before the store checked transitions, the resend's worker wrote
// its stale copy of the row back over the ack.
func TestAckDuringResend(t *testing.T) {
	onBackends(t, func(t *testing.T, dsn string) {
		{
			e := newSendEnv(t, dsn, 1, nil)
			ctx := context.Background()
			e.submit("first", mailmap.NotifySuccess|mailmap.NotifyDelay)
			drive(t, ctx, e.g)
			msgs := e.pub.ofType(wire.ObjectMsg)
			if len(msgs) != 1 || e.row().State != mailmap.OutboxSent {
				t.Fatalf("after the first send: %d msgs, row %s", len(msgs), e.row().State)
			}
			ack := e.ackOf(msgs[0])
			// The msg was published as awaiting an ack (PyBitmessage peers
			// get their connection renewed for it); nothing else was.
			if len(e.pub.awaiting) != 1 || e.pub.awaiting[0] != wire.ComputeInvHash(msgs[0].Raw) {
				t.Fatalf("published awaiting an ack: %v", e.pub.awaiting)
			}

			// No ack within the TTL: the resend starts (a delay report) and
			// queues its proof of work.
			e.clock.Advance(e.row().TTL*11/10 + time.Second)
			if n, err := e.g.outboundOnce(ctx); err != nil || n != 1 {
				t.Fatalf("outboundOnce = %d, %v", n, err)
			}
			if r := e.row(); r.State != mailmap.OutboxDoingPoW || r.PoWJob == 0 {
				t.Fatalf("resend: row %s job %d", r.State, r.PoWJob)
			}
			// The first send's ack arrives now.
			e.putRaw(ack)
			e.once()
			if r := e.row(); r.State != mailmap.OutboxAcked {
				t.Fatalf("after the ack: row %s", r.State)
			}
			drive(t, ctx, e.g)
			if n := len(e.pub.ofType(wire.ObjectMsg)); n != 1 {
				t.Fatalf("%d msg objects published; the resend went out after the ack", n)
			}
			if r := e.row(); r.State != mailmap.OutboxAcked || r.PoWJob != 0 {
				t.Fatalf("row %s job %d, want acked with no job", r.State, r.PoWJob)
			}
			jobs, err := e.store.PoWJobs(ctx)
			if err != nil || len(jobs) != 0 {
				t.Fatalf("jobs left: %+v, %v", jobs, err)
			}
			// The same ack again (another peer relays it) changes nothing.
			if err := e.store.MarkProcessed(ctx, wire.ComputeInvHash(ack), "", time.Now()); err != nil {
				t.Fatal(err)
			}
			if err := e.g.acknowledged(ctx, e.row()); err != nil {
				t.Fatal(err)
			}
			if got := e.reports(); strings.Join(got, ",") != "delayed,delivered" {
				t.Fatalf("reports %v, want one delayed and one delivered", got)
			}
		}
	})
}

// putRaw stores a whole object in the inventory as the node would.
func (e *inboundEnv) putRaw(raw []byte) {
	e.t.Helper()
	o, err := wire.DecodeObject(raw)
	if err != nil {
		e.t.Fatal(err)
	}
	so := inventory.StoredObject{Hash: wire.ComputeInvHash(raw), Type: o.Type, Version: o.Version, Stream: o.Stream,
		Expires: time.Unix(int64(o.ExpiresTime), 0), Raw: raw}
	if _, err := e.store.Put(context.Background(), so); err != nil {
		e.t.Fatal(err)
	}
}

// TestGetpubkeyDoesNotSolveInline: a getpubkey for a local identity queues
// our pubkey's proof of work and returns at once, so inbound mail after it
// is not held up; asked twice, the pubkey is solved once.
func TestGetpubkeyDoesNotSolveInline(t *testing.T) {
	e := newSendEnv(t, filepath.Join(t.TempDir(), "g.db"), 1, nil)
	ctx := context.Background()
	for i := range 2 {
		tag := e.aliceID.Address.Tag()
		gp := object.BuildGetpubkey(e.aliceID.Address, e.expires()+uint64(i))
		if !bytes.Contains(gp, tag[:]) {
			t.Fatal("getpubkey without the tag")
		}
		e.put(gp)
	}
	// A msg to alice behind the two requests.
	sender, err := identity.NewRandom(1, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	e.msgTo(sender, e.aliceID, "behind the requests")
	e.once()
	if n := len(e.pub.ofType(wire.ObjectPubkey)); n != 0 {
		t.Fatalf("the inbound path published %d pubkeys itself", n)
	}
	in, err := e.store.Mailbox(ctx, e.alice.ID, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	if msgs, err := e.store.Messages(ctx, e.alice.ID, in.ID); err != nil || len(msgs) != 1 {
		t.Fatalf("INBOX = %d messages, %v; the msg behind the requests waited", len(msgs), err)
	}
	jobs, err := e.store.PoWJobs(ctx)
	if err != nil || len(jobs) != 1 || jobs[0].Kind != "pubkey" || jobs[0].State != mailmap.PoWPending {
		t.Fatalf("jobs = %+v, %v; want one pending pubkey job", jobs, err)
	}
	drive(t, ctx, e.g)
	if n := len(e.pub.ofType(wire.ObjectPubkey)); n != 1 {
		t.Fatalf("%d pubkeys published, want 1", n)
	}
	m, err := e.store.IdentityByAddress(ctx, e.aliceID.Address.String())
	if err != nil || m.LastPubkeySent.IsZero() {
		t.Fatalf("identity after publication: %+v, %v", m, err)
	}
}

// TestShutdownReleasesProofOfWork: a gateway stopped while it solves gives
// its job back, so the next start (or another instance) takes it at once
// instead of after the lease.
func TestShutdownReleasesProofOfWork(t *testing.T) {
	onBackends(t, func(t *testing.T, dsn string) {
		{
			// Bob demands a difficulty no test machine solves in time.
			e := newSendEnv(t, dsn, 5_000_000, func(c *Config) { c.Lease = time.Hour })
			ctx, cancel := context.WithCancel(context.Background())
			e.submit("slow", 0)
			done := make(chan struct{})
			go func() {
				defer close(done)
				_ = e.g.Run(ctx)
			}()
			deadline := time.Now().Add(20 * time.Second)
			for {
				jobs, err := e.store.PoWJobs(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				if len(jobs) == 1 && jobs[0].Kind == "msg" && jobs[0].State == mailmap.PoWSolving {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no msg proof of work started: %+v", jobs)
				}
				time.Sleep(10 * time.Millisecond) // polling for a state, not asserting an absence
			}
			cancel()
			<-done
			jobs, err := e.store.PoWJobs(context.Background())
			if err != nil || len(jobs) != 1 || jobs[0].State != mailmap.PoWPending || jobs[0].LeaseOwner != "" {
				t.Fatalf("after shutdown: %+v, %v; want the job pending and unleased", jobs, err)
			}
			// A new instance takes it now, not after the hour-long lease.
			j, ok, err := e.store.ClaimPoW(context.Background(), "next", e.clock.Now(), time.Minute)
			if err != nil || !ok || j.ID != jobs[0].ID {
				t.Fatalf("ClaimPoW after restart = %+v, %v, %v", j, ok, err)
			}
			if r := e.row(); r.State != mailmap.OutboxDoingPoW || r.LeaseOwner != "" {
				t.Fatalf("row after shutdown: %s leased by %q", r.State, r.LeaseOwner)
			}
		}
	})
}

// TestFairProofOfWork: one user's many queued mails do not hold back
// another user's one.
func TestFairProofOfWork(t *testing.T) {
	e := newSendEnv(t, filepath.Join(t.TempDir(), "g.db"), 1, nil)
	ctx := context.Background()
	for i := range 5 {
		e.submit("bulk"+string(rune('a'+i)), 0)
	}
	carol := e.user("carol")
	carolID, err := identity.NewRandom(1, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	e.addIdentity(carol, carolID, mailmap.KindNormal, "Carol")
	from, to := carolID.Address.String()+"@bm.test", e.bob.Address.String()+"@bm.test"
	rcpt, err := e.g.CheckRecipient(ctx, carol, to)
	if err != nil {
		t.Fatal(err)
	}
	raw := "From: " + from + "\r\nTo: " + to + "\r\nSubject: one\r\n\r\nhi\r\n"
	if err := e.g.Submit(ctx, Submission{User: carol, From: carolID.Address.String(), Recipients: []Recipient{rcpt}, Raw: []byte(raw)}); err != nil {
		t.Fatal(err)
	}
	// Queue every row's first job, then see who is served first.
	for {
		n, err := e.g.outboundOnce(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
	}
	jobs, err := e.store.PoWJobs(ctx)
	if err != nil || len(jobs) != 6 {
		t.Fatalf("jobs = %d, %v", len(jobs), err)
	}
	if jobs[0].UserID != e.alice.ID || jobs[1].UserID != carol.ID {
		t.Fatalf("queue order by user: %d, %d, …; want alice's first job, then carol's", jobs[0].UserID, jobs[1].UserID)
	}
}

// TestExpiredInQueue: only an object that expired while its job waited is
// rebuilt; a tiny TTL whose jitter put the expiry before the job was queued
// is published as it is (rebuilding it would loop for ever).
func TestExpiredInQueue(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	obj := func(exp int64) []byte {
		b := make([]byte, 20)
		for i := range 8 {
			b[8+i] = byte(uint64(exp) >> (56 - 8*i))
		}
		return b
	}
	job := mailmap.PoWJob{CreatedAt: t0}
	for _, c := range []struct {
		exp  int64
		now  time.Time
		want bool
	}{
		{t0.Unix() + 10, t0.Add(5 * time.Second), false},
		{t0.Unix() + 10, t0.Add(11 * time.Second), true},
		{t0.Unix() - 100, t0.Add(time.Hour), false},
	} {
		if got := expiredInQueue(obj(c.exp), job, c.now); got != c.want {
			t.Errorf("expires %d, now %d: %v, want %v", c.exp, c.now.Unix(), got, c.want)
		}
	}
}

// TestOneGetpubkeyPerAddress: two mails to one address whose pubkey is
// unknown make one getpubkey, also when the first request was already
// solved and published before the second mail was looked at.
func TestOneGetpubkeyPerAddress(t *testing.T) {
	e := newSendEnv(t, filepath.Join(t.TempDir(), "g.db"), 1, nil)
	ctx := context.Background()
	carol, err := identity.NewRandom(1, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	from, to := e.aliceID.Address.String()+"@bm.test", carol.Address.String()+"@bm.test"
	rcpt, err := e.g.CheckRecipient(ctx, e.alice, to)
	if err != nil {
		t.Fatal(err)
	}
	for i, subject := range []string{"first", "second"} {
		raw := "From: " + from + "\r\nTo: " + to + "\r\nSubject: " + subject + "\r\n\r\nhello\r\n"
		if err := e.g.Submit(ctx, Submission{User: e.alice, From: e.aliceID.Address.String(), Recipients: []Recipient{rcpt}, Raw: []byte(raw)}); err != nil {
			t.Fatal(err)
		}
		drive(t, ctx, e.g)
		if n := len(e.pub.ofType(wire.ObjectGetPubkey)); n != 1 {
			t.Fatalf("after mail %d: %d getpubkey objects published, want 1", i+1, n)
		}
	}
	items, err := e.store.UserOutbox(ctx, e.alice.ID)
	if err != nil || len(items) != 2 {
		t.Fatalf("outbox: %d rows, %v", len(items), err)
	}
	for _, it := range items {
		if it.State != mailmap.OutboxAwaitingPubkey {
			t.Errorf("row %d: %s, want awaiting_pubkey", it.ID, it.State)
		}
	}
	// When the request's time is up, one new request serves both again.
	e.clock.Advance(getpubkeyTTL*11/10 + time.Minute)
	drive(t, ctx, e.g)
	if n := len(e.pub.ofType(wire.ObjectGetPubkey)); n != 2 {
		t.Fatalf("after the TTL: %d getpubkey objects published, want 2", n)
	}
}
