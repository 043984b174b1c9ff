package gateway

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bmgate/bmgate/bmcore/address"
	"github.com/bmgate/bmgate/bmcore/identity"
	"github.com/bmgate/bmgate/bmcore/inventory"
	"github.com/bmgate/bmgate/bmcore/object"
	"github.com/bmgate/bmgate/bmcore/pow"
	"github.com/bmgate/bmgate/bmcore/wire"
	"github.com/bmgate/bmgate/mailmap"
)

// Folder prefixes for chans and subscriptions.
const (
	ChanFolderPrefix         = "Chans"
	SubscriptionFolderPrefix = "Subscriptions"
)

// ChanFolder is the IMAP folder a chan's posts are filed in.
func ChanFolder(label, addr string) string {
	name := strings.TrimSpace(strings.TrimPrefix(label, "[chan]"))
	if name == "" {
		name = addr
	}
	return ChanFolderPrefix + "/" + folderSafe(name)
}

// SubscriptionFolder is the IMAP folder a subscription's broadcasts go to.
func SubscriptionFolder(label, addr string) string {
	name := strings.TrimSpace(label)
	if name == "" {
		name = addr
	}
	return SubscriptionFolderPrefix + "/" + folderSafe(name)
}

// folderSafe keeps a name to one hierarchy level and printable characters.
func folderSafe(s string) string {
	s = strings.Map(func(r rune) rune {
		switch {
		case r == '/' || r == '*' || r == '%' || r < 0x20 || r == 0x7f:
			return '_'
		}
		return r
	}, s)
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

func (g *Gateway) inboundLoop(ctx context.Context) {
	for {
		n, err := g.inboundOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			g.log.Error("inbound", "err", err)
		}
		if n == 0 || err != nil {
			if !sleep(ctx, g.cfg.PollInterval, g.wakeIn) {
				return
			}
		}
	}
}

// inboundBatch is how many objects one claim takes per inbound worker.
const inboundBatch = 32

// inboundOnce claims a batch of pending inventory objects and processes it.
// Every instance on one database does this on its own batches, so adding
// an instance adds throughput. Within the batch the costly part, trial
// decryption of msg objects against every local identity, runs on
// InboundWorkers cores; the effects (deliveries, acks) are then applied
// one object at a time in arrival order, so each owner's mail is filed in
// the order this instance received it.
//
// An object is marked processed only after everything it caused (mail
// delivered, ack published) is durable. An object whose processing fails
// stays pending with its failure recorded (ObjectFailed): it is tried again
// after a backoff, and set aside after MaxObjectAttempts, while the objects
// after it go on. Deliveries are idempotent per object (DeliverOnce), so a
// retry, or a batch processed again after its lease ran out, files no
// second copy for the owners already served.
func (g *Gateway) inboundOnce(ctx context.Context) (int, error) {
	now := g.cfg.Now()
	objs, err := g.store.ClaimObjects(ctx, g.owner, now, g.cfg.InboundLease, inboundBatch*g.cfg.InboundWorkers)
	if err != nil {
		return 0, fmt.Errorf("claim objects: %w", err)
	}
	if len(objs) == 0 {
		return 0, nil
	}
	finished := false
	defer func() {
		if !finished {
			// Cut short (shutdown, a store fault): what is left of the
			// batch is due again at once, for any instance.
			g.releaseObjects()
		}
	}()
	// The lease is short, so a crashed instance's batch is taken over
	// soon; a heartbeat keeps it while this batch is worked on.
	stop := g.renewObjects(ctx)
	defer stop()
	pre, err := g.decryptBatch(ctx, objs)
	if err != nil {
		return 0, err
	}
	for i, so := range objs {
		if err := g.processObject(ctx, so, pre[i]); err != nil {
			if ctx.Err() != nil {
				// Shutting down: not the object's fault.
				return i, ctx.Err()
			}
			if errors.Is(err, errHeld) {
				if err := g.holdObject(ctx, so, err); err != nil {
					return i, err
				}
				continue
			}
			if err := g.objectFailed(ctx, so, err); err != nil {
				return i, err
			}
			continue
		}
		switch err := g.store.MarkProcessed(ctx, so.Hash, g.owner, g.cfg.Now()); {
		case errors.Is(err, mailmap.ErrConflict):
			// Our lease ran out and another instance took the object: it
			// marks it; what we did was idempotent.
			g.log.Warn("inbound object taken over by another instance", "inv", so.Hash.String())
		case errors.Is(err, mailmap.ErrNotFound):
			// Expired and pruned meanwhile.
		case err != nil:
			return i, fmt.Errorf("mark processed: %w", err)
		}
		g.stats.objects.Add(1)
	}
	finished = true
	return len(objs), nil
}

