package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bmgate/bmgate/bmcore/identity"
	"github.com/bmgate/bmgate/bmcore/object"
	"github.com/bmgate/bmgate/bmcore/params"
	"github.com/bmgate/bmgate/bmcore/pow"
	"github.com/bmgate/bmgate/bmcore/wire"
	"github.com/bmgate/bmgate/mailmap"
)

// capture is a Publisher that keeps what the gateway publishes.
type capture struct {
	mu       sync.Mutex
	objs     [][]byte
	awaiting []wire.InvHash
}

func (c *capture) Publish(_ context.Context, obj []byte) (wire.InvHash, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.objs = append(c.objs, append([]byte(nil), obj...))
	return wire.ComputeInvHash(obj), nil
}

// PublishAwaitingAck records the object as awaiting an ack, as the node
// does for PyBitmessage's sake (interop F1).
func (c *capture) PublishAwaitingAck(ctx context.Context, obj []byte) (wire.InvHash, error) {
	h, err := c.Publish(ctx, obj)
	c.mu.Lock()
	c.awaiting = append(c.awaiting, h)
	c.mu.Unlock()
	return h, err
}

func (c *capture) ofType(typ uint32) []*wire.Object {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*wire.Object
	for _, b := range c.objs {
		if o, err := wire.DecodeObject(b); err == nil && o.Type == typ {
			out = append(out, o)
		}
	}
	return out
}

