package gateway

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/bmgate/bmgate/bmcore/address"
	"github.com/bmgate/bmgate/bmcore/identity"
	"github.com/bmgate/bmgate/bmcore/object"
	"github.com/bmgate/bmgate/bmcore/pow"
	"github.com/bmgate/bmgate/bmcore/wire"
	"github.com/bmgate/bmgate/mailmap"
)

// The outbound pipeline. Every write to an outbox row is a checked
// transition (mailmap.OutboxStep): the worker that claimed a row writes only
// while it still holds the lease and the row is in the state it read, and an
// ack, which may arrive at any time, moves the row to acked whatever the
// worker is doing. Proof of work is not done here: a row that needs it moves
// to doing_pow together with a durable job (powsched.go), and the job's
// completion publishes and moves the row on.
//
//	queued/awaiting_pubkey ──(no pubkey)──> awaiting_pubkey (getpubkey job)
//	queued/awaiting_pubkey ──> doing_pow [ack job] ──> doing_pow [msg job] ──> sent ──> acked
//	sent (no ack within the TTL) ──> doing_pow (resend, doubled TTL)
//	any state but acked ──> failed (permanent error)

// never is the NextAttempt of rows with nothing left to do.
var never = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)

// claimStates are the states in which a row may be due for the worker.
var claimStates = []mailmap.OutboxState{
	mailmap.OutboxQueued, mailmap.OutboxAwaitingPubkey, mailmap.OutboxDoingPoW, mailmap.OutboxSent,
}

// openStates are the states before acked or failed.
var openStates = claimStates

// Job priorities: requests that unblock someone else's mail come first.
const (
	priorityMail   = 1 // msg, ack, broadcast
	priorityLookup = 2 // getpubkey (cheap, and a send waits for it)
	priorityAnswer = 3 // our pubkey, which another node is waiting for
)

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

// outboundOnce claims one due row and moves it on.
func (g *Gateway) outboundOnce(ctx context.Context) (int, error) {
	items, err := g.store.ClaimOutbox(ctx, claimStates, g.cfg.Now(), g.cfg.Lease, 1, g.owner)
	if err != nil {
		return 0, fmt.Errorf("claim outbox: %w", err)
	}
	for _, it := range items {
		err := g.process(ctx, it)
		switch {
		case err == nil, ctx.Err() != nil:
		case errors.Is(err, mailmap.ErrConflict):
			// An ack, another worker or an operator moved the row first.
			g.log.Debug("outbox row changed meanwhile", "outbox", it.ID)
		default:
			// A temporary fault (store, node): try again after a pause.
			g.log.Warn("outbound step failed; will retry", "outbox", it.ID, "err", err)
			msg, next := err.Error(), g.cfg.Now().Add(g.cfg.PollInterval*6)
			_, uerr := g.store.TransitionOutbox(ctx, mailmap.OutboxStep{
				ID: it.ID, From: []mailmap.OutboxState{it.State}, Owner: g.owner, To: it.State,
				LastError: &msg, NextAttempt: &next, KeepJob: true,
			})
			if uerr != nil && !errors.Is(uerr, mailmap.ErrConflict) {
				g.log.Error("update outbox", "outbox", it.ID, "err", uerr)
			}
		}
	}
	return len(items), nil
}

func (g *Gateway) process(ctx context.Context, it mailmap.OutboxItem) error {
	var err error
	switch it.Kind {
	case mailmap.OutboxBroadcast:
		err = g.sendBroadcast(ctx, it)
	case mailmap.OutboxChan, mailmap.OutboxMsg:
		err = g.sendMsg(ctx, it)
	default:
		err = permanent(StatusLocalError, fmt.Sprintf("unknown outbox kind %q", it.Kind))
	}
	var perr *permanentError
	if errors.As(err, &perr) {
		return g.fail(ctx, it, perr.status, perr.reason)
	}
	return err
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
		return permanent(StatusContent, err.Error())
	}
	expires := uint64(g.cfg.Now().Unix() + int64(it.TTL/time.Second) + g.jitter())
	headless, err := object.BuildBroadcast(id, object.MsgContent{Encoding: it.Encoding, Message: msg}, expires, g.cfg.Rand)
	if err != nil {
		return permanent(StatusContent, fmt.Sprintf("cannot build the broadcast: %v", err))
	}
	return g.startPoW(ctx, it, mailmap.OutboxStep{}, g.newJob("broadcast", priorityMail, true, headless, 0, 0))
}