// renewObjects renews this instance's inbound leases every third of
// InboundLease until the returned stop is called.
func (g *Gateway) renewObjects(ctx context.Context) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(g.cfg.InboundLease / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				if err := g.store.RenewObjects(ctx, g.owner, g.cfg.Now().Add(g.cfg.InboundLease)); err != nil && ctx.Err() == nil {
					g.log.Warn("renew inbound leases", "err", err)
				}
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}

// releaseObjects ends this instance's leases on unprocessed objects.
func (g *Gateway) releaseObjects() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g.store.ReleaseObjects(ctx, g.owner); err != nil {
		g.log.Warn("release inbound objects", "err", err)
	}
}

// decrypted is the outcome of the trial decryption of one msg object,
// done ahead of processing on the worker pool. ids is the identity set it
// was tried against.
type decrypted struct {
	done bool // the object was a msg and was tried
	ids  *identityCache
	msg  *object.Msg
	key  *identity.Identity
	err  error
}

// decryptBatch trial-decrypts the batch's msg objects on InboundWorkers
// goroutines. Decryption only reads the identity snapshot, so the workers
// share it; the result of object i is at index i.
func (g *Gateway) decryptBatch(ctx context.Context, objs []inventory.StoredObject) ([]decrypted, error) {
	out := make([]decrypted, len(objs))
	var todo []int
	for i, so := range objs {
		if so.Type == wire.ObjectMsg {
			todo = append(todo, i)
		}
	}
	if len(todo) == 0 {
		return out, nil
	}
	ids, err := g.identities(ctx)
	if err != nil {
		return nil, err
	}
	if len(ids.keys) == 0 {
		return out, nil
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(g.cfg.InboundWorkers, len(todo)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				j := int(next.Add(1)) - 1
				if j >= len(todo) || ctx.Err() != nil {
					return
				}
				d := &out[todo[j]]
				d.done, d.ids = true, ids
				o, err := wire.DecodeObject(objs[todo[j]].Raw)
				if err != nil {
					d.err = err
					continue
				}
				d.msg, d.key, d.err = object.DecryptMsg(o, ids.keys)
			}
		}()
	}
	wg.Wait()
	return out, ctx.Err()
}

// errHeld marks a processing that cannot finish yet for a reason that is
// nobody's fault (a recipient over quota): the object is held, not counted
// as failing.
var errHeld = errors.New("held")

// holdRetry is how long a held object waits before it is tried again.
const holdRetry = 10 * time.Minute

// holdObject puts an object off for holdRetry. Its ack is not sent: the
// sender learns of the delivery only when it happens (a sender resends an
// unacknowledged msg after its TTL).
func (g *Gateway) holdObject(ctx context.Context, so inventory.StoredObject, cause error) error {
	err := g.store.HoldObject(ctx, so.Hash, cause.Error(), g.cfg.Now().Add(holdRetry))
	switch {
	case errors.Is(err, mailmap.ErrNotFound):
		return nil // expired and pruned meanwhile
	case err != nil:
		return fmt.Errorf("object %s: %w; holding it: %w", so.Hash, cause, err)
	}
	g.log.Warn("inbound object held", "inv", so.Hash.String(), "type", so.Type, "retry_in", holdRetry, "reason", cause)
	return nil
}

// maxObjectBackoff caps the wait before a failed object is tried again.
const maxObjectBackoff = time.Hour

