package node

import (
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/bmgate/bmgate/bmcore/wire"
)

// Download policy (docs/protocol.md §4.4, §16).
const (
	// maxGetData is the most hashes per getdata (as PyB).
	maxGetData = 1000
	// maxInflightPerPeer bounds the requests outstanding at one peer.
	maxInflightPerPeer = 2 * maxGetData
	// maxFetchSources is how many announcers are remembered per object.
	maxFetchSources = 8
	// maxFetchTries: an object not delivered after this many requests is
	// forgotten until someone announces it again.
	maxFetchTries = 5
	// defaultMaxFetching bounds the objects being tracked (Config.MaxFetching);
	// announcements beyond it are ignored and come back with the next
	// connection's inv.
	defaultMaxFetching = 250000
	// defaultFetchShare: by default one connection may be a source of at
	// most 1/defaultFetchShare of the table (Config.MaxFetchingPerPeer).
	defaultFetchShare = 4
	// fetchItemTTL: an object nobody delivered within this time is forgotten.
	fetchItemTTL = 30 * time.Minute
	// sweepEvery spaces the full scans for stale objects.
	sweepEvery = 3 * time.Minute

	// A request counts as unanswered when its deadline passes and the peer
	// delivered none of the objects we asked it for since the request was
	// sent: a slow peer that is still delivering is not blamed. A peer with
	// at least unansweredLimit unanswered requests, more than it answered,
	// that has owed us objects without delivering any for two retry times
	// (so one stall of an honest peer is forgiven) is disconnected
	// (Node.unresponsive).
	unansweredLimit = 100
	// fetchRecordWindow: when a peer's answered plus unanswered requests
	// pass it, both are halved, so the record follows recent behaviour and
	// old credit does not cover a later flood.
	fetchRecordWindow = 4096
)

// fetchOffender is a peer expire found unresponsive, with its record.
type fetchOffender struct {
	p                     *peer
	delivered, unanswered int
	quiet                 time.Duration // owing objects, delivering none
}

// fetchReq is one request in flight.
type fetchReq struct {
	sent, deadline time.Time
}

type fetchItem struct {
	sources  []*peer
	inflight *peer
	tries    int
	added    time.Time
}

// fetcher tracks the objects peers announced that we lack, spreads the
// getdata requests over the announcing peers and re-requests what is not
// delivered in time — from another peer when there is one, because PyB
// silently drops getdata that arrive during its anti-intersection window
// (docs/protocol.md §4.4). Its mutex also guards the download fields of every peer.
// Periodic work only looks at requests in flight (at most
// maxInflightPerPeer per peer), never at every tracked object.
//
// The table is shared fairly: a peer may be a source of at most perPeer
// objects, and when the table holds maxItems, a new object is admitted
// only for a peer under its fair share (maxItems divided by the peers
// holding entries) and only by evicting an entry of the peer holding the
// most, which must be over its fair share. So a few peers announcing
// objects they never serve cannot crowd out the others' announcements;
// their unanswered requests get them disconnected (expire).
type fetcher struct {
	mu        sync.Mutex
	items     map[wire.InvHash]*fetchItem
	busy      map[*peer]struct{} // peers with requests in flight
	holders   map[*peer]struct{} // peers that are sources of tracked objects
	maxItems  int
	perPeer   int
	retry     time.Duration // Config.GetDataRetry
	lastSweep time.Time
	// due is no later than the earliest deadline in flight (zero: none), so
	// expire, run on every pass of the fetch loop, costs O(1) until then.
	due  time.Time
	wake chan struct{}
	// now is the fetcher's clock: request deadlines, delivery records,
	// GetDataDelay and item ages. time.Now; tests replace it before Start.
	now func() time.Time

	// Counters, for logs and tests.
	peak    int    // most objects ever tracked at once
	evicted uint64 // objects evicted to make room for a peer under its share
	dropped uint64 // announcements ignored (share or table full)
}

func newFetcher(maxItems, perPeer int, retry time.Duration) *fetcher {
	return &fetcher{
		items:    map[wire.InvHash]*fetchItem{},
		busy:     map[*peer]struct{}{},
		holders:  map[*peer]struct{}{},
		maxItems: maxItems,
		perPeer:  perPeer,
		retry:    retry,
		wake:     make(chan struct{}, 1),
		now:      time.Now,
	}
}

