package gateway

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/bmgate/bmgate/bmcore/object"
	"github.com/bmgate/bmgate/bmcore/pow"
	"github.com/bmgate/bmgate/bmcore/wire"
	"github.com/bmgate/bmgate/mailmap"
)

// The proof-of-work scheduler. Every proof of work (msg, broadcast, the
// embedded ack, our pubkey, getpubkey) is a durable job in the store.
// PoWConcurrency workers, in every instance of a deployment, claim jobs
// with a lease (highest priority first, users taking turns), solve them on
// PoWWorkers cores each with a heartbeat that renews the lease, record the
// nonce, then publish and move the job's outbox row on. A job whose lease
// ran out (a crashed worker) is taken again; a graceful shutdown gives its
// jobs back at once. A job deleted meanwhile (its row was acked) stops the
// solve at the next heartbeat.

// wakePoWWorkers tells idle proof-of-work workers that a job was queued.
func (g *Gateway) wakePoWWorkers() {
	select {
	case g.wakePoW <- struct{}{}:
	default:
	}
}

func (g *Gateway) powLoop(ctx context.Context) {
	var wg sync.WaitGroup
	for range g.cfg.PoWConcurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				worked, err := g.powOnce(ctx)
				if ctx.Err() != nil {
					return
				}
				if err != nil {
					g.log.Error("proof of work", "err", err)
				}
				if !worked || err != nil {
					if !sleep(ctx, g.cfg.PollInterval, g.wakePoW) {
						return
					}
				}
			}
		}()
	}
	wg.Wait()
}

// powOnce claims one job and carries it as far as it goes.
func (g *Gateway) powOnce(ctx context.Context) (bool, error) {
	job, ok, err := g.store.ClaimPoW(ctx, g.owner, g.cfg.Now(), g.cfg.Lease)
	if err != nil {
		return false, fmt.Errorf("claim: %w", err)
	}
	if !ok {
		return false, nil
	}
	err = g.runJob(ctx, job)
	switch {
	case err == nil || ctx.Err() != nil:
		return true, nil
	case errors.Is(err, mailmap.ErrConflict):
		g.log.Debug("proof-of-work job dropped: its row changed meanwhile", "job", job.ID, "kind", job.Kind)
		return true, nil
	}
	return true, fmt.Errorf("job %d (%s): %w", job.ID, job.Kind, err)
}

func (g *Gateway) runJob(ctx context.Context, job mailmap.PoWJob) error {
	var took time.Duration
	if job.State != mailmap.PoWSolved {
		start := time.Now()
		nonce, trials, err := g.solveJob(ctx, job)
		if err != nil {
			return err
		}
		took = time.Since(start)
		if err := g.store.SolvedPoW(ctx, job.ID, g.owner, nonce, trials, g.cfg.Now()); err != nil {
			return err
		}
		job.State, job.Nonce = mailmap.PoWSolved, nonce
	}
	if !job.Publish {
		// An embedded ack: the outbound worker builds the msg around it.
		g.WakeOutbound()
		return nil
	}
	obj := solvedObject(job)
	awaitsAck := false
	if job.OutboxID != 0 {
		cur, err := g.store.OutboxItem(ctx, job.OutboxID)
		if err != nil {
			return err
		}
		if cur.State != mailmap.OutboxDoingPoW || cur.PoWJob != job.ID {
			return mailmap.ErrConflict // acked or failed meanwhile: publish nothing
		}
		if expiredInQueue(obj, job, g.cfg.Now()) {
			// It waited in the queue past its lifetime: build it again.
			g.log.Warn("proof-of-work job expired before publication; rebuilding", "job", job.ID, "outbox", cur.ID)
			return g.requeueRow(ctx, cur, job)
		}
		awaitsAck = len(cur.AckData) > 0
	}
	publish := g.cfg.Publisher.Publish
	if awaitsAck && job.Kind == "msg" {
		if p, ok := g.cfg.Publisher.(ackPublisher); ok {
			publish = p.PublishAwaitingAck
		}
	}
	h, err := publish(ctx, obj)
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	if job.OutboxID != 0 {
		return g.jobPublished(ctx, job, h, took)
	}
	if rest, ok := strings.CutPrefix(job.DedupeKey, "pubkey:"); ok {
		addr, demand, _ := strings.Cut(rest, pubkeyDemandSep)
		if err := g.pubkeyPublished(ctx, addr, demand); err != nil {
			return err
		}
	}
	if job.Kind == "getpubkey" {
		g.log.Info("asked for pubkey", "key", job.DedupeKey, "inv", h.String())
	}
	return g.store.DeletePoW(ctx, job.ID, g.owner)
}