// objectBackoff is the wait after an object's attempts-th failure:
// PollInterval·2^attempts, at most maxObjectBackoff.
func (g *Gateway) objectBackoff(attempts int) time.Duration {
	d := g.cfg.PollInterval
	for range max(attempts, 0) {
		if d >= maxObjectBackoff/2 {
			return maxObjectBackoff
		}
		d *= 2
	}
	return min(d, maxObjectBackoff)
}

// objectFailed records a failed attempt at an object. An error means the
// failure could not be recorded (a store fault): the batch stops there.
func (g *Gateway) objectFailed(ctx context.Context, so inventory.StoredObject, cause error) error {
	now := g.cfg.Now()
	// The backoff grows with the attempts the store counted.
	var retryAt time.Time
	backoff := func(attempts int) time.Duration {
		d := g.objectBackoff(attempts)
		retryAt = now.Add(d)
		return d
	}
	attempts, aside, err := g.store.ObjectFailed(ctx, so.Hash, cause.Error(), now, backoff, g.cfg.MaxObjectAttempts)
	switch {
	case errors.Is(err, mailmap.ErrNotFound):
		return nil // expired and pruned meanwhile
	case err != nil:
		return fmt.Errorf("object %s: %w; recording the failure: %w", so.Hash, cause, err)
	}
	if aside {
		g.log.Error("inbound object set aside after repeated failures", "inv", so.Hash.String(), "type", so.Type,
			"attempts", attempts, "err", cause)
		return nil
	}
	g.log.Warn("inbound object failed; will retry", "inv", so.Hash.String(), "type", so.Type,
		"attempts", attempts, "retry_at", retryAt, "err", cause)
	return nil
}

// processObject does the local processing of one valid object (relaying was
// the node's business and is already done). Objects that are not for us, or
// malformed, return nil: only faults worth a retry return an error.
//
// pre is the object's trial decryption when decryptBatch did it.
func (g *Gateway) processObject(ctx context.Context, so inventory.StoredObject, pre decrypted) error {
	o, err := wire.DecodeObject(so.Raw)
	if err != nil {
		return nil
	}
	// Any object may be an ack: compare everything after nonce and
	// expiresTime with the ack data we wait for (docs/protocol.md §11).
	if ackData, ok := object.AckDataOf(so.Raw); ok {
		it, err := g.store.OutboxByAckData(ctx, ackData)
		switch {
		case err == nil:
			return g.acknowledged(ctx, it)
		case !errors.Is(err, mailmap.ErrNotFound):
			return fmt.Errorf("match ack: %w", err)
		}
	}
	switch o.Type {
	case wire.ObjectGetPubkey:
		return g.handleGetpubkey(ctx, o)
	case wire.ObjectPubkey:
		return g.handlePubkey(ctx, o)
	case wire.ObjectMsg:
		return g.handleMsg(ctx, so, o, pre)
	case wire.ObjectBroadcast:
		return g.handleBroadcast(ctx, so, o)
	}
	return nil
}

// handleGetpubkey answers a request for one of our identities' pubkeys
// (docs/protocol.md §10.1), at most once per pubkey lifetime.
func (g *Gateway) handleGetpubkey(ctx context.Context, o *wire.Object) error {
	if len(o.Raw) > 200 {
		return nil
	}
	gp, err := object.ParseGetpubkey(o)
	if err != nil {
		return nil
	}
	ids, err := g.identities(ctx)
	if err != nil {
		return err
	}
	var i int
	var ok bool
	if o.Version >= 4 {
		i, ok = ids.byTag[gp.Tag]
	} else {
		i, ok = ids.byRipe[gp.Ripe]
	}
	if !ok {
		return nil
	}
	m, id := ids.stored[ids.owners[i][0]], ids.keys[i]
	if m.Kind == mailmap.KindChan || id.Address.Version != o.Version || id.Address.Stream != o.Stream {
		return nil
	}
	if !m.LastPubkeySent.IsZero() && g.cfg.Now().Sub(m.LastPubkeySent) < pubkeyTTL-24*time.Hour {
		return nil // our pubkey is still out there; the asker finds it in its inventory
	}
	return g.publishPubkey(ctx, m)
}

