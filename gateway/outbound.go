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
	// (SPEC.md §5.4).
	getpubkeyTTL = 60 * time.Hour
	// maxTTL caps every TTL (SPEC.md §5.3: 28 days).
	maxTTL = 28 * 24 * time.Hour
	// pubkeyTTL is the lifetime of our own pubkey objects.
	pubkeyTTL = 28 * 24 * time.Hour
	// doesAck is the behaviour bit asking senders to embed an ack (SPEC.md §10).
	doesAck = 1
)

// never is the NextAttempt of rows with nothing left to do.
var never = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)

var claimStates = []mailmap.OutboxState{
	mailmap.OutboxQueued, mailmap.OutboxAwaitingPubkey, mailmap.OutboxDoingPoW, mailmap.OutboxSent,
}

func (g *Gateway) outboundLoop(ctx context.Context) {
	for {
		n, err := g.outboundOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			g.log.Error("outbound", "err", err)
		}
		if n == 0 || err != nil {
			if !sleep(ctx, g.cfg.PollInterval, g.wakeOut) {
				return
			}
		}
	}
}

// outboundOnce claims one due row and works on it.
func (g *Gateway) outboundOnce(ctx context.Context) (int, error) {
	items, err := g.store.ClaimOutbox(ctx, claimStates, g.cfg.Now(), g.cfg.Lease, 1)
	if err != nil {
		return 0, fmt.Errorf("claim outbox: %w", err)
	}
	for _, it := range items {
		if err := g.process(ctx, it); err != nil {
			if ctx.Err() != nil || errors.Is(err, errStale) {
				continue
			}
			// A temporary fault (store, node): try again after a pause.
			g.log.Warn("outbound step failed; will retry", "outbox", it.ID, "err", err)
			it.LastError = err.Error()
			it.NextAttempt = g.cfg.Now().Add(g.cfg.PollInterval * 6)
			if uerr := g.store.UpdateOutbox(ctx, it); uerr != nil {
				g.log.Error("update outbox", "outbox", it.ID, "err", uerr)
			}
		}
	}
	return len(items), nil
}

// permanentError is a send failure that no retry will fix.
type permanentError struct {
	status string // RFC 3463 status, 5.x.x
	reason string // for a person
}

func (e *permanentError) Error() string { return e.reason }

func permanent(status, reason string) error { return &permanentError{status: status, reason: reason} }

func (g *Gateway) process(ctx context.Context, it mailmap.OutboxItem) error {
	var err error
	switch it.Kind {
	case mailmap.OutboxBroadcast:
		err = g.sendBroadcast(ctx, it)
	case mailmap.OutboxChan, mailmap.OutboxMsg:
		err = g.sendMsg(ctx, it)
	default:
		err = permanent("5.3.0", fmt.Sprintf("unknown outbox kind %q", it.Kind))
	}
	var perr *permanentError
	if errors.As(err, &perr) {
		return g.fail(ctx, it, perr.status, perr.reason)
	}
	return err
}

// sender returns the protocol keys of the row's sending identity.
func (g *Gateway) sender(ctx context.Context, it mailmap.OutboxItem) (*identity.Identity, error) {
	ids, err := g.identities(ctx)
	if err != nil {
		return nil, err
	}
	a, err := address.Decode(it.FromAddress)
	if err != nil {
		return nil, permanent("5.1.7", fmt.Sprintf("the sending address %s is invalid: %v", it.FromAddress, err))
	}
	i, ok := ids.byAddr[a]
	if ok {
		_, ok = ids.owner(i, it.UserID)
	}
	if !ok {
		return nil, permanent("5.1.7", fmt.Sprintf("the sending identity %s no longer exists", it.FromAddress))
	}
	return ids.keys[i], nil
}

