package storetest

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/bmgate/bmgate/bmcore/inventory"
	"github.com/bmgate/bmgate/bmcore/wire"
	"github.com/bmgate/bmgate/mailmap"
)

func object(i byte, stream uint64, expires time.Time) inventory.StoredObject {
	var h wire.InvHash
	h[0], h[31] = i, 0x77
	return inventory.StoredObject{Hash: h, Type: 2, Version: 1, Stream: stream, Expires: expires,
		Raw: append([]byte{0, 0, 0, 0, 0, 0, 0, i}, bytes.Repeat([]byte{i}, 100)...)}
}

func sameObject(t testing.TB, got, want inventory.StoredObject) {
	t.Helper()
	if got.Hash != want.Hash || got.Type != want.Type || got.Version != want.Version || got.Stream != want.Stream ||
		!got.Expires.Equal(want.Expires) || !bytes.Equal(got.Tag, want.Tag) || !bytes.Equal(got.Raw, want.Raw) {
		t.Fatalf("object\n got %+v\nwant %+v", got, want)
	}
}

func testInventory(t *testing.T, s mailmap.Store) {
	ctx := context.Background()
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	o1 := object(1, 1, now.Add(time.Hour))
	o2 := object(2, 1, now.Add(-time.Minute)) // already expired
	o3 := object(3, 2, now.Add(2*time.Hour))
	o3.Type, o3.Version, o3.Tag = 1, 1<<63+5, bytes.Repeat([]byte{9}, 32)
	for _, o := range []inventory.StoredObject{o1, o2, o3} {
		added, err := s.Put(ctx, o)
		noErr(t, err, "Put")
		if !added {
			t.Fatalf("Put(%x) of a new object reported not added", o.Hash[:1])
		}
	}
	added, err := s.Put(ctx, o1)
	noErr(t, err, "Put again")
	if added {
		t.Fatal("Put of a stored object reported added")
	}
	has, err := s.Has(ctx, o1.Hash)
	noErr(t, err, "Has")
	if !has {
		t.Fatal("Has(o1) = false")
	}
	missing := object(99, 1, now).Hash
	has, err = s.Has(ctx, missing)
	noErr(t, err, "Has missing")
	if has {
		t.Fatal("Has(missing) = true")
	}
	raw, err := s.Get(ctx, o3.Hash)
	noErr(t, err, "Get")
	if !bytes.Equal(raw, o3.Raw) {
		t.Fatal("Get returned other bytes")
	}
	_, err = s.Get(ctx, missing)
	if !errors.Is(err, inventory.ErrNotFound) {
		t.Fatalf("Get(missing) = %v, want inventory.ErrNotFound", err)
	}
	hs, err := s.Hashes(ctx, 1, now)
	noErr(t, err, "Hashes")
	if !slices.Equal(hs, []wire.InvHash{o1.Hash}) {
		t.Fatalf("Hashes(stream 1) = %v, want only the unexpired o1", hs)
	}
	hs, err = s.Hashes(ctx, 2, now)
	noErr(t, err, "Hashes stream 2")
	if !slices.Equal(hs, []wire.InvHash{o3.Hash}) {
		t.Fatalf("Hashes(stream 2) = %v", hs)
	}
	byTag, err := s.ObjectsByTag(ctx, 1, o3.Tag, now)
	noErr(t, err, "ObjectsByTag")
	if len(byTag) != 1 {
		t.Fatalf("ObjectsByTag = %d objects", len(byTag))
	}
	sameObject(t, byTag[0], o3)
	for _, q := range []struct {
		typ uint32
		tag []byte
		at  time.Time
	}{{2, o3.Tag, now}, {1, bytes.Repeat([]byte{8}, 32), now}, {1, o3.Tag, now.Add(3 * time.Hour)}, {1, nil, now}} {
		if got, err := s.ObjectsByTag(ctx, q.typ, q.tag, q.at); err != nil || len(got) != 0 {
			t.Fatalf("ObjectsByTag(%d, %x, %v) = %d objects, %v", q.typ, q.tag, q.at, len(got), err)
		}
	}
	n, err := s.InventoryCount(ctx)
	noErr(t, err, "InventoryCount")
	if n != 3 {
		t.Fatalf("InventoryCount = %d", n)
	}
	gone, err := s.Expire(ctx, now)
	noErr(t, err, "Expire")
	if gone != 1 {
		t.Fatalf("Expire removed %d objects, want 1", gone)
	}
	if has, _ := s.Has(ctx, o2.Hash); has {
		t.Fatal("expired object still stored")
	}
	if n, _ := s.InventoryCount(ctx); n != 2 {
		t.Fatalf("InventoryCount after Expire = %d", n)
	}
}