// handlePubkey caches v2/v3 pubkeys as they pass (they carry no tag, so a
// sender cannot find them in the inventory later). v4 pubkeys are found by
// tag when a send needs them; one arriving now wakes the waiting sends.
func (g *Gateway) handlePubkey(ctx context.Context, o *wire.Object) error {
	if o.Version >= 4 {
		g.WakeOutbound()
		return nil
	}
	if o.Version < 2 || len(o.Payload) < 4+64+64 {
		return nil
	}
	ripe := address.RipeFromKeys(o.Payload[4:68], o.Payload[68:132])
	a := address.Address{Version: o.Version, Stream: o.Stream, Ripe: ripe}
	d, err := object.ParsePubkey(o, a)
	if err != nil {
		return nil
	}
	if err := g.cachePubkey(ctx, a, d, "pubkey"); err != nil {
		return err
	}
	g.WakeOutbound()
	return nil
}

// handleMsg trial-decrypts a msg against every local identity (unless pre
// holds that already) and delivers it.
func (g *Gateway) handleMsg(ctx context.Context, so inventory.StoredObject, o *wire.Object, pre decrypted) error {
	ids, m, key, err := pre.ids, pre.msg, pre.key, pre.err
	if !pre.done {
		if ids, err = g.identities(ctx); err != nil {
			return err
		}
		if len(ids.keys) == 0 {
			return nil
		}
		m, key, err = object.DecryptMsg(o, ids.keys)
	}
	if err != nil {
		return nil // not ours, or forged
	}
	i, ok := ids.byAddr[key.Address]
	if !ok {
		return nil
	}
	rcpt := ids.stored[ids.owners[i][0]]
	sender := m.SenderAddress()
	log := g.log.With("inv", so.Hash.String(), "to", rcpt.Address)
	isChan := rcpt.Kind == mailmap.KindChan
	// senderAllowed applies an owner's blacklist or whitelist to the
	// sender (ErrNotFound: the user is gone); answers are kept for the
	// object, as the demand check and the delivery both ask.
	type verdict struct{ allowed, whitelisted bool }
	verdicts := map[int64]verdict{}
	senderAllowed := func(userID int64) (verdict, error) {
		if v, ok := verdicts[userID]; ok {
			return v, nil
		}
		var v verdict
		var err error
		if v.allowed, v.whitelisted, err = g.store.SenderAllowed(ctx, userID, sender.String()); err != nil {
			if errors.Is(err, mailmap.ErrNotFound) {
				return v, err
			}
			return v, fmt.Errorf("check sender lists: %w", err)
		}
		verdicts[userID] = v
		return v, nil
	}
	if !isChan {
		// The recipient's own demanded difficulty, unless the sender is a
		// contact or on the owner's whitelist (docs/protocol.md §6.4;
		// PyBitmessage waives it for an enabled whitelist entry whatever
		// the list mode).
		known, err := g.isContact(ctx, rcpt.UserID, sender.String())
		if err != nil {
			return err
		}
		if !known {
			v, err := senderAllowed(rcpt.UserID)
			if err != nil && !errors.Is(err, mailmap.ErrNotFound) {
				return err
			}
			known = v.whitelisted
		}
		ntpb, extra := g.cfg.Network.Clamp(rcpt.NonceTrialsPerByte, rcpt.ExtraBytes)
		if !known && !pow.Check(so.Raw, g.cfg.Now().Unix(), ntpb, extra) {
			log.Info("msg dropped: proof of work below the address's demand", "from", sender.String())
			return nil
		}
	}
	if err := g.cachePubkey(ctx, sender, m.SenderPubkey(), "msg"); err != nil {
		return err
	}
	if m.Encoding == 0 {
		return nil // IGNORE: not shown, no ack (docs/protocol.md §12)
	}
	// What the sender writes it reads: remember it, so that replies to it
	// may carry threading in encoding 3. A chan's post also says its
	// members' clients include one that writes (and reads) it.
	if err := g.noteEncoding(ctx, sender.String(), m.Encoding); err != nil {
		return err
	}
	if isChan {
		if err := g.noteEncoding(ctx, rcpt.Address, m.Encoding); err != nil {
			return err
		}
	}
	// A chan's post goes to every member; a personal address has one owner.
	// Each owner's blacklist or whitelist applies to their copy, chan
	// posts included, as PyBitmessage applies its lists to every msg.
	var held error
	delivered := 0
	for _, j := range ids.owners[i] {
		owner := ids.stored[j]
		switch v, err := senderAllowed(owner.UserID); {
		case errors.Is(err, mailmap.ErrNotFound):
			continue // the user was deleted meanwhile
		case err != nil:
			return err
		case !v.allowed:
			g.stats.blocked.Add(1)
			log.Info("msg blocked by the user's sender list", "from", sender.String(), "user", owner.UserID)
			continue
		}
		delivered++
		in := Incoming{
			Domain:  g.cfg.Domain,
			From:    sender.String(),
			To:      owner.Address,
			Date:    g.cfg.Now(),
			InvHash: so.Hash,
			Kind:    IncomingMsg,
		}
		g.fillContent(&in, m.Encoding, m.Message)
		if err := g.resolveOwnIDs(ctx, owner.UserID, &in); err != nil {
			return err
		}
		folder := "INBOX"
		if !isChan && in.InReplyTo == "" {
			if err := g.guessThread(ctx, owner, &in); err != nil {
				return err
			}
		}
		if isChan {
			in.Kind = IncomingChan
			in.ChanLabel = owner.Label
			folder = ChanFolder(owner.Label, owner.Address)
		}
		if ok, err := g.deliver(ctx, owner.UserID, folder, in); errors.Is(err, errHeld) {
			held = err // the other members still get theirs now
			continue
		} else if err != nil {
			return err
		} else if ok {
			log.Info("delivered msg", "from", sender.String(), "user", owner.UserID, "folder", folder)
		}
		if !isChan && owner.MailingList {
			if err := g.relayToList(ctx, so, owner, in); errors.Is(err, errHeld) {
				held = err
			} else if err != nil {
				return err
			}
		}
	}
	if held != nil {
		return held // no ack until every copy is filed
	}
	// No ack for a msg every recipient blocked: PyBitmessage sends none
	// for a blocked sender, so the sender sees it undelivered.
	if isChan || len(m.AckPacket) == 0 || delivered == 0 {
		return nil
	}
	return g.sendAck(ctx, m.AckPacket)
}

