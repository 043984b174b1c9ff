package gateway

// Regression tests of the inbound workers' failure handling: a failing
// object does not block the others, is retried after a backoff and set
// aside after MaxObjectAttempts; a retry or a second processing of an
// object files no second copy for any owner.

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
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
	"github.com/bmgate/bmgate/bmcore/pow"
	"github.com/bmgate/bmgate/bmcore/wire"
	"github.com/bmgate/bmgate/mailmap"
	"github.com/bmgate/bmgate/mailmap/storetest"
)

// onBackends runs fn on a fresh SQLite store and, when BMGATE_TEST_PG names
// a server, on a fresh PostgreSQL database. fn gets the DSN.
func onBackends(t *testing.T, fn func(t *testing.T, dsn string)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, filepath.Join(t.TempDir(), "g.db")) })
	t.Run("postgres", func(t *testing.T) { fn(t, storetest.PostgresDSN(t)) })
}

// fakeClock is the gateway's clock in these tests: it moves only when told.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// flakyStore fails the delivery of chosen objects to chosen users, whether
// the gateway files mail with DeliverOnce or with AppendMessage. The
// object is recognised by the X-Bitmessage-Inventory header of the mail.
type flakyStore struct {
	mailmap.Store
	mu    sync.Mutex
	fail  func(userID int64, inv string) error // nil error: deliver
	tries map[string]int                       // delivery attempts per inventory hash
	// failEnqueueOnce, when set, is the error of the next EnqueueOutboxOnce.
	failEnqueueOnce error
}

func (f *flakyStore) EnqueueOutboxOnce(ctx context.Context, userID int64, key []byte, items []mailmap.OutboxItem) ([]mailmap.OutboxItem, bool, error) {
	f.mu.Lock()
	err := f.failEnqueueOnce
	f.failEnqueueOnce = nil
	f.mu.Unlock()
	if err != nil {
		return nil, false, err
	}
	return f.Store.EnqueueOutboxOnce(ctx, userID, key, items)
}

var errInjected = errors.New("injected delivery failure")

func (f *flakyStore) check(userID int64, raw []byte) error {
	inv := header(raw, "X-Bitmessage-Inventory")
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.tries == nil {
		f.tries = map[string]int{}
	}
	f.tries[inv]++
	if f.fail == nil {
		return nil
	}
	return f.fail(userID, inv)
}

func (f *flakyStore) attempts(h wire.InvHash) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tries[h.String()]
}

func (f *flakyStore) DeliverOnce(ctx context.Context, userID, mailboxID int64, key, raw []byte, flags []string, date time.Time) (mailmap.Message, bool, error) {
	if err := f.check(userID, raw); err != nil {
		return mailmap.Message{}, false, err
	}
	return f.Store.DeliverOnce(ctx, userID, mailboxID, key, raw, flags, date)
}

func (f *flakyStore) AppendMessage(ctx context.Context, userID, mailboxID int64, raw []byte, flags []string, date time.Time) (mailmap.Message, error) {
	if err := f.check(userID, raw); err != nil {
		return mailmap.Message{}, err
	}
	return f.Store.AppendMessage(ctx, userID, mailboxID, raw, flags, date)
}

// header returns a header field of a mail (the first one, unfolded).
func header(raw []byte, name string) string {
	head, _, _ := bytes.Cut(raw, []byte("\r\n\r\n"))
	for line := range strings.SplitSeq(string(head), "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// logRecords keeps the records of a slog.Logger.
type logRecords struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (l *logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecords) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.recs = append(l.recs, r.Clone())
	l.mu.Unlock()
	return nil
}
func (l *logRecords) WithAttrs([]slog.Attr) slog.Handler { return l } // the gateway's With attrs are not needed here
func (l *logRecords) WithGroup(string) slog.Handler      { return l }

// find returns the records at level whose message contains msg and that
// carry the attribute key=value.
func (l *logRecords) find(level slog.Level, msg, key, value string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.recs {
		if r.Level != level || !strings.Contains(r.Message, msg) {
			continue
		}
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == key && a.Value.String() == value {
				n++
				return false
			}
			return true
		})
	}
	return n
}

