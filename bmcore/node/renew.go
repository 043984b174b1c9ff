package node

import (
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bmgate/bmgate/bmcore/wire"
)

// Ack renewal for PyBitmessage 0.6.x peers (docs/interop-pybitmessage.md
// F1). PyB 0.6.3.2 stores the ack of a msg it accepted without announcing
// it; the ack leaves only in the full inv PyB sends on a new connection. So
// when such a peer fetched one of our own msgs, its connection is closed a
// little later (Config.AckRenewDelay + AckRenewJitter) and re-established:
// an outbound one is redialled, an inbound one is redialled by the peer
// (PyB fills its outbound slots every ~2 s), and the new handshake brings
// the ack. Bounds: one renewal per peer address per AckRenewPeerInterval
// (a fetch within it defers its renewal to the end of it), at most
// AckRenewMaxPerHour renewals in all, and a renewal only follows a fetch of
// one of our msgs; a connection that ends before its renewal is due is not
// renewed (its successor got the full inv anyway).

const (
	// maxOwnMsgs bounds the set of locally published msg hashes.
	maxOwnMsgs = 1024
	// renewWindow is the window of AckRenewMaxPerHour.
	renewWindow = time.Hour
)

// pendingRenewal is a renewal due at a connection.
type pendingRenewal struct {
	at      time.Time    // due
	key     string       // peer address (renewKey)
	hash    wire.InvHash // the msg of ours it fetched
	fetched time.Time
}

// ackRenewer schedules the renewals. Times come from Config.Now.
type ackRenewer struct {
	delay, jitter, perPeer time.Duration
	maxPerHour             int

	mu      sync.Mutex
	own     map[wire.InvHash]time.Time // our msgs → forget at (their expiry)
	pending map[*peer]pendingRenewal
	last    map[string]time.Time // peer address → last renewal
	recent  []time.Time          // renewals within renewWindow, oldest first
}

func newAckRenewer(cfg *Config) *ackRenewer {
	return &ackRenewer{
		delay:      cfg.AckRenewDelay,
		jitter:     cfg.AckRenewJitter,
		perPeer:    cfg.AckRenewPeerInterval,
		maxPerHour: cfg.AckRenewMaxPerHour,
		own:        map[wire.InvHash]time.Time{},
		pending:    map[*peer]pendingRenewal{},
		last:       map[string]time.Time{},
	}
}

func (r *ackRenewer) enabled() bool { return r.delay >= 0 }

// published remembers a msg published locally, until it expires.
func (r *ackRenewer) published(h wire.InvHash, expires, now time.Time) {
	if !r.enabled() {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.own[h]; !ok && len(r.own) >= maxOwnMsgs {
		var first wire.InvHash
		var firstAt time.Time
		for k, at := range r.own {
			if !at.After(now) {
				delete(r.own, k)
				continue
			}
			if firstAt.IsZero() || at.Before(firstAt) {
				first, firstAt = k, at
			}
		}
		if len(r.own) >= maxOwnMsgs {
			delete(r.own, first)
		}
	}
	r.own[h] = expires
}

// isPyB06 reports whether the peer runs PyBitmessage 0.6.x.
func isPyB06(p *peer) bool {
	v := p.remoteVersion()
	return v != nil && strings.HasPrefix(v.UserAgent, "/PyBitmessage:0.6.")
}

// renewKey is the peer address the per-peer bound applies to: the dialled
// address, or the remote IP with the advertised listening port (stable
// across the peer's redials).
func renewKey(p *peer) string {
	if !p.inbound {
		return p.dialAddr
	}
	var port uint16
	if v := p.remoteVersion(); v != nil {
		port = v.AddrFrom.Port
	}
	return net.JoinHostPort(p.remote.Addr().String(), strconv.Itoa(int(port)))
}

// fetched is called after p was sent the object h; it schedules the
// renewal of p's connection when h is one of our msgs and p a PyB 0.6 peer.
// It reports whether it scheduled one.
func (r *ackRenewer) fetched(p *peer, h wire.InvHash, now time.Time) bool {
	if !r.enabled() || p.bootstrap || !isPyB06(p) {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if exp, ok := r.own[h]; !ok || !exp.After(now) {
		return false
	}
	if _, ok := r.pending[p]; ok {
		return false // one renewal brings every ack made meanwhile
	}
	at := now.Add(r.delay)
	if r.jitter > 0 {
		at = at.Add(rand.N(r.jitter + 1))
	}
	key := renewKey(p)
	if last, ok := r.last[key]; ok && at.Before(last.Add(r.perPeer)) {
		at = last.Add(r.perPeer)
	}
	r.pending[p] = pendingRenewal{at: at, key: key, hash: h, fetched: now}
	return true
}

// due returns the connections to renew now and drops the renewals of
// connections that ended. Renewals over the hourly cap are dropped
// (dropped counts them).
func (r *ackRenewer) due(now time.Time) (renew []*peer, why []pendingRenewal, dropped int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for len(r.recent) > 0 && now.Sub(r.recent[0]) >= renewWindow {
		r.recent = r.recent[1:]
	}
	for k, t := range r.last {
		if now.Sub(t) >= r.perPeer {
			delete(r.last, k)
		}
	}
	for p, pr := range r.pending {
		if p.isClosing() {
			delete(r.pending, p)
			continue
		}
		if now.Before(pr.at) {
			continue
		}
		if last, ok := r.last[pr.key]; ok && now.Before(last.Add(r.perPeer)) {
			// Another connection to that address was renewed meanwhile.
			pr.at = last.Add(r.perPeer)
			r.pending[p] = pr
			continue
		}
		delete(r.pending, p)
		if len(r.recent) >= r.maxPerHour {
			dropped++
			continue
		}
		r.recent = append(r.recent, now)
		r.last[pr.key] = now
		renew = append(renew, p)
		why = append(why, pr)
	}
	return renew, why, dropped
}

// pendingAt returns when p's renewal is due (tests).
func (r *ackRenewer) pendingAt(p *peer) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	pr, ok := r.pending[p]
	return pr.at, ok
}

// renewTick closes the connections whose renewal is due; connLoop calls it.
func (n *Node) renewTick() {
	if !n.renew.enabled() {
		return
	}
	now := n.cfg.Now()
	renew, why, dropped := n.renew.due(now)
	if dropped > 0 {
		n.log.Info("PyBitmessage ack renewal skipped: hourly cap reached",
			"dropped", dropped, "max_per_hour", n.cfg.AckRenewMaxPerHour)
	}
	for i, p := range renew {
		pr := why[i]
		p.log.Info("renewing connection",
			"reason", "a PyBitmessage 0.6 peer fetched our msg and announces its ack only on a new connection (interop F1)",
			"addr", pr.key, "user_agent", p.remoteVersion().UserAgent, "msg", pr.hash.String(),
			"fetched_ago", now.Sub(pr.fetched).Round(time.Second))
		n.connRenewals.Add(1)
		p.close(errRenewed, false)
	}
}