// mailingListTTL is the TTL of a mailing list's re-broadcast: PyBitmessage
// hard-codes two weeks.
const mailingListTTL = 14 * 24 * time.Hour

// relayToList queues the broadcast a mailing-list address sends of a msg
// it received (PyBitmessage's mailinglist): from the list's address to its
// subscribers, the subject prefixed with [name], the body headed with the
// time and the original sender. It goes through the outbox (proof of work,
// status, retries) and is queued once per received object, keyed by its
// inventory hash, however often the object is processed.
func (g *Gateway) relayToList(ctx context.Context, so inventory.StoredObject, owner mailmap.Identity, in Incoming) error {
	now := g.cfg.Now()
	it := mailmap.OutboxItem{
		UserID:      owner.UserID,
		FromAddress: owner.Address,
		ToAddress:   owner.Address,
		Kind:        mailmap.OutboxBroadcast,
		Subject:     MailingListSubject(in.Subject, owner.MailingListName),
		Body:        MailingListBody(now, in.From, in.Body),
		Encoding:    2,
		State:       mailmap.OutboxQueued,
		NextAttempt: now,
		TTL:         mailingListTTL,
		CreatedAt:   now,
		Notify:      mailmap.NotifyNever, // no report to the owner for each relay
	}
	_, dup, err := g.store.EnqueueOutboxOnce(ctx, owner.UserID, so.Hash[:], []mailmap.OutboxItem{it})
	switch {
	case errors.Is(err, mailmap.ErrRateLimited):
		// The owner's sending rate counts the relays too: wait for room.
		return fmt.Errorf("%w: mailing list %s: %v", errHeld, owner.Address, err)
	case err != nil:
		return fmt.Errorf("queue mailing list broadcast: %w", err)
	case dup:
		return nil
	}
	g.log.Info("mailing list broadcast queued", "inv", so.Hash.String(), "list", owner.Address, "from", in.From, "user", owner.UserID)
	g.WakeOutbound()
	return nil
}