func (g *Gateway) sendBroadcast(ctx context.Context, it mailmap.OutboxItem) error {
	if it.State == mailmap.OutboxSent {
		return g.finish(ctx, it)
	}
	id, err := g.sender(ctx, it)
	if err != nil {
		return err
	}
	msg, err := contentOf(it)
	if err != nil {
		return permanent("5.6.0", err.Error())
	}
	expires := uint64(g.cfg.Now().Unix() + int64(it.TTL/time.Second) + g.jitter())
	headless, err := object.BuildBroadcast(id, object.MsgContent{Encoding: it.Encoding, Message: msg}, expires, g.cfg.Rand)
	if err != nil {
		return permanent("5.6.0", fmt.Sprintf("cannot build the broadcast: %v", err))
	}
	obj, err := g.powWithLease(ctx, &it, headless, 0, 0)
	if err != nil {
		return err
	}
	return g.published(ctx, it, obj, false)
}

// sendMsg sends (or resends) a msg to a person or a chan.
func (g *Gateway) sendMsg(ctx context.Context, it mailmap.OutboxItem) error {
	now := g.cfg.Now()
	if it.State == mailmap.OutboxSent {
		if len(it.AckData) == 0 {
			return g.finish(ctx, it)
		}
		// No ack within the TTL: resend with a doubled TTL, as PyBitmessage does.
		if now.Sub(it.CreatedAt) > g.cfg.AckGiveUp {
			return permanent("5.4.7", fmt.Sprintf("no acknowledgement from %s after %d attempts over %s; the recipient's node may be offline for good", it.ToAddress, it.Attempts, roundDuration(now.Sub(it.CreatedAt))))
		}
		it.TTL = min(it.TTL*2, maxTTL)
		if g.wants(ctx, it, mailmap.NotifyDelay) && !it.DelayReported {
			if err := g.report(ctx, it, "delayed", "4.4.7", "", now.Add(it.TTL*11/10)); err != nil {
				return err
			}
			it.DelayReported = true
		}
	}
	id, err := g.sender(ctx, it)
	if err != nil {
		return err
	}
	to, err := address.Decode(it.ToAddress)
	if err != nil {
		return permanent("5.1.3", fmt.Sprintf("the recipient address %s is invalid: %v", it.ToAddress, err))
	}
	pk, found, err := g.recipientKey(ctx, to)
	if err != nil {
		return err
	}
	if !found {
		return g.awaitPubkey(ctx, it, to)
	}
	ntpb, extra := g.cfg.Network.Clamp(pk.NonceTrialsPerByte, pk.ExtraBytes)
	if it.Kind == mailmap.OutboxChan {
		// Chan members check msgs against the network minimum only (SPEC.md §6.4).
		ntpb, extra = g.cfg.Network.NonceTrialsPerByte, g.cfg.Network.ExtraBytes
	}
	if ntpb > g.cfg.MaxNonceTrialsPerByte || extra > g.cfg.MaxExtraBytes {
		return permanent("5.7.0", fmt.Sprintf("the recipient %s demands a proof of work difficulty of %d/%d, over this server's limit of %d/%d", it.ToAddress, ntpb, extra, g.cfg.MaxNonceTrialsPerByte, g.cfg.MaxExtraBytes))
	}
	if it.State == mailmap.OutboxAwaitingPubkey {
		it.Attempts = 0 // it counted getpubkey requests; from here it counts sends
	}
	msg, err := contentOf(it)
	if err != nil {
		return permanent("5.6.0", err.Error())
	}
	content := object.MsgContent{Encoding: it.Encoding, Message: msg}
	// No ack for chans (SPEC.md §11) or recipients that do not ask for one.
	wantAck := it.Kind == mailmap.OutboxMsg && pk.Bitfield&doesAck != 0
	if wantAck {
		if len(it.AckData) == 0 {
			if it.AckData = object.NewAckData(to.Stream, g.cfg.Rand); it.AckData == nil {
				return errors.New("no randomness for the ack data")
			}
		}
		ackExpires := uint64(now.Unix() + int64(ackTTL(it.TTL)/time.Second) + g.jitter())
		ackHeadless := object.BuildAck(it.AckData, ackExpires)
		ack, err := g.solve(ctx, 0, ackHeadless, g.target(ackHeadless, 0, 0))
		if err != nil {
			return err
		}
		content.AckPacket = wire.EncodePacket(g.cfg.Network.Magic, "object", ack)
	} else {
		it.AckData = nil
	}
	expires := uint64(now.Unix() + int64(it.TTL/time.Second) + g.jitter())
	headless, err := object.BuildMsg(id, pk, to, content, expires, g.cfg.Rand)
	if err != nil {
		return permanent("5.6.0", fmt.Sprintf("cannot build the message: %v", err))
	}
	obj, err := g.powWithLease(ctx, &it, headless, ntpb, extra)
	if err != nil {
		return err
	}
	return g.published(ctx, it, obj, wantAck)
}