func testPendingObjects(t *testing.T, s mailmap.Store) {
	ctx := context.Background()
	now := time.Now().Truncate(time.Second) // object expiry times are whole seconds
	var objs []inventory.StoredObject
	for i := range byte(5) {
		o := object(10+i, 1, now.Add(time.Hour))
		objs = append(objs, o)
		_, err := s.Put(ctx, o)
		noErr(t, err, "Put")
	}
	pending, err := s.PendingObjects(ctx, now, 3)
	noErr(t, err, "PendingObjects")
	if len(pending) != 3 {
		t.Fatalf("PendingObjects(3) = %d objects", len(pending))
	}
	for i, o := range pending {
		sameObject(t, o, objs[i]) // arrival order
	}
	noErr(t, s.MarkProcessed(ctx, objs[0].Hash, "", now), "MarkProcessed")
	noErr(t, s.MarkProcessed(ctx, objs[2].Hash, "", now), "MarkProcessed")
	noErr(t, s.MarkProcessed(ctx, objs[2].Hash, "", now), "MarkProcessed twice")
	err = s.MarkProcessed(ctx, object(200, 1, now).Hash, "", now)
	wantErr(t, err, mailmap.ErrNotFound, "MarkProcessed unknown")
	pending, err = s.PendingObjects(ctx, now, 10)
	noErr(t, err, "PendingObjects")
	var got []wire.InvHash
	for _, o := range pending {
		got = append(got, o.Hash)
	}
	if want := []wire.InvHash{objs[1].Hash, objs[3].Hash, objs[4].Hash}; !slices.Equal(got, want) {
		t.Fatalf("PendingObjects after MarkProcessed = %x, want %x", got, want)
	}
	// A duplicate Put does not make a processed object pending again.
	_, err = s.Put(ctx, objs[0])
	noErr(t, err, "Put duplicate")
	if pending, _ := s.PendingObjects(ctx, now, 10); len(pending) != 3 {
		t.Fatalf("PendingObjects after duplicate Put = %d", len(pending))
	}
	// Processed objects are still served to peers.
	if hs, _ := s.Hashes(ctx, 1, now); len(hs) != 5 {
		t.Fatalf("Hashes = %d, want all 5", len(hs))
	}
}

func testKnownNodes(t *testing.T, s mailmap.Store) {
	ctx := context.Background()
	base := time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)
	nodes := []inventory.KnownNode{
		{Addr: "127.0.0.1:8444", Stream: 1, Services: 1, LastSeen: base, Rating: 0.5},
		{Addr: "[::1]:8444", Stream: 1, Services: 1<<64 - 1, LastSeen: base.Add(time.Hour), Rating: -1},
		{Addr: "example.onion:8444", Stream: 1, Services: 3, LastSeen: base.Add(-time.Hour), Rating: 0},
		{Addr: "127.0.0.1:8444", Stream: 2, Services: 1, LastSeen: base, Rating: 0},
	}
	for _, n := range nodes {
		noErr(t, s.UpsertNode(ctx, n), "UpsertNode")
	}
	list, err := s.ListNodes(ctx, 1, 10)
	noErr(t, err, "ListNodes")
	if want := []inventory.KnownNode{nodes[1], nodes[0], nodes[2]}; !sameNodes(list, want) {
		t.Fatalf("ListNodes = %+v\nwant %+v", list, want)
	}
	list, err = s.ListNodes(ctx, 1, 2)
	noErr(t, err, "ListNodes limit")
	if len(list) != 2 || list[0].Addr != "[::1]:8444" {
		t.Fatalf("ListNodes(limit 2) = %+v", list)
	}
	up := nodes[2]
	up.LastSeen, up.Rating, up.Services = base.Add(2*time.Hour), 0.25, 9
	noErr(t, s.UpsertNode(ctx, up), "UpsertNode update")
	list, err = s.ListNodes(ctx, 1, 1)
	noErr(t, err, "ListNodes")
	if !sameNodes(list, []inventory.KnownNode{up}) {
		t.Fatalf("after update ListNodes(1) = %+v", list)
	}
	noErr(t, s.RemoveNode(ctx, "127.0.0.1:8444", 1), "RemoveNode")
	list, err = s.ListNodes(ctx, 1, 10)
	noErr(t, err, "ListNodes")
	if len(list) != 2 {
		t.Fatalf("after RemoveNode: %+v", list)
	}
	list, err = s.ListNodes(ctx, 2, 10)
	noErr(t, err, "ListNodes stream 2")
	if !sameNodes(list, nodes[3:]) {
		t.Fatalf("RemoveNode touched another stream: %+v", list)
	}
}

func sameNodes(a, b []inventory.KnownNode) bool {
	return slices.EqualFunc(a, b, func(x, y inventory.KnownNode) bool {
		return x.Addr == y.Addr && x.Stream == y.Stream && x.Services == y.Services && x.LastSeen.Equal(y.LastSeen) &&
			x.Rating == y.Rating
	})
}