// MailingListSubject is the subject of a mailing list's re-broadcast, as
// PyBitmessage makes it: trimmed, one leading "Re:" or "RE:" dropped, and
// "[name] " put before it unless it already holds "[name]".
func MailingListSubject(subject, name string) string {
	subject = strings.TrimSpace(subject)
	if strings.HasPrefix(subject, "Re:") || strings.HasPrefix(subject, "RE:") {
		subject = strings.TrimSpace(subject[3:])
	}
	if strings.Contains(subject, "["+name+"]") {
		return subject
	}
	return "[" + name + "] " + subject
}

// MailingListBody is the body of a mailing list's re-broadcast, as
// PyBitmessage makes it: the time it was relayed (UTC) and the original
// sender, a blank line, then the message.
func MailingListBody(at time.Time, from, body string) string {
	return at.UTC().Format("Mon, 2006-01-02 15:04:05 UTC") + "   Message ostensibly from " + from + ":\n\n" + body
}

// guessThread threads a reply that carries no threading headers (every
// PyBitmessage reply: it sends encoding 2 with "Re: " before the subject)
// under the message this user last sent to that address with that subject,
// so clients that thread by References show the conversation.
func (g *Gateway) guessThread(ctx context.Context, owner mailmap.Identity, in *Incoming) error {
	subject := strings.TrimSpace(in.Subject)
	orig, ok := cutReplyPrefix(subject)
	if !ok {
		return nil
	}
	// The latest sends to that address are enough: a reply answers a
	// recent message.
	items, err := g.store.OutboxTo(ctx, owner.UserID, owner.Address, in.From, 50)
	if err != nil {
		return fmt.Errorf("find the replied-to message: %w", err)
	}
	for _, it := range items {
		if sent := strings.TrimSpace(it.Subject); (sent == orig || sent == subject) && ValidMsgID(it.MessageID) {
			in.InReplyTo = it.MessageID
			in.References = []string{it.MessageID}
			return nil
		}
	}
	return nil
}

// noteEncoding remembers the highest message encoding seen from an
// address (encodings 1 to 3; others say nothing about what it reads).
func (g *Gateway) noteEncoding(ctx context.Context, addr string, encoding uint64) error {
	if encoding < 1 || encoding > encodingExtended {
		return nil
	}
	if err := g.store.NoteEncoding(ctx, addr, encoding); err != nil {
		return fmt.Errorf("remember the sender's encoding: %w", err)
	}
	return nil
}

// resolveOwnIDs makes threading exact for replies to our own msgs sent
// without a Message-ID in the object (encoding 2): the other side's
// bmgate showed such a msg as <hex(inventory hash)@its domain>, and a
// reply names that id. When it is the inventory hash of a msg this user
// published, the id becomes the Message-ID of the mail it came from, the
// one the user's Sent copy carries.
func (g *Gateway) resolveOwnIDs(ctx context.Context, userID int64, in *Incoming) error {
	cache := map[string]string{}
	resolve := func(id string) (string, error) {
		if r, ok := cache[id]; ok {
			return r, nil
		}
		r := id
		left, _, _ := strings.Cut(id, "@")
		if h, err := hex.DecodeString(left); err == nil && len(h) == 32 {
			it, err := g.store.OutboxByInvHash(ctx, userID, h)
			switch {
			case err == nil && ValidMsgID(it.MessageID):
				r = it.MessageID
			case err != nil && !errors.Is(err, mailmap.ErrNotFound):
				return id, fmt.Errorf("find the replied-to message: %w", err)
			}
		}
		cache[id] = r
		return r, nil
	}
	var err error
	if in.InReplyTo != "" {
		if in.InReplyTo, err = resolve(in.InReplyTo); err != nil {
			return err
		}
	}
	for i, id := range in.References {
		if in.References[i], err = resolve(id); err != nil {
			return err
		}
	}
	return nil
}