// sendMsg sends (or resends) a msg to a person or a chan: it finds the
// recipient's key and queues the first proof of work (the embedded ack's
// when an ack is wanted, else the msg's).
func (g *Gateway) sendMsg(ctx context.Context, it mailmap.OutboxItem) error {
	now := g.cfg.Now()
	var step mailmap.OutboxStep
	switch it.State {
	case mailmap.OutboxSent:
		if len(it.AckData) == 0 {
			return g.finish(ctx, it)
		}
		// No ack within the TTL: resend with a doubled TTL, as PyBitmessage does.
		if now.Sub(it.CreatedAt) > g.cfg.AckGiveUp {
			return permanent(StatusAckTimeout, fmt.Sprintf("no acknowledgement from %s after %d attempts over %s; the recipient's node may be offline for good", it.ToAddress, it.Attempts, roundDuration(now.Sub(it.CreatedAt))))
		}
		it.TTL = min(it.TTL*2, maxTTL)
		if !it.DelayReported && g.wants(ctx, it, mailmap.NotifyDelay) {
			raw, err := g.buildReport(it, ActionDelayed, StatusAckPending, "", now.Add(it.TTL*11/10))
			if err != nil {
				return err
			}
			step.Report = &mailmap.OutboxReport{Raw: raw, Delay: true}
		}
	case mailmap.OutboxDoingPoW:
		if it.PoWJob != 0 {
			return g.ackSolved(ctx, it)
		}
		// The row lost its job (it cannot in one transaction, but a row
		// from an older version may): start over.
	}
	k, found, err := g.msgKeys(ctx, it)
	if err != nil {
		return err
	}
	if !found {
		return g.awaitPubkey(ctx, it, k.to)
	}
	id, to, pk, ntpb, extra := k.sender, k.to, k.pk, k.ntpb, k.extra
	if it.State == mailmap.OutboxAwaitingPubkey {
		zero := 0 // it counted getpubkey requests; from here it counts sends
		step.Attempts = &zero
	}
	step.TTL = &it.TTL
	// No ack for chans (docs/protocol.md §11) or recipients that do not ask for one.
	if it.Kind == mailmap.OutboxMsg && pk.Bitfield&doesAck != 0 {
		ackData := it.AckData
		if len(ackData) == 0 {
			if ackData = object.NewAckData(to.Stream, g.cfg.Rand); ackData == nil {
				return errors.New("no randomness for the ack data")
			}
		}
		step.AckData = &ackData
		ackExpires := uint64(now.Unix() + int64(ackTTL(it.TTL)/time.Second) + g.jitter())
		return g.startPoW(ctx, it, step, g.newJob("ack", priorityMail, false, object.BuildAck(ackData, ackExpires), 0, 0))
	}
	none := []byte{}
	step.AckData = &none
	headless, err := g.buildMsg(it, id, pk, to, nil)
	if err != nil {
		return err
	}
	return g.startPoW(ctx, it, step, g.newJob("msg", priorityMail, true, headless, ntpb, extra))
}

// msgKeys are what building a msg needs: the sender's keys, the
// recipient's address and public keys, and the difficulty to meet.
type msgKeys struct {
	sender      *identity.Identity
	to          address.Address
	pk          object.PubkeyData
	ntpb, extra uint64
}

// msgKeys finds the keys of a msg row; found is false (with k.to set) when
// the recipient's pubkey is not known yet.
func (g *Gateway) msgKeys(ctx context.Context, it mailmap.OutboxItem) (k msgKeys, found bool, err error) {
	if k.sender, err = g.sender(ctx, it); err != nil {
		return k, false, err
	}
	if k.to, err = address.Decode(it.ToAddress); err != nil {
		return k, false, permanent(StatusBadAddress, fmt.Sprintf("the recipient address %s is invalid: %v", it.ToAddress, err))
	}
	if k.pk, found, err = g.recipientKey(ctx, k.to); err != nil || !found {
		return k, false, err
	}
	if k.ntpb, k.extra, err = g.difficulty(it, k.pk); err != nil {
		return k, false, err
	}
	return k, true, nil
}