// testClaimObjects: instances share the pending objects by leases; a lease
// ends at processing, a failure, a release or its expiry; processing is a
// checked step; the backlog counts what waits and what was done.
func testClaimObjects(t *testing.T, s mailmap.Store) {
	ctx := context.Background()
	now := time.Now().Truncate(time.Second)
	var objs []inventory.StoredObject
	for i := range byte(6) {
		o := object(60+i, 1, now.Add(time.Hour))
		objs = append(objs, o)
		_, err := s.Put(ctx, o)
		noErr(t, err, "Put")
	}
	hashes := func(os []inventory.StoredObject) []wire.InvHash {
		var out []wire.InvHash
		for _, o := range os {
			out = append(out, o.Hash)
		}
		return out
	}
	_, err := s.ClaimObjects(ctx, "", now, time.Minute, 2)
	wantErr(t, err, mailmap.ErrInvalidName, "ClaimObjects without an owner")

	a, err := s.ClaimObjects(ctx, "A", now, time.Minute, 2)
	noErr(t, err, "ClaimObjects A")
	if want := hashes(objs[:2]); !slices.Equal(hashes(a), want) {
		t.Fatalf("A claimed %x, want %x", hashes(a), want)
	}
	sameObject(t, a[1], objs[1])
	b, err := s.ClaimObjects(ctx, "B", now, time.Minute, 3)
	noErr(t, err, "ClaimObjects B")
	if want := hashes(objs[2:5]); !slices.Equal(hashes(b), want) {
		t.Fatalf("B claimed %x, want %x (not A's)", hashes(b), want)
	}
	bl, err := s.InboundBacklog(ctx, now, time.Minute)
	noErr(t, err, "InboundBacklog")
	if bl.Pending != 6 || bl.Due != 6 || bl.Leased != 5 || bl.Processed != 0 || bl.CatchUp() != -1 {
		t.Fatalf("backlog = %+v (catch-up %v), want 6 pending, 5 leased, none processed", bl, bl.CatchUp())
	}

	// Processing is checked against the lease.
	wantErr(t, s.MarkProcessed(ctx, objs[0].Hash, "B", now), mailmap.ErrConflict, "MarkProcessed by another owner")
	noErr(t, s.MarkProcessed(ctx, objs[0].Hash, "A", now), "MarkProcessed by its owner")
	noErr(t, s.MarkProcessed(ctx, objs[0].Hash, "B", now), "MarkProcessed of a processed object")
	// A failure ends the lease; the object comes back when its retry is due.
	_, _, err = s.ObjectFailed(ctx, objs[1].Hash, "boom", now, func(int) time.Duration { return time.Minute }, 5)
	noErr(t, err, "ObjectFailed")
	if c, _ := s.ClaimObjects(ctx, "C", now, time.Minute, 10); !slices.Equal(hashes(c), hashes(objs[5:])) {
		t.Fatalf("C claimed %x, want only the unleased %x", hashes(c), objs[5].Hash)
	}
	// B shuts down and gives its batch back; C takes it.
	noErr(t, s.ReleaseObjects(ctx, "B"), "ReleaseObjects")
	c, err := s.ClaimObjects(ctx, "C", now, time.Minute, 10)
	noErr(t, err, "ClaimObjects after release")
	if want := hashes(objs[2:5]); !slices.Equal(hashes(c), want) {
		t.Fatalf("C claimed %x after B's release, want %x", hashes(c), want)
	}
	// A dies holding nothing; C's leases run out and D takes everything
	// due: the failed object too, once its retry is due.
	later := now.Add(2 * time.Minute)
	d, err := s.ClaimObjects(ctx, "D", later, time.Minute, 10)
	noErr(t, err, "ClaimObjects after expiry")
	if want := hashes(objs[1:]); !slices.Equal(hashes(d), want) {
		t.Fatalf("D claimed %x after the leases ran out, want %x", hashes(d), want)
	}
	for _, o := range d {
		noErr(t, s.MarkProcessed(ctx, o.Hash, "D", later), "MarkProcessed D")
	}
	bl, err = s.InboundBacklog(ctx, later, 5*time.Minute)
	noErr(t, err, "InboundBacklog")
	if bl.Pending != 0 || bl.Leased != 0 || bl.Processed != 6 || bl.CatchUp() != 0 {
		t.Fatalf("backlog after processing = %+v", bl)
	}
	if bl.Rate() != 6.0/300 {
		t.Fatalf("rate = %v, want %v", bl.Rate(), 6.0/300)
	}
	wantErr(t, s.MarkProcessed(ctx, object(250, 1, now).Hash, "D", now), mailmap.ErrNotFound, "MarkProcessed unknown")

	// A long batch: F renews its lease, so G gets nothing until the
	// renewed lease runs out.
	o := object(70, 1, now.Add(time.Hour))
	_, err = s.Put(ctx, o)
	noErr(t, err, "Put")
	if f, _ := s.ClaimObjects(ctx, "F", later, time.Minute, 10); len(f) != 1 {
		t.Fatalf("F claimed %d objects, want 1", len(f))
	}
	noErr(t, s.RenewObjects(ctx, "F", later.Add(3*time.Minute)), "RenewObjects")
	if g, _ := s.ClaimObjects(ctx, "G", later.Add(2*time.Minute), time.Minute, 10); len(g) != 0 {
		t.Fatalf("G claimed %x under F's renewed lease", hashes(g))
	}
	if g, _ := s.ClaimObjects(ctx, "G", later.Add(4*time.Minute), time.Minute, 10); len(g) != 1 {
		t.Fatalf("G claimed %d objects after F's lease ran out, want 1", len(g))
	}
}