// cutReplyPrefix removes one "Re:" (any case) from a subject.
func cutReplyPrefix(subject string) (string, bool) {
	if len(subject) < 3 || !strings.EqualFold(subject[:3], "re:") {
		return subject, false
	}
	return strings.TrimSpace(subject[3:]), true
}

// sendAck publishes the ack object a sender embedded (docs/protocol.md §11). The
// node validates it like any object, so a bogus ack goes nowhere.
func (g *Gateway) sendAck(ctx context.Context, packet []byte) error {
	cmd, payload, err := wire.ReadPacket(bytes.NewReader(packet), g.cfg.Network.Magic)
	if err != nil || cmd != "object" {
		g.log.Debug("embedded ack is not a valid object packet", "err", err)
		return nil
	}
	if _, err := g.cfg.Publisher.Publish(ctx, payload); err != nil {
		if errors.Is(err, context.Canceled) {
			return err
		}
		g.log.Info("embedded ack rejected", "err", err)
	}
	return nil
}

// fillContent decodes a message body into the mail fields. A body that
// cannot be decoded is still delivered, with a note, rather than lost.
func (g *Gateway) fillContent(in *Incoming, encoding uint64, data []byte) {
	c, err := object.DecodeMessage(encoding, data)
	if err != nil {
		in.Subject = "(undecodable Bitmessage)"
		in.Body = fmt.Sprintf("This message used encoding %d and could not be decoded: %v\n", encoding, err)
		return
	}
	in.Subject, in.Body = c.Subject, c.Body
	in.MessageID, in.InReplyTo, in.References = ThreadingFromExtra(c.Extra)
	in.Files, in.Dropped = c.Files, c.Dropped
	in.Body = trimAttachmentNote(in.Body, in.Files)
	// Jabit names the messages it answers by inventory hash ("parents"):
	// the ids a bmgate gives such messages (resolveOwnIDs turns our own
	// into their Message-IDs).
	if in.InReplyTo == "" && len(in.References) == 0 && len(c.Parents) > 0 {
		for _, p := range c.Parents {
			in.References = append(in.References, hex.EncodeToString(p[:])+"@"+in.Domain)
		}
		in.InReplyTo = in.References[len(in.References)-1]
	}
}

// deliver builds the mail and files it in the user's folder, creating the
// folder (chans, subscriptions) when missing. It files at most one copy per
// user and object (keyed by the inventory hash), however often the object
// is processed; it reports whether it filed one now.
func (g *Gateway) deliver(ctx context.Context, userID int64, folder string, in Incoming) (bool, error) {
	raw, err := BuildIncoming(in)
	if err != nil {
		return false, fmt.Errorf("build mail: %w", err)
	}
	mb, err := g.ensureMailbox(ctx, userID, folder)
	if err != nil {
		return false, err
	}
	_, dup, err := g.store.DeliverOnce(ctx, userID, mb.ID, in.InvHash[:], raw, nil, in.Date)
	if err != nil {
		if errors.Is(err, mailmap.ErrOverQuota) {
			// Held, not dropped and not acknowledged: the object is
			// tried again until there is room or it expires.
			return false, fmt.Errorf("%w: user %d is over quota", errHeld, userID)
		}
		return false, fmt.Errorf("deliver: %w", err)
	}
	if dup {
		g.log.Debug("already delivered", "user", userID, "inv", fmt.Sprintf("%x", in.InvHash))
		return false, nil
	}
	g.stats.msgsIn.Add(1)
	return true, nil
}

func (g *Gateway) ensureMailbox(ctx context.Context, userID int64, name string) (mailmap.Mailbox, error) {
	mb, err := g.store.Mailbox(ctx, userID, name)
	if err == nil {
		return mb, nil
	}
	if !errors.Is(err, mailmap.ErrNotFound) {
		return mb, fmt.Errorf("find mailbox: %w", err)
	}
	if err := EnsureFolder(ctx, g.store, userID, name); err != nil {
		return mb, err
	}
	return g.store.Mailbox(ctx, userID, name)
}

