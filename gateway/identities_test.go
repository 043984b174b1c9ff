package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/bmgate/bmgate/bmcore/address"
	"github.com/bmgate/bmgate/bmcore/identity"
	"github.com/bmgate/bmgate/bmcore/object"
	"github.com/bmgate/bmgate/bmcore/params"
	"github.com/bmgate/bmgate/bmcore/wire"
	"github.com/bmgate/bmgate/mailmap"
	"github.com/bmgate/bmgate/mailmap/storetest"
)

var cacheTestKey = bytes.Repeat([]byte{3}, 32)

// cacheBackends are the databases the cache tests run on: each gives a
// fresh database's DSN.
var cacheBackends = []struct {
	name string
	dsn  func(t *testing.T) string
}{
	{"sqlite", func(t *testing.T) string { return filepath.Join(t.TempDir(), "g.db") }},
	{"postgres", func(t *testing.T) string { return storetest.PostgresDSN(t) }},
}

func openCacheStore(t *testing.T, dsn string) mailmap.Store {
	t.Helper()
	st, err := mailmap.Open(context.Background(), dsn, mailmap.Options{SecretKey: cacheTestKey})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// signalling is a capture publisher that also signals each publication.
type signalling struct {
	capture
	published chan struct{}
}

func (s *signalling) Publish(ctx context.Context, obj []byte) (wire.InvHash, error) {
	h, err := s.capture.Publish(ctx, obj)
	s.signal()
	return h, err
}

// PublishAwaitingAck signals too: the gateway publishes a msg that awaits
// an ack this way, and capture's method would bypass Publish above.
func (s *signalling) PublishAwaitingAck(ctx context.Context, obj []byte) (wire.InvHash, error) {
	h, err := s.capture.PublishAwaitingAck(ctx, obj)
	s.signal()
	return h, err
}

func (s *signalling) signal() {
	select {
	case s.published <- struct{}{}:
	default:
	}
}

// runningGateway runs a gateway over st with a signalling publisher, its
// identity cache loaded before anything else happens (as in a gateway that
// has been up for a while), until the test ends.
func runningGateway(t *testing.T, st mailmap.Store) (*Gateway, *signalling) {
	t.Helper()
	pub := &signalling{published: make(chan struct{}, 1)}
	g, err := New(Config{Store: st, Publisher: pub, Network: params.Testnet, Domain: "bm.test", PoWWorkers: 1,
		PollInterval: 50 * time.Millisecond, PubkeyPoll: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.identities(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { g.Run(ctx) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	return g, pub
}

// storedIdentity is the row for a key, owned by the user.
func storedIdentity(userID int64, id *identity.Identity, kind mailmap.IdentityKind, label string) mailmap.Identity {
	return mailmap.Identity{UserID: userID, Address: id.Address.String(), Label: label, Kind: kind,
		SigningKey: id.Signing.Serialize(), EncryptionKey: id.Encryption.Serialize(), NonceTrialsPerByte: 1, ExtraBytes: 1}
}

// submitNow submits a mail from one address to another as the user, as
// smtpd does, and waits until the gateway published a msg object for it,
// failing the test if the row fails instead.
func submitNow(t *testing.T, g *Gateway, st mailmap.Store, pub *signalling, u mailmap.User, from, to address.Address) *wire.Object {
	t.Helper()
	ctx := context.Background()
	changes, stop := st.Subscribe(u.ID) // a failure report lands in the INBOX
	defer stop()
	bmFrom, err := g.CheckSender(ctx, u, from.String()+"@bm.test")
	if err != nil {
		t.Fatalf("CheckSender: %v", err)
	}
	rcpt, err := g.CheckRecipient(ctx, u, to.String()+"@bm.test")
	if err != nil {
		t.Fatalf("CheckRecipient: %v", err)
	}
	raw := "From: " + from.String() + "@bm.test\r\nTo: " + to.String() + "@bm.test\r\nSubject: at once\r\n" +
		"Message-ID: <now@client.test>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nright after adding the address\r\n"
	if err := g.Submit(ctx, Submission{User: u, From: bmFrom, Recipients: []Recipient{rcpt}, Raw: []byte(raw)}); err != nil {
		t.Fatalf("Submit: %v", err)
	}
	deadline := time.After(30 * time.Second)
	for {
		for _, o := range pub.ofType(wire.ObjectMsg) {
			return o
		}
		items, err := st.UserOutbox(ctx, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range items {
			if it.State == mailmap.OutboxFailed {
				t.Fatalf("the send failed: %s", it.LastError)
			}
		}
		select {
		case <-pub.published:
		case <-changes:
		case <-deadline:
			t.Fatalf("nothing published within 30 s; outbox %+v", items)
		}
	}
}

// TestIdentityAddedElsewhereSendsAtOnce: an address created with the CLI
// (another Store on the same database) while the gateway runs is usable at
// once: a mail from it right away is sent, not failed with "the sending
// identity no longer exists" (5.1.7) because the gateway's cache was older.
func TestIdentityAddedElsewhereSendsAtOnce(t *testing.T) {
	for _, b := range cacheBackends {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			dsn := b.dsn(t)
			st, cli := openCacheStore(t, dsn), openCacheStore(t, dsn)
			g, pub := runningGateway(t, st)

			u, err := cli.CreateUser(ctx, "alice", "pw")
			if err != nil {
				t.Fatal(err)
			}
			alice, err := identity.NewRandom(1, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := cli.AddIdentity(ctx, storedIdentity(u.ID, alice, mailmap.KindNormal, "")); err != nil {
				t.Fatal(err)
			}
			bob, err := identity.NewRandom(1, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			if err := cli.PutPubkey(ctx, mailmap.Pubkey{Address: bob.Address.String(), Version: 4, Stream: 1, Bitfield: 1,
				SigningKey: bob.PublicSigning(), EncryptionKey: bob.PublicEncryption(), NonceTrialsPerByte: 1, ExtraBytes: 1,
				Source: "test", LearnedAt: time.Now()}); err != nil {
				t.Fatal(err)
			}
			o := submitNow(t, g, st, pub, u, alice.Address, bob.Address)
			m, _, err := object.DecryptMsg(o, []*identity.Identity{bob})
			if err != nil {
				t.Fatalf("bob cannot read the msg: %v", err)
			}
			if m.SenderAddress() != alice.Address {
				t.Errorf("sent from %s, want %s", m.SenderAddress(), alice.Address)
			}
		})
	}
}

// TestChanPostRightAfterJoin: a chan joined with the CLI takes a post at
// once: the chan is both the sending identity and the (local) recipient.
func TestChanPostRightAfterJoin(t *testing.T) {
	for _, b := range cacheBackends {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			dsn := b.dsn(t)
			st, cli := openCacheStore(t, dsn), openCacheStore(t, dsn)
			g, pub := runningGateway(t, st)

			u, err := cli.CreateUser(ctx, "alice", "pw")
			if err != nil {
				t.Fatal(err)
			}
			ch, err := identity.Chan("bmgate cache test")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := cli.AddIdentity(ctx, storedIdentity(u.ID, ch, mailmap.KindChan, "[chan] bmgate cache test")); err != nil {
				t.Fatal(err)
			}
			o := submitNow(t, g, st, pub, u, ch.Address, ch.Address)
			if _, _, err := object.DecryptMsg(o, []*identity.Identity{ch}); err != nil {
				t.Fatalf("the chan cannot read the post: %v", err)
			}
		})
	}
}

// laggingStore answers AccountsGeneration with a fixed value, as a
// PostgreSQL store does until the notification of another process's
// change arrives.
type laggingStore struct {
	mailmap.Store
	gen uint64
}

func (s *laggingStore) AccountsGeneration(context.Context) (uint64, error) { return s.gen, nil }

// TestLocalKeyReloadsOnMiss: while the in-memory generation trails a
// change made elsewhere, the caches keep their contents, but localKey
// looks again with the generation read from the database, so a key added
// a moment ago is found, also as a new owner of a key already cached.
func TestLocalKeyReloadsOnMiss(t *testing.T) {
	for _, b := range cacheBackends {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			dsn := b.dsn(t)
			st, cli := openCacheStore(t, dsn), openCacheStore(t, dsn)
			gen, err := st.ReadAccountsGeneration(ctx)
			if err != nil {
				t.Fatal(err)
			}
			lag := &laggingStore{Store: st, gen: gen}
			g, err := New(Config{Store: lag, Network: params.Testnet, Domain: "bm.test"})
			if err != nil {
				t.Fatal(err)
			}
			alice, err := cli.CreateUser(ctx, "alice", "pw")
			if err != nil {
				t.Fatal(err)
			}
			bob, err := cli.CreateUser(ctx, "bob", "pw")
			if err != nil {
				t.Fatal(err)
			}
			ch, err := identity.Chan("lagging")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := cli.AddIdentity(ctx, storedIdentity(bob.ID, ch, mailmap.KindChan, "")); err != nil {
				t.Fatal(err)
			}
			if _, err := g.identities(ctx); err != nil {
				t.Fatal(err)
			}
			if _, _, ok, err := g.localKey(ctx, ch.Address); !ok || err != nil {
				t.Fatalf("localKey(chan) = %v, %v", ok, err)
			}

			id, err := identity.NewRandom(1, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := cli.AddIdentity(ctx, storedIdentity(alice.ID, id, mailmap.KindNormal, "")); err != nil {
				t.Fatal(err)
			}
			if _, err := cli.AddIdentity(ctx, storedIdentity(alice.ID, ch, mailmap.KindChan, "")); err != nil {
				t.Fatal(err)
			}
			// The generation this process sees has not moved: the cache
			// stays as it was...
			c, err := g.identities(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := c.byAddr[id.Address]; ok {
				t.Fatal("the cache reloaded without a generation change; the test shows nothing")
			}
			// ...but a miss looks again.
			c, i, ok, err := g.localKey(ctx, id.Address)
			if err != nil || !ok || c.keys[i].Address != id.Address {
				t.Fatalf("localKey of an identity added elsewhere = %v, %v", ok, err)
			}
			if _, _, ok, err := g.localKeyOf(ctx, ch.Address, alice.ID); err != nil || !ok {
				t.Fatalf("localKeyOf a chan alice joined after bob = %v, %v", ok, err)
			}
			unknown, err := identity.NewRandom(1, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, ok, err := g.localKey(ctx, unknown.Address); ok || err != nil {
				t.Fatalf("localKey of an unknown address = %v, %v; want false, nil", ok, err)
			}
			// sender() takes the miss path too: the row is sent, not failed.
			if _, err := g.sender(ctx, mailmap.OutboxItem{UserID: alice.ID, FromAddress: id.Address.String()}); err != nil {
				t.Fatalf("sender: %v", err)
			}
		})
	}
}
