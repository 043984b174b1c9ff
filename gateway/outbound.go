package gateway

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/bmgate/bmgate/bmcore/address"
	"github.com/bmgate/bmgate/bmcore/identity"
	"github.com/bmgate/bmgate/bmcore/object"
	"github.com/bmgate/bmgate/bmcore/wire"
	"github.com/bmgate/bmgate/mailmap"
)

const (
	// getpubkeyTTL is the base TTL of a getpubkey; each resend doubles it
	// (docs/protocol.md §5.4).
	getpubkeyTTL = 60 * time.Hour
	// maxTTL caps every TTL (docs/protocol.md §5.3: 28 days).
	maxTTL = 28 * 24 * time.Hour
	// pubkeyTTL is the lifetime of our own pubkey objects.
	pubkeyTTL = 28 * 24 * time.Hour
	// doesAck is the behaviour bit asking senders to embed an ack
	// (docs/protocol.md §10); bmcore/identity owns it, and
	// object.PubkeyData.DoesAck tests it.
	doesAck = identity.BitfieldDoesAck
)

// permanentError is a send failure that no retry will fix.
type permanentError struct {
	status DSNStatus // class 5
	reason string    // for a person
}

func (e *permanentError) Error() string { return e.reason }

func permanent(status DSNStatus, reason string) error {
	return &permanentError{status: status, reason: reason}
}

// sender returns the protocol keys of the row's sending identity.
func (g *Gateway) sender(ctx context.Context, it mailmap.OutboxItem) (*identity.Identity, error) {
	a, err := address.Decode(it.FromAddress)
	if err != nil {
		return nil, permanent(StatusBadSender, fmt.Sprintf("the sending address %s is invalid: %v", it.FromAddress, err))
	}
	// A miss is checked against the database before it is final: the
	// identity may have been added by another process a moment ago.
	ids, i, ok, err := g.localKeyOf(ctx, a, it.UserID)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, permanent(StatusBadSender, fmt.Sprintf("the sending identity %s no longer exists", it.FromAddress))
	}
	return ids.keys[i], nil
}

// ackTTL is the lifetime of the embedded ack for a msg TTL: the buckets
// of object.AckTTL (docs/protocol.md §5.4), which works in whole seconds.
// The thresholds are whole seconds, so dropping a fraction of the msg TTL
// never moves it to another bucket.
func ackTTL(msgTTL time.Duration) time.Duration {
	return time.Duration(object.AckTTL(int64(msgTTL/time.Second))) * time.Second
}

// recipientKey finds the recipient's public keys: a local identity (another
// user here, or a chan), the pubkey cache, or a pubkey object already in the
// inventory.
func (g *Gateway) recipientKey(ctx context.Context, to address.Address) (pk object.PubkeyData, found bool, err error) {
	ids, i, ok, err := g.localKey(ctx, to)
	if err != nil {
		return pk, false, err
	}
	if ok {
		id, m := ids.keys[i], ids.stored[ids.owners[i][0]]
		pk = object.PubkeyData{Version: to.Version, Stream: to.Stream, NonceTrialsPerByte: max(m.NonceTrialsPerByte, 1), ExtraBytes: max(m.ExtraBytes, 1)}
		if m.Kind != mailmap.KindChan {
			pk.Bitfield = doesAck
		}
		copy(pk.SigningKey[:], id.PublicSigning())
		copy(pk.EncryptionKey[:], id.PublicEncryption())
		return pk, true, nil
	}
	c, err := g.store.Pubkey(ctx, to.String())
	switch {
	case err == nil:
		return pubkeyData(c), true, nil
	case !errors.Is(err, mailmap.ErrNotFound):
		return pk, false, fmt.Errorf("pubkey cache: %w", err)
	}
	if to.Version < 4 {
		return pk, false, nil // v2/v3 pubkeys are cached by the dispatcher as they pass
	}
	tag := to.Tag()
	objs, err := g.store.ObjectsByTag(ctx, wire.ObjectPubkey, tag[:], g.cfg.Now())
	if err != nil {
		return pk, false, fmt.Errorf("inventory by tag: %w", err)
	}
	for _, so := range objs {
		o, err := wire.DecodeObject(so.Raw)
		if err != nil {
			continue
		}
		d, err := object.ParsePubkey(o, to)
		if err != nil {
			g.log.Debug("pubkey object does not verify", "address", to.String(), "err", err)
			continue
		}
		if err := g.cachePubkey(ctx, to, d, "pubkey"); err != nil {
			return pk, false, err
		}
		return d, true, nil
	}
	return pk, false, nil
}

func pubkeyData(c mailmap.Pubkey) object.PubkeyData {
	d := object.PubkeyData{Version: c.Version, Stream: c.Stream, Bitfield: c.Bitfield, NonceTrialsPerByte: c.NonceTrialsPerByte, ExtraBytes: c.ExtraBytes}
	copy(d.SigningKey[:], c.SigningKey)
	copy(d.EncryptionKey[:], c.EncryptionKey)
	return d
}

func (g *Gateway) cachePubkey(ctx context.Context, a address.Address, d object.PubkeyData, source string) error {
	err := g.store.PutPubkey(ctx, mailmap.Pubkey{
		Address: a.String(), Version: d.Version, Stream: d.Stream, Bitfield: d.Bitfield,
		SigningKey: d.SigningKey[:], EncryptionKey: d.EncryptionKey[:],
		NonceTrialsPerByte: d.NonceTrialsPerByte, ExtraBytes: d.ExtraBytes,
		Source: source, LearnedAt: g.cfg.Now(),
	})
	if err != nil {
		return fmt.Errorf("cache pubkey: %w", err)
	}
	return nil
}

// wants reports whether a report of that kind goes to the sender (RFC 3461
// §4.1: no NOTIFY means FAILURE; the per-user setting adds SUCCESS then).
func (g *Gateway) wants(ctx context.Context, it mailmap.OutboxItem, bit int) bool {
	if it.Notify&mailmap.NotifyNever != 0 {
		return false
	}
	if it.Notify != 0 {
		return it.Notify&bit != 0
	}
	switch bit {
	case mailmap.NotifyFailure:
		return true
	case mailmap.NotifySuccess:
		u, err := g.store.User(ctx, it.UserID)
		return err == nil && u.DeliveryReports
	}
	return false
}

func roundDuration(d time.Duration) time.Duration {
	if d > time.Hour {
		return d.Round(time.Minute)
	}
	return d.Round(time.Second)
}