func (f *fetcher) kick() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// announce records that p has the objects hs, which we lack.
func (f *fetcher) announce(p *peer, hs []wire.InvHash) {
	if len(hs) == 0 {
		return
	}
	f.mu.Lock()
	if p.isClosing() {
		f.mu.Unlock()
		return
	}
	now := f.now()
	var (
		victim    *peer
		noEvict   bool
		dropShare int // over p's own share
		dropFull  int // table full and p not entitled to evict
	)
	for _, h := range hs {
		it := f.items[h]
		if it != nil && (it.hasSource(p) || len(it.sources) >= maxFetchSources) {
			continue
		}
		if p.fetchTracked >= f.perPeer {
			dropShare++
			continue
		}
		if it == nil {
			if len(f.items) >= f.maxItems && (noEvict || !f.evictFor(p, &victim)) {
				noEvict = true
				dropFull++
				continue
			}
			it = &fetchItem{added: now}
			f.items[h] = it
			f.peak = max(f.peak, len(f.items))
		}
		it.sources = append(it.sources, p)
		f.track(p)
		if it.inflight == nil {
			p.want = append(p.want, h)
		}
	}
	f.dropped += uint64(dropShare + dropFull)
	logShare := dropShare > 0 && !p.fetchShareLogged
	if logShare {
		p.fetchShareLogged = true
	}
	tracked := p.fetchTracked
	f.mu.Unlock()
	if logShare {
		p.log.Info("peer announces more objects than its share of the download table; ignoring the rest",
			"share", f.perPeer, "ignored", dropShare)
	} else if dropShare+dropFull > 0 {
		p.log.Debug("announcements ignored", "over_share", dropShare, "table_full", dropFull, "tracked", tracked)
	}
	f.kick()
}

// evictFor makes room for one new object of p in a full table. p must be
// under its fair share; the victim is the peer that holds the most, if it
// is over its fair share. *victim caches that peer within one announce.
func (f *fetcher) evictFor(p *peer, victim **peer) bool {
	holders := len(f.holders)
	if _, ok := f.holders[p]; !ok {
		holders++
	}
	fair := f.maxItems / holders
	if p.fetchTracked >= fair {
		return false
	}
	if v := *victim; v == nil || v.fetchTracked <= fair {
		*victim = nil
		for q := range f.holders {
			if q != p && q.fetchTracked > fair && (*victim == nil || q.fetchTracked > (*victim).fetchTracked) {
				*victim = q
			}
		}
	}
	if *victim == nil {
		return false
	}
	return f.evictFrom(*victim)
}

// evictFrom deletes one object only v announced: the newest not yet
// requested, else one in flight at v (its request still counts against v
// if unanswered). On the way v gives up its claim on objects others also
// announced, which does not free room but shrinks its share. Entries of
// the queues that are stale are dropped, so the scan costs amortised O(1).
func (f *fetcher) evictFrom(v *peer) bool {
	for _, q := range []*[]wire.InvHash{&v.want, &v.retry} {
		for len(*q) > 0 {
			k := len(*q) - 1
			h := (*q)[k]
			*q = (*q)[:k]
			it := f.items[h]
			if it == nil || it.inflight != nil || !it.hasSource(v) {
				continue
			}
			if len(it.sources) == 1 {
				f.deleteItem(h, it)
				f.evicted++
				return true
			}
			f.removeSource(it, v)
		}
		*q = nil
	}
	for h := range v.inflight {
		if it := f.items[h]; it != nil && it.inflight == v && len(it.sources) == 1 && it.sources[0] == v {
			it.inflight = nil
			f.deleteItem(h, it)
			f.evicted++
			return true
		}
	}
	return false
}

// received ends the fetch of h, whoever delivered it and whatever it was.
// from (nil: unknown) is credited if h was requested from it.
func (f *fetcher) received(h wire.InvHash, from *peer) {
	f.mu.Lock()
	more := false
	if from != nil {
		if _, ok := from.inflight[h]; ok {
			f.land(from, h)
			from.credit(f.now())
			more = len(from.want)+len(from.retry) > 0
		}
	}
	if it := f.items[h]; it != nil {
		if q := it.inflight; q != nil && q != from {
			f.land(q, h)
			more = more || len(q.want)+len(q.retry) > 0
		}
		it.inflight = nil
		f.deleteItem(h, it)
	}
	f.mu.Unlock()
	if more {
		f.kick()
	}
}