// requeueRow sends a row whose job expired in the queue back to queued.
func (g *Gateway) requeueRow(ctx context.Context, it mailmap.OutboxItem, job mailmap.PoWJob) error {
	now := g.cfg.Now()
	_, err := g.store.TransitionOutbox(ctx, mailmap.OutboxStep{
		ID: it.ID, From: []mailmap.OutboxState{mailmap.OutboxDoingPoW}, WaitingJob: job.ID,
		To: mailmap.OutboxQueued, NextAttempt: &now,
	})
	g.WakeOutbound()
	return err
}

// solveJob runs the proof of work with a heartbeat that renews the job's
// lease and stops the work when the job is gone (ErrConflict).
func (g *Gateway) solveJob(ctx context.Context, job mailmap.PoWJob) (nonce, trials uint64, err error) {
	p := &pow.Progress{}
	start := g.cfg.Now()
	g.powMu.Lock()
	g.powJobs[job.ID] = runningJob{job: job, progress: p, started: g.cfg.Now()}
	g.powMu.Unlock()
	defer func() {
		g.powMu.Lock()
		delete(g.powJobs, job.ID)
		g.stats.powTrials.Add(p.Trials())
		g.powMu.Unlock()
	}()
	powCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var lost error
	hbDone := make(chan struct{})
	go func() {
		defer close(hbDone)
		t := time.NewTicker(max(g.cfg.Lease/3, time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-powCtx.Done():
				return
			case <-t.C:
				err := g.store.RenewPoW(powCtx, job.ID, g.owner, g.cfg.Now().Add(g.cfg.Lease), p.Trials())
				if errors.Is(err, mailmap.ErrConflict) {
					lost = err // deleted (acked) or taken over: stop working
					cancel()
					return
				}
			}
		}
	}()
	obj, err := pow.SolveObject(powCtx, job.Headless, job.Target, pow.Options{Workers: g.cfg.PoWWorkers, Progress: p})
	cancel()
	<-hbDone
	if lost != nil {
		return 0, 0, lost
	}
	if err != nil {
		return 0, 0, fmt.Errorf("proof of work: %w", err)
	}
	if took := g.cfg.Now().Sub(start); took > 0 && p.Trials() > 0 {
		g.powRate.Store(math.Float64bits(float64(p.Trials()) / took.Seconds()))
	}
	return binary.BigEndian.Uint64(obj[:8]), p.Trials(), nil
}

// ackPublisher is a Publisher (the node) that treats our msgs awaiting an
// ack specially: a PyBitmessage 0.6 peer that fetches one gets its
// connection renewed so that the ack comes back (interop F1). Acks we send
// and chan posts bring nothing back and use Publish.
type ackPublisher interface {
	PublishAwaitingAck(ctx context.Context, object []byte) (wire.InvHash, error)
}

// solvedObject is the whole object of a solved job.
func solvedObject(job mailmap.PoWJob) []byte {
	obj := make([]byte, 8+len(job.Headless))
	binary.BigEndian.PutUint64(obj, job.Nonce)
	copy(obj[8:], job.Headless)
	return obj
}

// expiredInQueue reports whether a job's object was alive when the job was
// queued but has expired since (it waited behind other work for longer
// than its lifetime): publishing it would be useless, so it is rebuilt.
func expiredInQueue(obj []byte, job mailmap.PoWJob, now time.Time) bool {
	exp := expiresOf(obj)
	return exp > job.CreatedAt.Unix() && exp <= now.Unix()
}