// difficulty is the proof of work a msg to that recipient needs.
func (g *Gateway) difficulty(it mailmap.OutboxItem, pk object.PubkeyData) (ntpb, extra uint64, err error) {
	ntpb, extra = g.cfg.Network.Clamp(pk.NonceTrialsPerByte, pk.ExtraBytes)
	if it.Kind == mailmap.OutboxChan {
		// Chan members check msgs against the network minimum only (docs/protocol.md §6.4).
		ntpb, extra = g.cfg.Network.NonceTrialsPerByte, g.cfg.Network.ExtraBytes
	}
	if ntpb > g.cfg.MaxNonceTrialsPerByte || extra > g.cfg.MaxExtraBytes {
		return 0, 0, permanent(StatusDifficultyTooHigh, fmt.Sprintf("the recipient %s demands a proof of work difficulty of %d/%d, over this server's limit of %d/%d", it.ToAddress, ntpb, extra, g.cfg.MaxNonceTrialsPerByte, g.cfg.MaxExtraBytes))
	}
	return ntpb, extra, nil
}

// buildMsg encrypts and signs the msg object (without its nonce); ack is the
// solved ack object to embed, or nil.
func (g *Gateway) buildMsg(it mailmap.OutboxItem, id *identity.Identity, pk object.PubkeyData, to address.Address, ack []byte) ([]byte, error) {
	msg, err := contentOf(it)
	if err != nil {
		return nil, permanent(StatusContent, err.Error())
	}
	content := object.MsgContent{Encoding: it.Encoding, Message: msg}
	if ack != nil {
		content.AckPacket = wire.EncodePacket(g.cfg.Network.Magic, "object", ack)
	}
	expires := uint64(g.cfg.Now().Unix() + int64(it.TTL/time.Second) + g.jitter())
	headless, err := object.BuildMsg(id, pk, to, content, expires, g.cfg.Rand)
	if err != nil {
		return nil, permanent(StatusContent, fmt.Sprintf("cannot build the message: %v", err))
	}
	return headless, nil
}

// ackSolved continues a msg whose embedded ack has its proof of work: it
// builds the msg around the ack and queues the msg's proof of work.
func (g *Gateway) ackSolved(ctx context.Context, it mailmap.OutboxItem) error {
	job, err := g.store.PoWJob(ctx, it.PoWJob)
	if err != nil {
		return fmt.Errorf("read the ack's proof of work: %w", err)
	}
	if job.Kind != "ack" || job.State != mailmap.PoWSolved || job.Publish {
		return mailmap.ErrConflict // not ours to continue: the scheduler has it
	}
	ack := solvedObject(job)
	if expiredInQueue(ack, job, g.cfg.Now()) {
		// The ack waited in the queue for longer than its life: redo it.
		return g.restart(ctx, it)
	}
	k, found, err := g.msgKeys(ctx, it)
	if err != nil {
		return err
	}
	if !found {
		return g.restart(ctx, it)
	}
	headless, err := g.buildMsg(it, k.sender, k.pk, k.to, ack)
	if err != nil {
		return err
	}
	return g.startPoW(ctx, it, mailmap.OutboxStep{WaitingJob: job.ID}, g.newJob("msg", priorityMail, true, headless, k.ntpb, k.extra))
}

// restart sends a doing_pow row back to the queue, dropping its job.
func (g *Gateway) restart(ctx context.Context, it mailmap.OutboxItem) error {
	now := g.cfg.Now()
	_, err := g.store.TransitionOutbox(ctx, mailmap.OutboxStep{
		ID: it.ID, From: []mailmap.OutboxState{it.State}, Owner: g.owner, To: mailmap.OutboxQueued, NextAttempt: &now,
	})
	g.WakeOutbound()
	return err
}

func (g *Gateway) newJob(kind string, priority int, publish bool, headless []byte, ntpb, extra uint64) *mailmap.PoWJob {
	target := g.target(headless, ntpb, extra)
	return &mailmap.PoWJob{Kind: kind, Priority: priority, Publish: publish, Headless: headless, Target: target, Expected: pow.ExpectedTrials(target)}
}

// startPoW moves the claimed row to doing_pow together with its job.
func (g *Gateway) startPoW(ctx context.Context, it mailmap.OutboxItem, step mailmap.OutboxStep, job *mailmap.PoWJob) error {
	step.ID, step.From, step.Owner, step.To = it.ID, []mailmap.OutboxState{it.State}, g.owner, mailmap.OutboxDoingPoW
	step.Job = job
	// The row is claimable again only when its job is gone or is a solved
	// ack (ClaimOutbox checks), so it can be due at once.
	now := g.cfg.Now()
	step.NextAttempt = &now
	if _, err := g.store.TransitionOutbox(ctx, step); err != nil {
		return fmt.Errorf("queue %s proof of work: %w", job.Kind, err)
	}
	g.wakePoWWorkers()
	return nil
}