// inboundEnv is a gateway on a store, driven by calls to inboundOnce.
type inboundEnv struct {
	t     *testing.T
	dsn   string
	store *flakyStore
	g     *Gateway
	clock *fakeClock
	logs  *logRecords
	pub   *capture
}

func newInboundEnv(t *testing.T, dsn string, tweak func(*Config)) *inboundEnv {
	t.Helper()
	st, err := mailmap.Open(context.Background(), dsn, mailmap.Options{SecretKey: bytes.Repeat([]byte{1}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &inboundEnv{t: t, dsn: dsn, store: &flakyStore{Store: st}, clock: &fakeClock{now: time.Now().Truncate(time.Second)},
		logs: &logRecords{}, pub: &capture{}}
	cfg := Config{Store: e.store, Publisher: e.pub, Network: params.Testnet, Domain: "bm.test", PoWWorkers: 1,
		Now: e.clock.Now, Logger: slog.New(e.logs), PollInterval: time.Second, MaxObjectAttempts: 3}
	if tweak != nil {
		tweak(&cfg)
	}
	if e.g, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *inboundEnv) user(name string) mailmap.User {
	e.t.Helper()
	u, err := e.store.CreateUser(context.Background(), name, "pw")
	if err != nil {
		e.t.Fatal(err)
	}
	return u
}

func (e *inboundEnv) addIdentity(u mailmap.User, id *identity.Identity, kind mailmap.IdentityKind, label string) {
	e.t.Helper()
	if _, err := e.store.AddIdentity(context.Background(), mailmap.Identity{UserID: u.ID, Address: id.Address.String(),
		Label: label, Kind: kind, SigningKey: id.Signing.Serialize(), EncryptionKey: id.Encryption.Serialize(),
		NonceTrialsPerByte: 1, ExtraBytes: 1}); err != nil {
		e.t.Fatal(err)
	}
}

// joinChan makes u a member of the chan and returns the chan's folder.
func (e *inboundEnv) joinChan(u mailmap.User, ch *identity.Identity, name string) string {
	e.t.Helper()
	e.addIdentity(u, ch, mailmap.KindChan, "[chan] "+name)
	return ChanFolder("[chan] "+name, ch.Address.String())
}

// solve does the proof of work of a headless object at the network minimum.
func (e *inboundEnv) solve(headless []byte) []byte {
	e.t.Helper()
	ttl := int64(time.Hour / time.Second)
	target := pow.Target(uint64(len(headless)+8), ttl+pow.SolveMargin, params.Testnet.NonceTrialsPerByte, params.Testnet.ExtraBytes)
	raw, err := pow.SolveObject(context.Background(), headless, target, pow.Options{Workers: 1})
	if err != nil {
		e.t.Fatal(err)
	}
	return raw
}

// put solves the proof of work of a headless object at the network
// minimum, stores it in the inventory as the node would, and returns it.
func (e *inboundEnv) put(headless []byte) inventory.StoredObject {
	e.t.Helper()
	raw := e.solve(headless)
	o, err := wire.DecodeObject(raw)
	if err != nil {
		e.t.Fatal(err)
	}
	so := inventory.StoredObject{Hash: wire.ComputeInvHash(raw), Type: o.Type, Version: o.Version, Stream: o.Stream,
		Expires: time.Unix(int64(o.ExpiresTime), 0), Raw: raw}
	if added, err := e.store.Put(context.Background(), so); err != nil || !added {
		e.t.Fatalf("Put = %v, %v", added, err)
	}
	return so
}

func (e *inboundEnv) expires() uint64 { return uint64(time.Now().Add(time.Hour).Unix()) }

// msgTo stores a msg from sender to the recipient identity.
func (e *inboundEnv) msgTo(sender, to *identity.Identity, subject string) inventory.StoredObject {
	e.t.Helper()
	headless, err := object.BuildMsg(sender, object.PubkeyOf(to), to.Address,
		object.MsgContent{Encoding: 2, Message: object.EncodeSimple(subject, "body of "+subject)}, e.expires(), rand.Reader)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.put(headless)
}

// broadcastOf stores a broadcast of sender.
func (e *inboundEnv) broadcastOf(sender *identity.Identity, subject string) inventory.StoredObject {
	e.t.Helper()
	headless, err := object.BuildBroadcast(sender, object.MsgContent{Encoding: 2, Message: object.EncodeSimple(subject, "news")},
		e.expires(), rand.Reader)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.put(headless)
}

// once runs one inbound batch, which must not fail.
func (e *inboundEnv) once() {
	e.t.Helper()
	if _, err := e.g.inboundOnce(context.Background()); err != nil {
		e.t.Fatalf("inboundOnce: %v", err)
	}
}

// pending returns the hashes of the unprocessed objects, set-aside ones and
// those whose retry is not due included only if due by at.
func (e *inboundEnv) pending(at time.Time) []wire.InvHash {
	e.t.Helper()
	objs, err := e.store.PendingObjects(context.Background(), at, 100)
	if err != nil {
		e.t.Fatal(err)
	}
	var hs []wire.InvHash
	for _, o := range objs {
		hs = append(hs, o.Hash)
	}
	return hs
}

// copies counts the messages in the user's folder that came from the object.
func (e *inboundEnv) copies(u mailmap.User, folder string, h wire.InvHash) int {
	e.t.Helper()
	ctx := context.Background()
	mb, err := e.store.Mailbox(ctx, u.ID, folder)
	if errors.Is(err, mailmap.ErrNotFound) {
		return 0
	}
	if err != nil {
		e.t.Fatal(err)
	}
	msgs, err := e.store.Messages(ctx, u.ID, mb.ID)
	if err != nil {
		e.t.Fatal(err)
	}
	n := 0
	for _, m := range msgs {
		raw, err := e.store.MessageRaw(ctx, u.ID, mb.ID, m.UID)
		if err != nil {
			e.t.Fatal(err)
		}
		if header(raw, "X-Bitmessage-Inventory") == h.String() {
			n++
		}
	}
	return n
}

// markPending makes a processed object pending again, behind the store's
// back, as a crash between delivery and MarkProcessed would leave it.
func (e *inboundEnv) markPending(h wire.InvHash) {
	e.t.Helper()
	driver, dsn := "sqlite", "file:"+e.dsn+"?_pragma=busy_timeout(10000)"
	if strings.HasPrefix(e.dsn, "postgres") {
		driver, dsn = "pgx", e.dsn
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		e.t.Fatal(err)
	}
	defer db.Close()
	res, err := db.Exec(`UPDATE inventory SET processed = FALSE WHERE hash = $1`, h[:])
	if err != nil {
		e.t.Fatal(err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		e.t.Fatalf("mark pending: %d rows, %v", n, err)
	}
}

func randomIdentity(t *testing.T) *identity.Identity {
	t.Helper()
	id, err := identity.NewRandom(1, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func chanIdentity(t *testing.T, name string) *identity.Identity {
	t.Helper()
	id, err := identity.Chan(name)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestPoisonObjectSetAside: an object whose delivery always fails does not
// hold back the objects after it; it is retried after a growing backoff and
// set aside after MaxObjectAttempts, listed with its error, and logged.
func TestPoisonObjectSetAside(t *testing.T) {
	onBackends(t, func(t *testing.T, dsn string) {
		e := newInboundEnv(t, dsn, nil)
		alice := e.user("alice")
		ch := chanIdentity(t, "poison test")
		folder := e.joinChan(alice, ch, "poison test")
		sender := randomIdentity(t)
		poison := e.msgTo(sender, ch, "poison")
		good := []inventory.StoredObject{e.msgTo(sender, ch, "good 1"), e.msgTo(sender, ch, "good 2")}
		e.store.fail = func(_ int64, inv string) error {
			if inv == poison.Hash.String() {
				return errInjected
			}
			return nil
		}

		e.once()
		for _, o := range good {
			if n := e.copies(alice, folder, o.Hash); n != 1 {
				t.Fatalf("object after the poison one: %d copies delivered, want 1", n)
			}
		}
		// Only the poison object is left, and not before its retry time.
		t0 := e.clock.Now()
		if got := e.pending(t0.Add(24 * time.Hour)); len(got) != 1 || got[0] != poison.Hash {
			t.Fatalf("pending after the first batch = %x, want only the poison object", got)
		}
		if got := e.pending(t0); len(got) != 0 {
			t.Fatalf("the failed object is pending again at once: %x", got)
		}
		e.once()
		if n := e.store.attempts(poison.Hash); n != 1 {
			t.Fatalf("the poison object was tried %d times before its retry time, want 1", n)
		}

		// The backoff doubles: PollInterval·2 after the first failure,
		// PollInterval·4 after the second.
		for i, wait := range []time.Duration{2 * time.Second, 4 * time.Second} {
			e.clock.Advance(wait - time.Millisecond)
			e.once()
			if n := e.store.attempts(poison.Hash); n != i+1 {
				t.Fatalf("retry %d ran %v early (attempts %d)", i+1, time.Millisecond, n)
			}
			e.clock.Advance(time.Millisecond)
			e.once()
			if n := e.store.attempts(poison.Hash); n != i+2 {
				t.Fatalf("retry %d did not run when due (attempts %d)", i+1, n)
			}
		}

		// Three attempts: set aside, never tried again, listed.
		e.clock.Advance(48 * time.Hour)
		e.once()
		if n := e.store.attempts(poison.Hash); n != 3 {
			t.Fatalf("a set-aside object was tried again (attempts %d)", n)
		}
		if got := e.pending(e.clock.Now().Add(48 * time.Hour)); len(got) != 0 {
			t.Fatalf("pending after set-aside = %x", got)
		}
		aside, err := e.store.SetAsideObjects(context.Background(), 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(aside) != 1 || aside[0].Hash != poison.Hash || aside[0].Attempts != 3 || aside[0].Type != wire.ObjectMsg ||
			!strings.Contains(aside[0].LastError, errInjected.Error()) {
			t.Fatalf("SetAsideObjects = %+v, want the poison object after 3 attempts with its error", aside)
		}
		if n := e.logs.find(slog.LevelError, "set aside", "inv", poison.Hash.String()); n != 1 {
			t.Errorf("%d error records name the set-aside object, want 1", n)
		}
		for _, o := range good {
			if n := e.copies(alice, folder, o.Hash); n != 1 {
				t.Fatalf("good object: %d copies in the end, want 1", n)
			}
		}
	})
}

// TestChanRetryOneCopyEach: a chan post to two members whose delivery to
// the second member fails once leaves, after the retry, exactly one copy
// with each member.
func TestChanRetryOneCopyEach(t *testing.T) {
	onBackends(t, func(t *testing.T, dsn string) {
		e := newInboundEnv(t, dsn, nil)
		bob, carol := e.user("bob"), e.user("carol")
		ch := chanIdentity(t, "retry test")
		folder := e.joinChan(bob, ch, "retry test")
		e.joinChan(carol, ch, "retry test")
		var failed bool
		e.store.fail = func(userID int64, _ string) error {
			if userID == carol.ID && !failed {
				failed = true
				return errInjected
			}
			return nil
		}
		post := e.msgTo(randomIdentity(t), ch, "to the chan")

		// The failure is the object's: recorded, not the batch's error.
		// (Only the copies are checked below, whatever the batch said.)
		_, batchErr := e.g.inboundOnce(context.Background())
		if !failed {
			t.Fatal("the delivery to the second member was not attempted")
		}
		if b, c := e.copies(bob, folder, post.Hash), e.copies(carol, folder, post.Hash); b != 1 || c != 0 {
			t.Fatalf("after the failure: bob %d, carol %d copies; want 1, 0", b, c)
		}
		e.clock.Advance(e.g.objectBackoff(1))
		e.once()
		if b, c := e.copies(bob, folder, post.Hash), e.copies(carol, folder, post.Hash); b != 1 || c != 1 {
			t.Fatalf("after the retry: bob %d, carol %d copies; want one each", b, c)
		}
		if batchErr != nil {
			t.Errorf("the batch with the failing object returned %v, want nil", batchErr)
		}
		if got := e.pending(e.clock.Now().Add(24 * time.Hour)); len(got) != 0 {
			t.Fatalf("still pending after the retry: %x", got)
		}
		if got := e.g.Stats().MessagesIn; got != 2 {
			t.Errorf("MessagesIn = %d, want 2 (a duplicate is not counted)", got)
		}
	})
}

// TestObjectProcessedTwice: an object processed again (a crash before
// MarkProcessed, a second instance) files one copy per owner: msg, chan
// post to each member, broadcast to each subscriber.
func TestObjectProcessedTwice(t *testing.T) {
	onBackends(t, func(t *testing.T, dsn string) {
		e := newInboundEnv(t, dsn, nil)
		alice, bob, carol := e.user("alice"), e.user("bob"), e.user("carol")
		aliceID := randomIdentity(t)
		e.addIdentity(alice, aliceID, mailmap.KindNormal, "")
		ch := chanIdentity(t, "twice test")
		chFolder := e.joinChan(bob, ch, "twice test")
		e.joinChan(carol, ch, "twice test")
		news := randomIdentity(t)
		newsFolder := SubscriptionFolder("News", news.Address.String())
		for _, u := range []mailmap.User{alice, carol} {
			if _, err := e.store.AddSubscription(context.Background(),
				mailmap.Subscription{UserID: u.ID, Address: news.Address.String(), Label: "News"}); err != nil {
				t.Fatal(err)
			}
		}
		sender := randomIdentity(t)
		msg := e.msgTo(sender, aliceID, "personal")
		post := e.msgTo(sender, ch, "chan post")
		bc := e.broadcastOf(news, "broadcast")
		check := func(when string) {
			t.Helper()
			for _, c := range []struct {
				u      mailmap.User
				folder string
				o      inventory.StoredObject
			}{
				{alice, "INBOX", msg}, {bob, chFolder, post}, {carol, chFolder, post},
				{alice, newsFolder, bc}, {carol, newsFolder, bc},
			} {
				if n := e.copies(c.u, c.folder, c.o.Hash); n != 1 {
					t.Fatalf("%s: %s has %d copies of %x in %s, want 1", when, c.u.Name, n, c.o.Hash[:4], c.folder)
				}
			}
		}
		e.once()
		check("first processing")
		for _, o := range []inventory.StoredObject{msg, post, bc} {
			e.markPending(o.Hash)
		}
		if got := e.pending(e.clock.Now()); len(got) != 3 {
			t.Fatalf("%d objects pending again, want 3", len(got))
		}
		e.once()
		check("second processing")
		if got := e.pending(e.clock.Now()); len(got) != 0 {
			t.Fatalf("still pending after the second processing: %x", got)
		}
		if got := e.g.Stats().MessagesIn; got != 5 {
			t.Errorf("MessagesIn = %d, want 5", got)
		}
	})
}

// TestCancelledIsNotAFailure: an object whose processing is cut short by
// shutdown is not counted as a failure: it stays pending, due at once.
func TestCancelledIsNotAFailure(t *testing.T) {
	onBackends(t, func(t *testing.T, dsn string) {
		e := newInboundEnv(t, dsn, func(c *Config) { c.MaxObjectAttempts = 1 })
		dave := e.user("dave")
		ch := chanIdentity(t, "cancel test")
		folder := e.joinChan(dave, ch, "cancel test")
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		e.store.fail = func(int64, string) error {
			cancel()
			return fmt.Errorf("deliver: %w", context.Canceled)
		}
		post := e.msgTo(randomIdentity(t), ch, "cut short")
		if _, err := e.g.inboundOnce(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("inboundOnce = %v, want context.Canceled", err)
		}
		if got := e.pending(e.clock.Now()); len(got) != 1 || got[0] != post.Hash {
			t.Fatalf("pending after a cancelled batch = %x, want the object, due at once", got)
		}
		if aside, err := e.store.SetAsideObjects(context.Background(), 10); err != nil || len(aside) != 0 {
			t.Fatalf("SetAsideObjects = %+v, %v; want none", aside, err)
		}
		e.store.fail = nil
		e.once()
		if n := e.copies(dave, folder, post.Hash); n != 1 {
			t.Fatalf("%d copies after the next batch, want 1", n)
		}
	})
}

// TestObjectBackoff: PollInterval·2^attempts, capped at an hour.
func TestObjectBackoff(t *testing.T) {
	g := &Gateway{cfg: Config{PollInterval: 5 * time.Second}}
	for attempts, want := range map[int]time.Duration{
		0: 5 * time.Second, 1: 10 * time.Second, 2: 20 * time.Second, 5: 160 * time.Second,
		9: 2560 * time.Second, 10: time.Hour, 64: time.Hour, 1000: time.Hour,
	} {
		if got := g.objectBackoff(attempts); got != want {
			t.Errorf("objectBackoff(%d) = %v, want %v", attempts, got, want)
		}
	}
}