// ackTTL is the lifetime of the embedded ack for a msg TTL (SPEC.md §5.4).
func ackTTL(msgTTL time.Duration) time.Duration {
	switch {
	case msgTTL < 24*time.Hour:
		return 24 * time.Hour
	case msgTTL < 7*24*time.Hour:
		return 7 * 24 * time.Hour
	default:
		return 28 * 24 * time.Hour
	}
}

// powWithLease marks the row doing_pow, solves with a heartbeat that keeps
// the row's lease, and re-reads the row before returning so an ack that
// arrived meanwhile is not overwritten (errStale).
func (g *Gateway) powWithLease(ctx context.Context, it *mailmap.OutboxItem, headless []byte, ntpb, extra uint64) ([]byte, error) {
	it.State = mailmap.OutboxDoingPoW
	it.NextAttempt = g.cfg.Now().Add(g.cfg.Lease)
	if err := g.store.UpdateOutbox(ctx, *it); err != nil {
		return nil, fmt.Errorf("mark doing pow: %w", err)
	}
	powCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	hbDone := make(chan struct{})
	go func() {
		defer close(hbDone)
		t := time.NewTicker(g.cfg.Lease / 3)
		defer t.Stop()
		for {
			select {
			case <-powCtx.Done():
				return
			case <-t.C:
				cur, err := g.store.OutboxItem(powCtx, it.ID)
				if err != nil {
					continue
				}
				if cur.State != mailmap.OutboxDoingPoW {
					cancel() // acked or failed meanwhile: stop working
					return
				}
				cur.NextAttempt = g.cfg.Now().Add(g.cfg.Lease)
				_ = g.store.UpdateOutbox(powCtx, cur)
			}
		}
	}()
	start := time.Now()
	obj, err := g.solve(powCtx, it.ID, headless, g.target(headless, ntpb, extra))
	cancel()
	<-hbDone
	it.PoWDuration += time.Since(start)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	cur, rerr := g.store.OutboxItem(ctx, it.ID)
	if rerr != nil {
		return nil, fmt.Errorf("re-read outbox: %w", rerr)
	}
	if cur.State != mailmap.OutboxDoingPoW {
		return nil, errStale
	}
	if err != nil {
		return nil, err
	}
	return obj, nil
}

// errStale means the row changed under us (an ack arrived): drop the work.
var errStale = errors.New("outbox row changed during proof of work")

// published records a publication and decides what comes next.
func (g *Gateway) published(ctx context.Context, it mailmap.OutboxItem, obj []byte, wantAck bool) error {
	h, err := g.cfg.Publisher.Publish(ctx, obj)
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	g.stats.msgsOut.Add(1)
	now := g.cfg.Now()
	it.InvHash = h[:]
	it.State = mailmap.OutboxSent
	it.Attempts++
	it.SentAt = now
	it.LastError = ""
	g.log.Info("published", "outbox", it.ID, "kind", it.Kind, "to", it.ToAddress, "inv", h.String(), "attempt", it.Attempts)
	if wantAck {
		// Resend when the TTL has passed with 10 % slack (SPEC.md §5.4).
		it.NextAttempt = now.Add(it.TTL * 11 / 10)
		return g.store.UpdateOutbox(ctx, it)
	}
	return g.finish(ctx, it)
}

