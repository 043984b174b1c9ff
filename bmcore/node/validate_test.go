package node

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/bmgate/bmgate/bmcore/inventory"
	"github.com/bmgate/bmgate/bmcore/params"
	"github.com/bmgate/bmgate/bmcore/wire"
)

type vectorObject struct {
	Object string `json:"object"`
	Inv    string `json:"inv"`
}

func loadVectorObjects(t *testing.T) map[string][]byte {
	t.Helper()
	b, err := os.ReadFile("../testdata/test-vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, k := range []string{"pubkey_v4", "ack", "msg", "broadcast_v5"} {
		var v vectorObject
		if err := json.Unmarshal(raw[k], &v); err != nil {
			t.Fatal(err)
		}
		obj, _ := hex.DecodeString(v.Object)
		if hashOf(obj).String() != v.Inv {
			t.Fatalf("%s: inventory hash mismatch", k)
		}
		out[k] = obj
	}
	return out
}

// TestCheckObjectVectors runs the mainnet acceptance checks on the
// composite vectors, made with real 1000/1000 PoW at now = 1700000000.
func TestCheckObjectVectors(t *testing.T) {
	now := time.Unix(1700000000, 0)
	for name, obj := range loadVectorObjects(t) {
		o, err := CheckObject(obj, now, params.Mainnet, []uint64{1})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		so := storedObject(o)
		switch name {
		case "pubkey_v4", "broadcast_v5":
			// The tag leads the payload of pubkey v4 and broadcast v5.
			if len(so.Tag) != 32 || !bytes.Equal(so.Tag, o.Payload[:32]) {
				t.Errorf("%s: tag %x", name, so.Tag)
			}
		default:
			if so.Tag != nil {
				t.Errorf("%s: unexpected tag", name)
			}
		}
		if so.Expires.Unix() != int64(o.ExpiresTime) || so.Hash != hashOf(obj) {
			t.Errorf("%s: stored record %+v", name, so)
		}
		// One flipped bit in the nonce breaks the PoW.
		bad := bytes.Clone(obj)
		bad[7] ^= 1
		if _, err := CheckObject(bad, now, params.Mainnet, []uint64{1}); !errors.Is(err, ErrInsufficientPoW) {
			t.Errorf("%s with a bad nonce: %v", name, err)
		}
		// Not our stream.
		if _, err := CheckObject(obj, now, params.Mainnet, []uint64{2}); !errors.Is(err, ErrWrongStream) {
			t.Errorf("%s in stream 2 only: %v", name, err)
		}
	}
}

func TestCheckObjectExpiryBounds(t *testing.T) {
	now := time.Unix(1700000000, 0)
	mk := func(expires int64) []byte {
		return solveObject(now, time.Duration(max(expires-now.Unix(), 0))*time.Second,
			wire.EncodeObject(0, uint64(expires), 2, 1, 1, []byte("bounds")))
	}
	ahead := int64(MaxExpiresAhead / time.Second)
	cases := []struct {
		expires int64
		want    error
	}{
		{now.Unix() + ahead, nil},
		{now.Unix() + ahead + 1, ErrObjectTooFarFuture},
		{now.Unix() - 3600, nil},
		{now.Unix() - 3601, ErrObjectExpired},
	}
	for _, c := range cases {
		_, err := CheckObject(mk(c.expires), now, params.Testnet, []uint64{1})
		if !errors.Is(err, c.want) || (c.want == nil && err != nil) {
			t.Errorf("expires now%+d: %v, want %v", c.expires-now.Unix(), err, c.want)
		}
	}
	huge := wire.EncodeObject(0, 1<<63+5, 2, 1, 1, nil)
	if _, err := CheckObject(huge, now, params.Testnet, []uint64{1}); !errors.Is(err, ErrObjectTooFarFuture) {
		t.Errorf("expiresTime 2^63+5: %v", err)
	}
	short := []byte{1, 2, 3}
	if _, err := CheckObject(short, now, params.Testnet, []uint64{1}); !errors.Is(err, ErrMalformedObject) {
		t.Errorf("3-byte object: %v", err)
	}
	// Unknown object types are accepted (stored and relayed, docs/protocol.md §5.2).
	if _, err := CheckObject(solveObject(now, time.Hour, wire.EncodeObject(0, uint64(now.Unix()+3600), 0x493250, 1, 1, []byte("i2p"))), now, params.Testnet, []uint64{1}); err != nil {
		t.Errorf("unknown type: %v", err)
	}
}

func TestPublish(t *testing.T) {
	got := make(chan inventory.StoredObject, 10)
	cfg := testConfig(t)
	cfg.OnObject = func(so inventory.StoredObject) { got <- so }
	n := startNode(t, cfg)
	ctx := context.Background()
	now := time.Now()
	next := func() inventory.StoredObject {
		t.Helper()
		select {
		case so := <-got:
			return so
		case <-time.After(5 * time.Second):
			t.Fatal("OnObject not called")
			return inventory.StoredObject{}
		}
	}
	obj := makeObject(t, now, time.Hour, wire.ObjectBroadcast, 100)
	h, err := n.Publish(ctx, obj)
	if err != nil || h != hashOf(obj) {
		t.Fatalf("Publish: %v", err)
	}
	if so := next(); so.Hash != h || so.Type != wire.ObjectBroadcast {
		t.Fatalf("notified %+v", so)
	}
	// Idempotent, no second notification: notifications come in order,
	// so the next one is that of a later, different object.
	if h2, err := n.Publish(ctx, obj); err != nil || h2 != h {
		t.Fatalf("second Publish: %v", err)
	}
	other := makeObject(t, now, time.Hour, wire.ObjectBroadcast, 100)
	if _, err := n.Publish(ctx, other); err != nil {
		t.Fatal(err)
	}
	if so := next(); so.Hash != hashOf(other) {
		t.Fatalf("notified twice (%v), want the other object next", so.Hash)
	}
	bad := badPoWObject(t, now)
	if _, err := n.Publish(ctx, bad); !errors.Is(err, ErrInsufficientPoW) {
		t.Fatalf("bad PoW: %v", err)
	}
	// Over 2^18 as a whole (the payload alone would pass the receive cap);
	// the size is checked before the PoW.
	big := wire.EncodeObject(0, uint64(now.Add(time.Hour).Unix()), 2, 1, 1, make([]byte, wire.MaxObjectSize-20))
	if _, err := n.Publish(ctx, big); !errors.Is(err, ErrObjectTooLarge) {
		t.Fatalf("oversized: %v", err)
	}
	if s := n.Stats(); s.ObjectsPublished != 2 || s.InventoryObjects != 2 {
		t.Fatalf("stats %+v", s)
	}
}
