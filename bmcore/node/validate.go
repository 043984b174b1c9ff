package node

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/bmgate/bmgate/bmcore/inventory"
	"github.com/bmgate/bmgate/bmcore/params"
	"github.com/bmgate/bmgate/bmcore/pow"
	"github.com/bmgate/bmgate/bmcore/wire"
)

// Object acceptance limits (docs/protocol.md §5.3 step 3).
const (
	// MaxExpiresAhead is how far in the future expiresTime may lie: 28 days + 3 h.
	MaxExpiresAhead = 28*24*time.Hour + 3*time.Hour
	// MaxExpiredAge is how long ago an object may have expired and still be accepted.
	MaxExpiredAge = time.Hour
	// Retention is how long an object is kept after it expired (docs/protocol.md §5.4).
	Retention = 3 * time.Hour
)

// Reasons an object is refused. Each wraps ErrInvalidObject.
var (
	ErrInvalidObject      = errors.New("node: invalid object")
	ErrMalformedObject    = fmt.Errorf("%w: malformed", ErrInvalidObject)
	ErrInsufficientPoW    = fmt.Errorf("%w: insufficient proof of work", ErrInvalidObject)
	ErrObjectExpired      = fmt.Errorf("%w: expired", ErrInvalidObject)
	ErrObjectTooFarFuture = fmt.Errorf("%w: expires too far in the future", ErrInvalidObject)
	ErrWrongStream        = fmt.Errorf("%w: not in our streams", ErrInvalidObject)
	ErrObjectTooLarge     = fmt.Errorf("%w: larger than 2^18 bytes", ErrInvalidObject)
)

// CheckObject applies the generic acceptance checks of docs/protocol.md §5.3 to a
// received object (nonce first): minimal header var_ints and the payload cap
// (steps 0–1), expiry (3), stream (5) and proof of work at the network
// minimum (2, last because it is the expensive one). Type sanity (step 6)
// only affects local processing and is not checked: unknown types and
// versions are stored and relayed.
func CheckObject(raw []byte, now time.Time, net *params.Network, streams []uint64) (*wire.Object, error) {
	obj, err := wire.DecodeObject(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformedObject, err)
	}
	// expiresTime is a uint64: compare without overflowing int64.
	unix := now.Unix()
	switch exp := obj.ExpiresTime; {
	case exp > uint64(max(unix, 0))+uint64(MaxExpiresAhead/time.Second):
		return nil, fmt.Errorf("%w: expires %d, now %d", ErrObjectTooFarFuture, exp, unix)
	case int64(exp) < unix-int64(MaxExpiredAge/time.Second):
		return nil, fmt.Errorf("%w: expired at %d, now %d", ErrObjectExpired, exp, unix)
	}
	if obj.Stream < 1 || obj.Stream > 1<<63-1 || !slices.Contains(streams, obj.Stream) {
		return nil, fmt.Errorf("%w: stream %d", ErrWrongStream, obj.Stream)
	}
	if !pow.Check(raw, unix, net.NonceTrialsPerByte, net.ExtraBytes) {
		return nil, ErrInsufficientPoW
	}
	return obj, nil
}

// storedObject builds the inventory record of a checked object. The tag is
// the first 32 payload bytes of getpubkey v4, pubkey v4 and broadcast v5
// objects (docs/protocol.md §7.4, §10), which PyB stores for look-ups by tag.
func storedObject(obj *wire.Object) inventory.StoredObject {
	so := inventory.StoredObject{
		Hash:    obj.InvHash(),
		Type:    obj.Type,
		Version: obj.Version,
		Stream:  obj.Stream,
		Expires: time.Unix(int64(min(obj.ExpiresTime, 1<<62)), 0),
		Raw:     obj.Raw,
	}
	hasTag := (obj.Type == wire.ObjectGetPubkey && obj.Version >= 4) ||
		(obj.Type == wire.ObjectPubkey && obj.Version >= 4) ||
		(obj.Type == wire.ObjectBroadcast && obj.Version >= 5)
	if hasTag && len(obj.Payload) >= 32 {
		so.Tag = append([]byte(nil), obj.Payload[:32]...)
	}
	return so
}