// finish ends a row that expects no ack: chans, broadcasts and recipients
// that do not ack get a "relayed" report when success was asked.
func (g *Gateway) finish(ctx context.Context, it mailmap.OutboxItem) error {
	if !it.Reported && g.wants(ctx, it, mailmap.NotifySuccess) {
		if err := g.report(ctx, it, "relayed", "2.0.0", "", time.Time{}); err != nil {
			return err
		}
	}
	it.Reported = true
	it.NextAttempt = never
	return g.store.UpdateOutbox(ctx, it)
}

// fail ends a row with a permanent failure and bounces it when wanted.
func (g *Gateway) fail(ctx context.Context, it mailmap.OutboxItem, status, reason string) error {
	g.log.Warn("send failed", "outbox", it.ID, "to", it.ToAddress, "reason", reason)
	if !it.Reported && g.wants(ctx, it, mailmap.NotifyFailure) {
		if err := g.report(ctx, it, "failed", status, reason, time.Time{}); err != nil {
			return err
		}
	}
	it.State = mailmap.OutboxFailed
	it.LastError = reason
	it.Reported = true
	it.NextAttempt = never
	return g.store.UpdateOutbox(ctx, it)
}

// recipientKey finds the recipient's public keys: a local identity (another
// user here, or a chan), the pubkey cache, or a pubkey object already in the
// inventory.
func (g *Gateway) recipientKey(ctx context.Context, to address.Address) (pk object.PubkeyData, found bool, err error) {
	ids, err := g.identities(ctx)
	if err != nil {
		return pk, false, err
	}
	if i, ok := ids.byAddr[to]; ok {
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

// awaitPubkey asks the network for the recipient's pubkey (again, when the
// previous request's TTL has passed) and parks the row until it comes.
// While waiting, Attempts counts getpubkey requests.
func (g *Gateway) awaitPubkey(ctx context.Context, it mailmap.OutboxItem, to address.Address) error {
	now := g.cfg.Now()
	if now.Sub(it.CreatedAt) > g.cfg.PubkeyGiveUp {
		return permanent("5.4.4", fmt.Sprintf("the public key of %s never arrived after %s of asking the network; the address may be unused or its owner offline", it.ToAddress, roundDuration(now.Sub(it.CreatedAt))))
	}
	if it.State != mailmap.OutboxAwaitingPubkey {
		it.Attempts = 0
		it.SentAt = time.Time{}
	}
	// The previous request's TTL decides when to ask again; each request
	// doubles it (SPEC.md §5.4).
	prevTTL := min(getpubkeyTTL<<min(max(it.Attempts-1, 0), 8), maxTTL)
	if it.SentAt.IsZero() || now.After(it.SentAt.Add(prevTTL*11/10)) {
		ttl := min(getpubkeyTTL<<min(it.Attempts, 8), maxTTL)
		expires := uint64(now.Unix() + int64(ttl/time.Second) + g.jitter())
		headless := object.BuildGetpubkey(to, expires)
		obj, err := g.solve(ctx, 0, headless, g.target(headless, 0, 0))
		if err != nil {
			return err
		}
		if _, err := g.cfg.Publisher.Publish(ctx, obj); err != nil {
			return fmt.Errorf("publish getpubkey: %w", err)
		}
		g.log.Info("asked for pubkey", "outbox", it.ID, "address", it.ToAddress)
		it.Attempts++
		it.SentAt = now
	}
	it.State = mailmap.OutboxAwaitingPubkey
	it.NextAttempt = now.Add(g.cfg.PubkeyPoll)
	return g.store.UpdateOutbox(ctx, it)
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