// land removes h from p's requests in flight.
func (f *fetcher) land(p *peer, h wire.InvHash) {
	delete(p.inflight, h)
	if len(p.inflight) == 0 {
		delete(f.busy, p)
	}
}

// track and untrack count the objects p is a source of.
func (f *fetcher) track(p *peer) {
	p.fetchTracked++
	f.holders[p] = struct{}{}
}

func (f *fetcher) untrack(p *peer) {
	if p.fetchTracked--; p.fetchTracked <= 0 {
		p.fetchTracked = 0
		delete(f.holders, p)
	}
}

// deleteItem forgets h; the caller has dealt with a request in flight.
func (f *fetcher) deleteItem(h wire.InvHash, it *fetchItem) {
	for _, s := range it.sources {
		f.untrack(s)
	}
	it.sources = nil
	delete(f.items, h)
}

func (f *fetcher) removeSource(it *fetchItem, p *peer) {
	if it.dropSource(p) {
		f.untrack(p)
	}
}

// schedule assigns wanted objects to the given (established) peers and
// returns the getdata batches to send. Peers take turns, a batch each per
// round, so no peer's queue waits behind another's. The order is random
// (objects several peers announced are spread over them), except that
// peers that leave more requests unanswered than they answer come last,
// so an object also announced by a peer that delivers goes to that one.
// Peers still in their fetchAfter window are skipped.
func (f *fetcher) schedule(peers []*peer) map[*peer][]wire.InvHash {
	rand.Shuffle(len(peers), func(i, j int) { peers[i], peers[j] = peers[j], peers[i] })
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	slices.SortStableFunc(peers, func(a, b *peer) int {
		switch da, db := a.fetchDoubtful(), b.fetchDoubtful(); {
		case da == db:
			return 0
		case db:
			return -1
		default:
			return 1
		}
	})
	var out map[*peer][]wire.InvHash
	for progress := true; progress; {
		progress = false
		for _, p := range peers {
			if p.isClosing() || now.UnixNano() < p.fetchAfter.Load() {
				continue
			}
			var batch []wire.InvHash
			for len(batch) < maxGetData && len(p.inflight) < maxInflightPerPeer {
				h, ok := p.nextWant()
				if !ok {
					break
				}
				it := f.items[h]
				if it == nil || it.inflight != nil || !it.hasSource(p) {
					continue
				}
				it.inflight = p
				it.tries++
				if p.inflight == nil {
					p.inflight = map[wire.InvHash]fetchReq{}
				}
				dl := now.Add(f.retry)
				p.inflight[h] = fetchReq{sent: now, deadline: dl}
				if p.fetchOwedSince.IsZero() {
					p.fetchOwedSince = now
				}
				if f.due.IsZero() || dl.Before(f.due) {
					f.due = dl
				}
				f.busy[p] = struct{}{}
				batch = append(batch, h)
			}
			if len(batch) > 0 {
				if out == nil {
					out = map[*peer][]wire.InvHash{}
				}
				out[p] = append(out[p], batch...)
				progress = true
			}
		}
	}
	return out
}

// expire re-queues requests not answered by their deadline, preferably at
// another source, now and then forgets objects nobody delivered, and
// returns the peers that answer too little (once per peer): the caller
// disconnects them. A peer that delivered nothing since a request was
// sent is dropped as that object's source when another source is left.
func (f *fetcher) expire() []fetchOffender {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	if f.lastSweep.IsZero() {
		f.lastSweep = now
	}
	sweep := now.Sub(f.lastSweep) >= sweepEvery
	if (f.due.IsZero() || now.Before(f.due)) && !sweep {
		return nil
	}
	var bad []fetchOffender
	f.due = time.Time{}
	for p := range f.busy {
		for h, rq := range p.inflight {
			if now.Before(rq.deadline) {
				if f.due.IsZero() || rq.deadline.Before(f.due) {
					f.due = rq.deadline
				}
				continue
			}
			f.land(p, h)
			stalled := p.fetchLastDelivered.Before(rq.sent)
			if stalled {
				p.fetchUnanswered++
				p.decayRecord()
			}
			it := f.items[h]
			if it == nil || it.inflight != p {
				continue
			}
			it.inflight = nil
			src := it.pickSource(p)
			if stalled && src != nil && src != p {
				f.removeSource(it, p)
			}
			if it.tries >= maxFetchTries || src == nil {
				f.deleteItem(h, it)
				continue
			}
			src.retry = append(src.retry, h)
		}
		if !p.fetchPenalized && p.fetchUnresponsive(now, f.retry) {
			p.fetchPenalized = true
			bad = append(bad, fetchOffender{p, p.fetchDelivered, p.fetchUnanswered, now.Sub(p.fetchOwedSince)})
		}
	}
	if !sweep {
		return bad
	}
	f.lastSweep = now
	for h, it := range f.items {
		if it.inflight == nil && (now.Sub(it.added) > fetchItemTTL || it.pickSource(nil) == nil) {
			f.deleteItem(h, it)
		}
	}
	return bad
}

