// Package inventory holds what a Bitmessage node keeps between runs: the
// objects it has validated (StoredObject, through Inventory) and the peers
// it has learned about (KnownNode, through KnownNodes).
//
// bmcore/node uses these interfaces and mailmap implements them over SQL;
// neither needs the other, and both need only this package. It is a leaf:
// it imports only the standard library and bmcore/wire, so that a store can
// implement it without importing the node runtime.
package inventory

import (
	"context"
	"errors"
	"time"

	"github.com/bmgate/bmgate/bmcore/wire"
)

// ErrNotFound is returned by Inventory.Get for an unknown hash.
var ErrNotFound = errors.New("inventory: object not found")

// StoredObject is one validated object as the inventory keeps it.
type StoredObject struct {
	Hash    wire.InvHash
	Type    uint32
	Version uint64
	Stream  uint64
	Expires time.Time // expiresTime of the object
	Tag     []byte    // 32-byte tag for getpubkey v4, pubkey v4, broadcast v5; else nil
	Raw     []byte    // the whole object, nonce first
}

// Inventory is the object store the node needs. mailmap implements it over
// SQL; node.NewMemInventory (tests only) keeps it in memory. Implementations
// must be safe for concurrent use and must have made an object durable
// before Put returns (the node relays only after Put).
type Inventory interface {
	// Has reports whether the object is stored.
	Has(ctx context.Context, h wire.InvHash) (bool, error)
	// Get returns the raw object bytes, or ErrNotFound.
	Get(ctx context.Context, h wire.InvHash) ([]byte, error)
	// Put stores the object; added is false when it was already present.
	Put(ctx context.Context, obj StoredObject) (added bool, err error)
	// Hashes lists the objects of a stream that have not expired at now.
	Hashes(ctx context.Context, stream uint64, now time.Time) ([]wire.InvHash, error)
	// Expire deletes objects whose expiry is before the given time.
	Expire(ctx context.Context, before time.Time) (int, error)
}

// KnownNode is one entry of the persisted known-node list (docs/protocol.md §15).
type KnownNode struct {
	Addr     string // host:port
	Stream   uint64
	Services uint64
	LastSeen time.Time
	Rating   float64 // -1 … 1
}

// KnownNodes persists the peers the node has learned about.
type KnownNodes interface {
	// ListNodes returns up to limit known nodes of the stream, most recently seen first.
	ListNodes(ctx context.Context, stream uint64, limit int) ([]KnownNode, error)
	// UpsertNode inserts or updates a node by Addr and Stream.
	UpsertNode(ctx context.Context, n KnownNode) error
	// RemoveNode forgets a node.
	RemoveNode(ctx context.Context, addr string, stream uint64) error
}
