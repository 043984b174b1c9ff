package gateway

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"time"

	"github.com/bmgate/bmgate/bmcore/pow"
	"github.com/bmgate/bmgate/mailmap"
)

// assumedTrialsPerCore is the proof-of-work speed assumed per core before
// this process has measured its own (a solve sets powRate): a cautious
// figure for the SHA-512 kernels on a current x86 core.
const assumedTrialsPerCore = 2e6

// ackObjectBytes is about what an embedded ack's proof of work covers.
const ackObjectBytes = 60

// expectedTrials is the expected proof of work of one send: the msg (or
// broadcast) of an encoded message of contentLen bytes to address to, at
// the difficulty that recipient demands when its pubkey is cached (else the
// network's), plus the embedded ack for a msg.
func (g *Gateway) expectedTrials(ctx context.Context, kind mailmap.OutboxKind, to string, contentLen int, ttl time.Duration) uint64 {
	return g.expectedTrialsCached(ctx, kind, to, contentLen, ttl, nil)
}

// expectedTrialsCached is expectedTrials with the recipients' demanded
// difficulties kept in cache (nil: none kept).
func (g *Gateway) expectedTrialsCached(ctx context.Context, kind mailmap.OutboxKind, to string, contentLen int, ttl time.Duration, cache map[string][2]uint64) uint64 {
	ntpb, extra := g.cfg.Network.NonceTrialsPerByte, g.cfg.Network.ExtraBytes
	if kind == mailmap.OutboxMsg {
		if d, ok := cache[to]; ok {
			ntpb, extra = d[0], d[1]
		} else {
			if pk, err := g.store.Pubkey(ctx, to); err == nil {
				ntpb, extra = g.cfg.Network.Clamp(pk.NonceTrialsPerByte, pk.ExtraBytes)
			}
			if cache != nil {
				cache[to] = [2]uint64{ntpb, extra}
			}
		}
	}
	secs := int64(ttl/time.Second) + pow.SolveMargin
	trials := pow.ExpectedTrials(pow.Target(uint64(contentLen+msgObjectOverhead), secs, ntpb, extra))
	if kind == mailmap.OutboxMsg {
		n, e := g.cfg.Network.NonceTrialsPerByte, g.cfg.Network.ExtraBytes
		trials += pow.ExpectedTrials(pow.Target(ackObjectBytes, int64(ackTTL(ttl)/time.Second)+pow.SolveMargin, n, e))
	}
	return trials
}

// powRateEstimate is the proof-of-work speed of this process in trials per
// second: the one measured by the last solve, or an assumed one (measured
// false) before the first.
func (g *Gateway) powRateEstimate() (rate float64, measured bool) {
	if r := math.Float64frombits(g.powRate.Load()); r > 0 {
		return r, true
	}
	cores := g.cfg.PoWWorkers
	if cores <= 0 {
		cores = runtime.NumCPU()
	}
	return assumedTrialsPerCore * float64(cores), false
}

// trialsTime is how long a number of trials takes at a rate.
func trialsTime(trials uint64, rate float64) time.Duration {
	if rate <= 0 {
		return 0
	}
	return time.Duration(float64(trials) / rate * float64(time.Second))
}

// PoWEstimate is the expected proof-of-work time of an outbox row that has
// not had it yet (queued, waiting for a pubkey, or waiting for its proof
// of work), on this machine; 0 for other rows.
func (g *Gateway) PoWEstimate(ctx context.Context, it mailmap.OutboxItem) time.Duration {
	switch it.State {
	case mailmap.OutboxQueued, mailmap.OutboxAwaitingPubkey, mailmap.OutboxDoingPoW:
	default:
		return 0
	}
	rate, _ := g.powRateEstimate()
	return trialsTime(g.expectedTrials(ctx, it.Kind, it.ToAddress, rowContentBytes(it), it.TTL), rate)
}

// rowContentBytes estimates the encoded size of a row's message without
// rebuilding it: a row with files is bounded by its submitted bytes.
func rowContentBytes(it mailmap.OutboxItem) int {
	return contentBytes(it.Encoding, len(it.Subject)+len(it.Body)+len(it.Extra), len(it.Original))
}

func contentBytes(encoding uint64, text, original int) int {
	n := text + 16
	if encoding == encodingExtended && original > n {
		n = min(original, maxObjectContent)
	}
	return n
}

// pendingPoW sums the expected proof-of-work time of rows that still
// need it, per user, at this machine's rate. Pubkeys are looked up once per
// address.
func (g *Gateway) pendingPoW(ctx context.Context, userID int64) (map[int64]time.Duration, map[int64]int, error) {
	sends, err := g.store.PendingSends(ctx, userID)
	if err != nil {
		return nil, nil, fmt.Errorf("read the queued mail: %w", err)
	}
	rate, _ := g.powRateEstimate()
	total, rows, demand := map[int64]time.Duration{}, map[int64]int{}, map[string][2]uint64{}
	for _, p := range sends {
		trials := g.expectedTrialsCached(ctx, p.Kind, p.ToAddress, contentBytes(p.Encoding, p.TextBytes, p.OriginalBytes), p.TTL, demand)
		total[p.UserID] += trialsTime(trials, rate)
		rows[p.UserID]++
	}
	return total, rows, nil
}

// queuedPoW is the expected proof-of-work time of the user's rows that
// still need it, on this machine.
func (g *Gateway) queuedPoW(ctx context.Context, userID int64) (time.Duration, error) {
	total, _, err := g.pendingPoW(ctx, userID)
	return total[userID], err
}

// UserPoW is one user's mail still needing proof of work.
type UserPoW struct {
	User     string
	Rows     int
	Estimate time.Duration // on this machine, at the rate PoWRate reports
}

// QueuedPoW estimates, per user with any, the proof-of-work time of the
// mail that still needs it; measured is false while the rate is assumed.
func (g *Gateway) QueuedPoW(ctx context.Context) (out []UserPoW, measured bool, err error) {
	total, rows, err := g.pendingPoW(ctx, 0)
	if err != nil || len(rows) == 0 {
		return nil, false, err
	}
	users, err := g.store.ListUsers(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("list users: %w", err)
	}
	for _, u := range users {
		if rows[u.ID] > 0 {
			out = append(out, UserPoW{User: u.Name, Rows: rows[u.ID], Estimate: total[u.ID]})
		}
	}
	_, measured = g.powRateEstimate()
	return out, measured, nil
}