// TestBuiltMsgParsesFromBytes submits a mail and checks the msg object the
// outbound pipeline publishes the way a foreign node would: parse from
// bytes only, decrypt with the recipient's key, verify the signature, check
// the proof of work against the recipient's demand, decode the encoding
// (docs/protocol.md §10.3, §12) and the embedded ack packet (§11).
func TestBuiltMsgParsesFromBytes(t *testing.T) {
	ctx := context.Background()
	st, err := mailmap.Open(ctx, filepath.Join(t.TempDir(), "g.db"), mailmap.Options{SecretKey: bytes.Repeat([]byte{1}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	pub := &capture{}
	g, err := New(Config{Store: st, Publisher: pub, Network: params.Testnet, Domain: "bm.test", PoWWorkers: 1})
	if err != nil {
		t.Fatal(err)
	}
	u, err := st.CreateUser(ctx, "alice", "pw")
	if err != nil {
		t.Fatal(err)
	}
	alice, err := identity.NewRandom(1, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.AddIdentity(ctx, mailmap.Identity{UserID: u.ID, Address: alice.Address.String(), Kind: mailmap.KindNormal,
		SigningKey: alice.Signing.Serialize(), EncryptionKey: alice.Encryption.Serialize(), NonceTrialsPerByte: 1, ExtraBytes: 1}); err != nil {
		t.Fatal(err)
	}
	// Bob is remote: only his pubkey is known, with a demanded difficulty
	// above the network minimum.
	bob, err := identity.NewRandom(1, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	const bobNTPB, bobExtra = 40, 30
	if err := st.PutPubkey(ctx, mailmap.Pubkey{Address: bob.Address.String(), Version: 4, Stream: 1, Bitfield: 1,
		SigningKey: bob.PublicSigning(), EncryptionKey: bob.PublicEncryption(), NonceTrialsPerByte: bobNTPB, ExtraBytes: bobExtra,
		Source: "test", LearnedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}

	// Bob's node has sent us encoding 3: it reads it, so threading
	// headers go to him in encoding 3 (TestEncodingPolicy has the rest).
	if err := st.NoteEncoding(ctx, bob.Address.String(), 3); err != nil {
		t.Fatal(err)
	}
	from, to := alice.Address.String()+"@bm.test", bob.Address.String()+"@bm.test"
	raw := "From: " + from + "\r\nTo: " + to + "\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\nMessage-ID: <m1@client.test>\r\n" +
		"In-Reply-To: <m0@client.test>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nZeile eins\r\nZeile zwei\r\n"
	rcpt, err := g.CheckRecipient(ctx, mailmap.User{ID: u.ID}, to)
	if err != nil {
		t.Fatal(err)
	}
	sender, err := g.CheckSender(ctx, mailmap.User{ID: u.ID}, from)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Submit(ctx, Submission{User: mailmap.User{ID: u.ID}, From: sender, Recipients: []Recipient{rcpt}, Raw: []byte(raw)}); err != nil {
		t.Fatal(err)
	}
	drive(t, ctx, g)
	msgs := pub.ofType(wire.ObjectMsg)
	if len(msgs) != 1 {
		t.Fatalf("published %d msg objects", len(msgs))
	}
	o := msgs[0]
	if o.Version != 1 || o.Stream != 1 {
		t.Errorf("msg object version %d stream %d", o.Version, o.Stream)
	}
	now := time.Now().Unix()
	if !pow.Check(o.Raw, now, bobNTPB, bobExtra) {
		t.Error("proof of work below the recipient's demand")
	}
	m, key, err := object.DecryptMsg(o, []*identity.Identity{bob})
	if err != nil {
		t.Fatalf("recipient cannot decrypt and verify: %v", err)
	}
	if key.Address != bob.Address || m.DestinationRipe != bob.Address.Ripe {
		t.Errorf("destination ripe %x", m.DestinationRipe)
	}
	if m.SenderAddress() != alice.Address {
		t.Errorf("sender %s, want %s", m.SenderAddress(), alice.Address)
	}
	if m.Encoding != 3 {
		t.Errorf("encoding %d, want 3 (threading headers to carry)", m.Encoding)
	}
	c, err := object.DecodeMessage(m.Encoding, m.Message)
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject != "Grüße" || c.Body != "Zeile eins\nZeile zwei\n" {
		t.Errorf("content %q / %q", c.Subject, c.Body)
	}
	if c.Extra["messageid"] != "m1@client.test" || c.Extra["inreplyto"] != "m0@client.test" {
		t.Errorf("extras %v", c.Extra)
	}
	// The ack is a whole object packet of this network with valid proof of work.
	cmd, ack, err := wire.DecodePacket(m.AckPacket, params.Testnet.Magic)
	if err != nil || cmd != "object" {
		t.Fatalf("ack packet: %q, %v", cmd, err)
	}
	if !pow.Check(ack, now, 1, 1) {
		t.Error("ack proof of work")
	}
	items, err := st.UserOutbox(ctx, u.ID)
	if err != nil || len(items) != 1 {
		t.Fatal(err)
	}
	if !bytes.Equal(items[0].AckData, ack[16:]) {
		t.Error("stored ack data does not match the embedded ack object")
	}
	if items[0].State != mailmap.OutboxSent {
		t.Errorf("state %s", items[0].State)
	}

	// A mail without threading headers goes out in encoding 2, which every
	// PyBitmessage shows.
	plain := strings.Replace(strings.Replace(raw, "Message-ID: <m1@client.test>\r\n", "", 1), "In-Reply-To: <m0@client.test>\r\n", "", 1)
	if err := g.Submit(ctx, Submission{User: mailmap.User{ID: u.ID}, From: sender, Recipients: []Recipient{rcpt}, Raw: []byte(plain)}); err != nil {
		t.Fatal(err)
	}
	drive(t, ctx, g)
	msgs = pub.ofType(wire.ObjectMsg)
	m, _, err = object.DecryptMsg(msgs[len(msgs)-1], []*identity.Identity{bob})
	if err != nil {
		t.Fatal(err)
	}
	if m.Encoding != 2 || !bytes.HasPrefix(m.Message, []byte("Subject:Grüße\nBody:Zeile eins")) {
		t.Errorf("encoding %d message %q", m.Encoding, m.Message)
	}
}

// drive runs the outbound worker and the proof-of-work scheduler, one step
// at a time, until neither has anything left to do now.
func drive(t *testing.T, ctx context.Context, g *Gateway) {
	t.Helper()
	for range 100 {
		n, err := g.outboundOnce(ctx)
		if err != nil {
			t.Fatalf("outboundOnce: %v", err)
		}
		worked, err := g.powOnce(ctx)
		if err != nil {
			t.Fatalf("powOnce: %v", err)
		}
		if n == 0 && !worked {
			return
		}
	}
	t.Fatal("drive: the pipeline did not settle in 100 steps")
}

// TestEncodingPolicy: a mail goes as encoding 2, which every client reads
// (notbit reads nothing else), unless it carries threading headers that
// name another message and the recipient is known to read encoding 3: a
// personal address of this gateway, or an address (person or chan) from
// which encoding 3 has arrived. A Message-ID alone never makes it 3.
func TestEncodingPolicy(t *testing.T) {
	e := newSendEnv(t, filepath.Join(t.TempDir(), "g.db"), 1, nil)
	ctx := context.Background()
	newID := func() *identity.Identity {
		id, err := identity.NewRandom(1, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	carol, dave, chanID, remoteChan := newID(), newID(), newID(), newID()
	e.addIdentity(e.user("dave"), dave, mailmap.KindNormal, "Dave")
	e.addIdentity(e.alice, chanID, mailmap.KindChan, "[chan] local")
	e.addIdentity(e.alice, remoteChan, mailmap.KindChan, "[chan] seen3")
	if err := e.store.NoteEncoding(ctx, e.bob.Address.String(), 3); err != nil {
		t.Fatal(err)
	}
	if err := e.store.NoteEncoding(ctx, remoteChan.Address.String(), 3); err != nil {
		t.Fatal(err)
	}
	if err := e.store.NoteEncoding(ctx, carol.Address.String(), 2); err != nil {
		t.Fatal(err)
	}
	const threading = "In-Reply-To: <parent@client.test>\r\nReferences: <root@client.test> <parent@client.test>\r\n"
	for _, tc := range []struct {
		name    string
		to      string
		headers string
		want    uint64
	}{
		{"message-id only, reader of 3", e.bob.Address.String() + "@bm.test", "", 2},
		{"threading, reader of 3", e.bob.Address.String() + "@bm.test", threading, 3},
		{"threading, seen writing 2 only", carol.Address.String() + "@bm.test", threading, 2},
		{"threading, never seen", newID().Address.String() + "@bm.test", threading, 2},
		{"threading, local identity", dave.Address.String() + "@bm.test", threading, 3},
		{"threading, chan never seen in 3", chanID.Address.String() + "@bm.test", threading, 2},
		{"threading, chan seen in 3", remoteChan.Address.String() + "@bm.test", threading, 3},
		{"threading, broadcast", "broadcast@bm.test", threading, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rcpt, err := e.g.CheckRecipient(ctx, e.alice, tc.to)
			if err != nil {
				t.Fatal(err)
			}
			raw := "From: " + e.aliceID.Address.String() + "@bm.test\r\nTo: " + tc.to + "\r\nSubject: s\r\nMessage-ID: <m@client.test>\r\n" +
				tc.headers + "\r\nhello\r\n"
			if err := e.g.Submit(ctx, Submission{User: e.alice, From: e.aliceID.Address.String(), Recipients: []Recipient{rcpt}, Raw: []byte(raw)}); err != nil {
				t.Fatal(err)
			}
			it := e.row()
			if it.Encoding != tc.want {
				t.Fatalf("encoding %d, want %d", it.Encoding, tc.want)
			}
			msg, err := contentOf(it)
			if err != nil {
				t.Fatal(err)
			}
			c, err := object.DecodeMessage(it.Encoding, msg)
			if err != nil {
				t.Fatal(err)
			}
			if c.Subject != "s" || c.Body != "hello\n" {
				t.Errorf("content %q / %q", c.Subject, c.Body)
			}
			if tc.want == 3 && (c.Extra["messageid"] != "m@client.test" || c.Extra["inreplyto"] != "parent@client.test" ||
				c.Extra["references"] != "root@client.test parent@client.test") {
				t.Errorf("extras %v", c.Extra)
			}
		})
	}
}