// FolderStore is what EnsureFolder needs of the store.
type FolderStore interface {
	CreateMailbox(ctx context.Context, userID int64, name, specialUse string) (mailmap.Mailbox, error)
	SetSubscribed(ctx context.Context, userID int64, name string, on bool) error
}

// EnsureFolder creates a folder bmgate files mail in (a chan's, a
// subscription's) when it is missing, with its parent levels, and
// subscribes it and its parents: Thunderbird lists only subscribed folders
// by default. The chan and subscription commands, the PyBitmessage API and
// delivery all make their folders this way.
func EnsureFolder(ctx context.Context, st FolderStore, userID int64, name string) error {
	if _, err := st.CreateMailbox(ctx, userID, name, ""); err != nil && !errors.Is(err, mailmap.ErrExists) {
		return fmt.Errorf("create folder %s: %w", name, err)
	}
	for n := name; ; {
		if err := st.SetSubscribed(ctx, userID, n, true); err != nil {
			return fmt.Errorf("subscribe folder %s: %w", n, err)
		}
		i := strings.LastIndexByte(n, '/')
		if i < 0 {
			return nil
		}
		n = n[:i]
	}
}

func (g *Gateway) isContact(ctx context.Context, userID int64, bm string) (bool, error) {
	cs, err := g.store.Contacts(ctx, userID)
	if err != nil {
		return false, fmt.Errorf("load contacts: %w", err)
	}
	for _, c := range cs {
		if c.Address == bm {
			return true, nil
		}
	}
	return false, nil
}

// handleBroadcast decrypts broadcasts from subscribed addresses
// (docs/protocol.md §10.4) and files them for every subscriber.
func (g *Gateway) handleBroadcast(ctx context.Context, so inventory.StoredObject, o *wire.Object) error {
	subs, err := g.subscriptions(ctx)
	if err != nil {
		return err
	}
	if len(subs.addrs) == 0 {
		return nil
	}
	b, from, err := object.DecryptBroadcast(o, subs.addrs)
	if err != nil {
		return nil
	}
	if b.Encoding == 0 {
		return nil
	}
	var held error
	if err := g.noteEncoding(ctx, from.String(), b.Encoding); err != nil {
		return err
	}
	for _, s := range subs.subs {
		if s.Address != from.String() {
			continue
		}
		in := Incoming{
			Domain:  g.cfg.Domain,
			From:    from.String(),
			Date:    g.cfg.Now(),
			InvHash: so.Hash,
			Kind:    IncomingBroadcast,
		}
		g.fillContent(&in, b.Encoding, b.Message)
		if err := g.resolveOwnIDs(ctx, s.UserID, &in); err != nil {
			return err
		}
		if ok, err := g.deliver(ctx, s.UserID, SubscriptionFolder(s.Label, s.Address), in); errors.Is(err, errHeld) {
			held = err // the other subscribers still get theirs now
		} else if err != nil {
			return err
		} else if ok {
			g.log.Info("delivered broadcast", "inv", so.Hash.String(), "from", from.String(), "user", s.UserID)
		}
	}
	return held
}

func (g *Gateway) maintenanceLoop(ctx context.Context) {
	for {
		g.maintain(ctx)
		if !sleep(ctx, g.cfg.MaintenanceInterval, nil) {
			return
		}
	}
}

// maintain publishes the pubkeys of identities that have none out there
// (new addresses, or an expiring pubkey) and keeps $Delivered current.
func (g *Gateway) maintain(ctx context.Context) {
	ids, err := g.identities(ctx)
	if err != nil {
		g.log.Error("maintenance", "err", err)
		return
	}
	now := g.cfg.Now()
	for _, m := range ids.stored {
		if ctx.Err() != nil {
			return
		}
		if m.Kind == mailmap.KindChan || !m.PublishPubkey {
			continue
		}
		if !m.LastPubkeySent.IsZero() && now.Sub(m.LastPubkeySent) < pubkeyTTL-48*time.Hour {
			continue
		}
		if err := g.publishPubkey(ctx, m); err != nil && ctx.Err() == nil {
			g.log.Error("publish pubkey", "address", m.Address, "err", err)
		}
	}
	g.markDelivered(ctx)
}