// jobPublished moves a row whose msg or broadcast was published to sent
// (or, with nothing more to wait for, finishes it).
func (g *Gateway) jobPublished(ctx context.Context, job mailmap.PoWJob, h wire.InvHash, took time.Duration) error {
	it, err := g.store.OutboxItem(ctx, job.OutboxID)
	if err != nil {
		return err
	}
	now := g.cfg.Now()
	attempts := it.Attempts + 1
	step := mailmap.OutboxStep{
		ID: it.ID, From: []mailmap.OutboxState{mailmap.OutboxDoingPoW}, WaitingJob: job.ID, To: mailmap.OutboxSent,
		Attempts: &attempts, InvHash: h[:], SentAt: &now, AddPoWDuration: took,
	}
	empty := ""
	step.LastError = &empty
	wantAck := len(it.AckData) > 0 && it.Kind == mailmap.OutboxMsg
	next := never
	if wantAck {
		// Resend when the TTL has passed with 10 % slack (docs/protocol.md §5.4).
		next = now.Add(it.TTL * 11 / 10)
	} else if !it.Reported {
		it.Attempts, it.PoWDuration = attempts, it.PoWDuration+took
		r, err := g.finalReport(ctx, it, ActionRelayed, StatusDelivered, "", g.wants(ctx, it, mailmap.NotifySuccess))
		if err != nil {
			return err
		}
		step.Report = r
	}
	step.NextAttempt = &next
	got, err := g.store.TransitionOutbox(ctx, step)
	if err != nil {
		return err
	}
	g.stats.msgsOut.Add(1)
	g.countReport(it, got, ActionRelayed)
	g.log.Info("published", "outbox", it.ID, "kind", it.Kind, "to", it.ToAddress, "inv", h.String(), "attempt", attempts)
	return nil
}

// finish ends a row that expects no ack: chans, broadcasts and recipients
// that do not ack get a "relayed" report when success was asked.
func (g *Gateway) finish(ctx context.Context, it mailmap.OutboxItem) error {
	r, err := g.finalReport(ctx, it, ActionRelayed, StatusDelivered, "", g.wants(ctx, it, mailmap.NotifySuccess))
	if err != nil {
		return err
	}
	next := never
	got, err := g.store.TransitionOutbox(ctx, mailmap.OutboxStep{
		ID: it.ID, From: []mailmap.OutboxState{it.State}, Owner: g.owner, To: it.State, NextAttempt: &next, Report: r,
	})
	if err != nil {
		return err
	}
	g.countReport(it, got, ActionRelayed)
	return nil
}

// fail ends a row with a permanent failure and bounces it when wanted.
func (g *Gateway) fail(ctx context.Context, it mailmap.OutboxItem, status DSNStatus, reason string) error {
	g.log.Warn("send failed", "outbox", it.ID, "to", it.ToAddress, "reason", reason)
	r, err := g.finalReport(ctx, it, ActionFailed, status, reason, g.wants(ctx, it, mailmap.NotifyFailure))
	if err != nil {
		return err
	}
	next := never
	got, err := g.store.TransitionOutbox(ctx, mailmap.OutboxStep{
		ID: it.ID, From: openStates, Owner: g.owner, To: mailmap.OutboxFailed,
		LastError: &reason, NextAttempt: &next, Report: r,
	})
	if err != nil {
		return err
	}
	g.countReport(it, got, ActionFailed)
	return nil
}

// finalReport builds the final report of a row when one is wanted and not
// yet sent; otherwise it only sets the Reported flag.
func (g *Gateway) finalReport(ctx context.Context, it mailmap.OutboxItem, action Action, status DSNStatus, diagnostic string, wanted bool) (*mailmap.OutboxReport, error) {
	if it.Reported {
		return nil, nil
	}
	if !wanted {
		return &mailmap.OutboxReport{}, nil
	}
	raw, err := g.buildReport(it, action, status, diagnostic, time.Time{})
	if err != nil {
		return nil, err
	}
	return &mailmap.OutboxReport{Raw: raw}, nil
}

// countReport counts and logs a report the transition filed.
func (g *Gateway) countReport(before, after mailmap.OutboxItem, action Action) {
	if (!before.Reported && after.Reported) || (!before.DelayReported && after.DelayReported) {
		g.stats.reports.Add(1)
		g.log.Info("delivery report", "outbox", after.ID, "action", action)
	}
}