// expiresOf reads an object's expiresTime.
func expiresOf(obj []byte) int64 {
	if len(obj) < 16 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(obj[8:16]))
}

// runningJob is a job this process is solving, for Stats.
type runningJob struct {
	job      mailmap.PoWJob
	progress *pow.Progress
	started  time.Time
}

// publishPubkey queues our pubkey for an identity; a pubkey asked for twice
// while its job waits is solved once.
func (g *Gateway) publishPubkey(ctx context.Context, m mailmap.Identity) error {
	// The key names the demand the pubkey carries: after a change of the
	// address's difficulty a job with the old demand neither stands in
	// for the new pubkey nor, once published, counts as it.
	key := pubkeyJobKey(m)
	// Maintenance and every getpubkey ask again while the job waits in the
	// queue: do not derive the keys and sign a pubkey each time.
	switch _, err := g.store.PoWJobByKey(ctx, key); {
	case err == nil:
		return nil
	case !errors.Is(err, mailmap.ErrNotFound):
		return fmt.Errorf("find pubkey job: %w", err)
	}
	id, err := localIdentity(m)
	if err != nil {
		return nil
	}
	id.Bitfield = doesAck
	expires := uint64(g.cfg.Now().Unix() + int64(pubkeyTTL/time.Second) + g.jitter())
	headless, err := object.BuildPubkey(id, expires, g.cfg.Rand)
	if err != nil {
		return fmt.Errorf("build pubkey: %w", err)
	}
	job := g.newJob("pubkey", priorityAnswer, true, headless, 0, 0)
	job.DedupeKey = key
	if _, err := g.store.EnqueuePoW(ctx, *job); err != nil {
		return fmt.Errorf("queue pubkey: %w", err)
	}
	g.wakePoWWorkers()
	return nil
}

// pubkeyDemandSep separates the address from the demand in the dedupe
// key of a pubkey job.
const pubkeyDemandSep = " demand "

// pubkeyJobKey is the dedupe key of the job publishing an identity's
// pubkey with its current demand.
func pubkeyJobKey(m mailmap.Identity) string {
	return "pubkey:" + m.Address + pubkeyDemand(m)
}

// pubkeyDemand is the demand part of a pubkey job's key: the values the
// pubkey carries (localIdentity's).
func pubkeyDemand(m mailmap.Identity) string {
	return fmt.Sprintf("%s%d/%d", pubkeyDemandSep, max(m.NonceTrialsPerByte, 1), max(m.ExtraBytes, 1))
}

// pubkeyPublished records that an identity's pubkey is out there, unless
// the demand it carried ("" for a job queued before keys named it) is no
// longer the identity's: then maintenance publishes the new one.
func (g *Gateway) pubkeyPublished(ctx context.Context, addr, demand string) error {
	m, err := g.store.IdentityByAddress(ctx, addr)
	if errors.Is(err, mailmap.ErrNotFound) {
		return nil // deleted meanwhile
	}
	if err != nil {
		return err
	}
	if demand != "" && pubkeyDemandSep+demand != pubkeyDemand(m) {
		g.log.Info("published pubkey with a superseded demand; the new one follows", "address", addr)
		return nil
	}
	if err := g.store.MarkPubkeySent(ctx, m.ID, g.cfg.Now()); err != nil {
		return fmt.Errorf("mark pubkey sent: %w", err)
	}
	g.invalidateIdentities()
	g.log.Info("published pubkey", "address", addr)
	return nil
}

// release gives back this process's leases so a restart (or another
// instance) resumes at once.
func (g *Gateway) release() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g.store.ReleasePoW(ctx, g.owner); err != nil {
		g.log.Warn("release proof-of-work jobs", "err", err)
	}
	if err := g.store.ReleaseOutbox(ctx, g.owner, g.cfg.Now()); err != nil {
		g.log.Warn("release outbox rows", "err", err)
	}
}