// peerGone hands what p was fetching to other sources and forgets objects
// only p had announced.
func (f *fetcher) peerGone(p *peer) {
	f.mu.Lock()
	for h := range p.inflight {
		it := f.items[h]
		if it == nil {
			continue
		}
		f.removeSource(it, p)
		switch {
		case it.inflight == p:
			it.inflight = nil
			if src := it.pickSource(nil); src != nil {
				src.retry = append(src.retry, h)
			} else {
				f.deleteItem(h, it)
			}
		case it.inflight == nil && len(it.sources) == 0:
			f.deleteItem(h, it)
		}
	}
	for _, q := range [][]wire.InvHash{p.want, p.retry} {
		for _, h := range q {
			if it := f.items[h]; it != nil {
				f.removeSource(it, p)
				if it.inflight == nil && len(it.sources) == 0 {
					f.deleteItem(h, it)
				}
			}
		}
	}
	delete(f.busy, p)
	delete(f.holders, p)
	p.inflight, p.want, p.retry = nil, nil, nil
	f.mu.Unlock()
	f.kick()
}

// pending returns the number of objects being tracked.
func (f *fetcher) pending() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.items)
}

func (it *fetchItem) hasSource(p *peer) bool {
	return slices.Contains(it.sources, p)
}

func (it *fetchItem) dropSource(p *peer) bool {
	for i, s := range it.sources {
		if s == p {
			it.sources = append(it.sources[:i], it.sources[i+1:]...)
			return true
		}
	}
	return false
}

// pickSource chooses a live source at random, preferring one other than
// prev; prev itself only when it is the one live source left.
func (it *fetchItem) pickSource(prev *peer) *peer {
	var pick *peer
	k := 0
	prevLive := false
	for _, s := range it.sources {
		if s.isClosing() {
			continue
		}
		if s == prev {
			prevLive = true
			continue
		}
		// Reservoir sampling: no allocation per call.
		k++
		if rand.IntN(k) == 0 {
			pick = s
		}
	}
	if pick == nil && prevLive {
		return prev
	}
	return pick
}

// nextWant pops the next hash to request from p: re-requests first.
// The caller holds fetcher.mu.
func (p *peer) nextWant() (wire.InvHash, bool) {
	if len(p.retry) > 0 {
		h := p.retry[0]
		p.retry = p.retry[1:]
		if len(p.retry) == 0 {
			p.retry = nil
		}
		return h, true
	}
	if len(p.want) > 0 {
		h := p.want[0]
		p.want = p.want[1:]
		if len(p.want) == 0 {
			p.want = nil
		}
		return h, true
	}
	return wire.InvHash{}, false
}

// credit records that p delivered an object we asked it for.
// The caller holds fetcher.mu.
func (p *peer) credit(now time.Time) {
	p.fetchDelivered++
	p.fetchLastDelivered = now
	p.fetchOwedSince = time.Time{}
	if len(p.inflight) > 0 {
		p.fetchOwedSince = now
	}
	p.decayRecord()
}

func (p *peer) decayRecord() {
	if p.fetchDelivered+p.fetchUnanswered > fetchRecordWindow {
		p.fetchDelivered /= 2
		p.fetchUnanswered /= 2
	}
}

// fetchDoubtful: p left more requests unanswered than it answered.
func (p *peer) fetchDoubtful() bool { return p.fetchUnanswered > p.fetchDelivered }

// fetchUnresponsive: p is to be disconnected (see unansweredLimit).
func (p *peer) fetchUnresponsive(now time.Time, retry time.Duration) bool {
	return p.fetchUnanswered >= unansweredLimit && p.fetchDoubtful() &&
		!p.fetchOwedSince.IsZero() && now.Sub(p.fetchOwedSince) >= 2*retry
}