// awaitPubkey asks the network for the recipient's pubkey (again, when the
// previous request's TTL has passed) and parks the row until it comes.
// While waiting, Attempts counts getpubkey requests. One request per
// address is in the queue at a time, however many sends wait for it.
func (g *Gateway) awaitPubkey(ctx context.Context, it mailmap.OutboxItem, to address.Address) error {
	now := g.cfg.Now()
	if now.Sub(it.CreatedAt) > g.cfg.PubkeyGiveUp {
		return permanent(StatusPubkeyTimeout, fmt.Sprintf("the public key of %s never arrived after %s of asking the network; the address may be unused or its owner offline", it.ToAddress, roundDuration(now.Sub(it.CreatedAt))))
	}
	attempts, sentAt := it.Attempts, it.SentAt
	if it.State != mailmap.OutboxAwaitingPubkey {
		attempts, sentAt = 0, time.Time{}
	}
	// Another row waiting for the same pubkey (another mail to that
	// address, of any user) may have asked already: its request serves
	// this row too. The dedupe key of the job only covers a request still
	// in the queue; this covers one already published.
	switch n, at, err := g.store.PubkeyRequest(ctx, it.ToAddress); {
	case err == nil && at.After(sentAt):
		attempts, sentAt = n, at
	case err != nil && !errors.Is(err, mailmap.ErrNotFound):
		return fmt.Errorf("find an earlier getpubkey: %w", err)
	}
	step := mailmap.OutboxStep{ID: it.ID, From: []mailmap.OutboxState{it.State}, Owner: g.owner, To: mailmap.OutboxAwaitingPubkey}
	// The previous request's TTL decides when to ask again; each request
	// doubles it (docs/protocol.md §5.4).
	prevTTL := min(getpubkeyTTL<<min(max(attempts-1, 0), 8), maxTTL)
	if sentAt.IsZero() || now.After(sentAt.Add(prevTTL*11/10)) {
		ttl := min(getpubkeyTTL<<min(attempts, 8), maxTTL)
		expires := uint64(now.Unix() + int64(ttl/time.Second) + g.jitter())
		job := g.newJob("getpubkey", priorityLookup, true, object.BuildGetpubkey(to, expires), 0, 0)
		job.DedupeKey = "getpubkey:" + to.String()
		if _, err := g.store.EnqueuePoW(ctx, *job); err != nil {
			return fmt.Errorf("queue getpubkey: %w", err)
		}
		g.wakePoWWorkers()
		g.log.Info("asking for pubkey", "outbox", it.ID, "address", it.ToAddress)
		attempts++
		sentAt = now
	}
	next := now.Add(g.cfg.PubkeyPoll)
	step.Attempts, step.SentAt, step.NextAttempt = &attempts, &sentAt, &next
	_, err := g.store.TransitionOutbox(ctx, step)
	return err
}

// acknowledged handles an ack that matched an outbox row: whatever the row
// is doing (a resend's proof of work included), it becomes acked, once.
func (g *Gateway) acknowledged(ctx context.Context, it mailmap.OutboxItem) error {
	if it.State == mailmap.OutboxAcked || it.State == mailmap.OutboxFailed {
		return nil
	}
	now := g.cfg.Now()
	it.AckedAt = now
	r, err := g.finalReport(ctx, it, ActionDelivered, StatusDelivered, "", g.wants(ctx, it, mailmap.NotifySuccess))
	if err != nil {
		return err
	}
	next := never
	got, err := g.store.TransitionOutbox(ctx, mailmap.OutboxStep{
		ID: it.ID, From: openStates, AckDataIs: it.AckData, To: mailmap.OutboxAcked,
		AckedAt: &now, NextAttempt: &next, Report: r,
	})
	if errors.Is(err, mailmap.ErrConflict) {
		return nil // acked (or failed) already: an ack seen twice
	}
	if err != nil {
		return fmt.Errorf("mark acked: %w", err)
	}
	g.stats.acks.Add(1)
	g.log.Info("acknowledged", "outbox", it.ID, "to", it.ToAddress)
	g.countReport(it, got, ActionDelivered)
	// The Sent copy is the row's, whether or not the mail had a Message-ID.
	g.deliveredMu.Lock()
	// Found by Message-ID, else by content (a copy without one: the mail
	// had none, or bmgate sendmail gave it one the script's copy lacks).
	p := pendingDelivered{userID: it.UserID, messageID: it.MessageID, created: it.CreatedAt, until: now.Add(deliveredWatch),
		subject: it.Subject, body: it.Body}
	if it.MessageID == "" {
		p.original = it.Original // compared byte for byte first (kept only then: it may be large)
	}
	g.delivered[it.ID] = p
	g.deliveredMu.Unlock()
	g.markDelivered(ctx)
	return nil
}
