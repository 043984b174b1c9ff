package node

import (
	"math/rand/v2"
	"sync"
	"time"

	"github.com/bmgate/bmgate/bmcore/wire"
)

// Download policy (SPEC.md §4.4, §16).
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
	// maxFetchItems bounds the objects being tracked; announcements beyond it
	// are ignored and come back with the next connection's inv.
	maxFetchItems = 250000
	// fetchItemTTL: an object nobody delivered within this time is forgotten.
	fetchItemTTL = 30 * time.Minute
	// sweepEvery spaces the full scans for stale objects.
	sweepEvery = 3 * time.Minute
)

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
// (SPEC.md §4.4). Its mutex also guards the want/retry/inflight fields of
// every peer. Periodic work only looks at requests in flight (at most
// maxInflightPerPeer per peer), never at every tracked object.
type fetcher struct {
	mu        sync.Mutex
	items     map[wire.InvHash]*fetchItem
	busy      map[*peer]struct{} // peers with requests in flight
	lastSweep time.Time
	wake      chan struct{}
}

func newFetcher() *fetcher {
	return &fetcher{
		items:     map[wire.InvHash]*fetchItem{},
		busy:      map[*peer]struct{}{},
		lastSweep: time.Now(),
		wake:      make(chan struct{}, 1),
	}
}

func (f *fetcher) kick() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// announce records that p has the objects hs, which we lack.
func (f *fetcher) announce(p *peer, hs []wire.InvHash, now time.Time) {
	if len(hs) == 0 {
		return
	}
	f.mu.Lock()
	if p.isClosing() {
		f.mu.Unlock()
		return
	}
	for _, h := range hs {
		it := f.items[h]
		if it == nil {
			if len(f.items) >= maxFetchItems {
				continue
			}
			it = &fetchItem{added: now}
			f.items[h] = it
		}
		if it.hasSource(p) {
			continue
		}
		if len(it.sources) < maxFetchSources {
			it.sources = append(it.sources, p)
		}
		if it.inflight == nil {
			p.want = append(p.want, h)
		}
	}
	f.mu.Unlock()
	f.kick()
}

// received ends the fetch of h, whoever delivered it and whatever it was.
func (f *fetcher) received(h wire.InvHash) {
	f.mu.Lock()
	it := f.items[h]
	if it == nil {
		f.mu.Unlock()
		return
	}
	delete(f.items, h)
	more := false
	if p := it.inflight; p != nil {
		f.land(p, h)
		more = len(p.want)+len(p.retry) > 0
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

// schedule assigns wanted objects to the given (established) peers, in
// random order so that objects several peers announced are spread over
// them, and returns the getdata batches to send. Peers still in their
// fetchAfter window are skipped.
func (f *fetcher) schedule(peers []*peer, now time.Time, retry time.Duration) map[*peer][]wire.InvHash {
	rand.Shuffle(len(peers), func(i, j int) { peers[i], peers[j] = peers[j], peers[i] })
	f.mu.Lock()
	defer f.mu.Unlock()
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
				if it == nil || it.inflight != nil {
					continue
				}
				it.inflight = p
				it.tries++
				if p.inflight == nil {
					p.inflight = map[wire.InvHash]time.Time{}
				}
				p.inflight[h] = now.Add(retry)
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
// another source, and now and then forgets objects nobody delivered.
func (f *fetcher) expire(now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for p := range f.busy {
		for h, deadline := range p.inflight {
			if now.Before(deadline) {
				continue
			}
			f.land(p, h)
			it := f.items[h]
			if it == nil {
				continue
			}
			it.inflight = nil
			src := it.pickSource(p)
			if it.tries >= maxFetchTries || src == nil {
				delete(f.items, h)
				continue
			}
			src.retry = append(src.retry, h)
		}
	}
	if now.Sub(f.lastSweep) < sweepEvery {
		return
	}
	f.lastSweep = now
	for h, it := range f.items {
		if it.inflight == nil && (now.Sub(it.added) > fetchItemTTL || it.pickSource(nil) == nil) {
			delete(f.items, h)
		}
	}
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
		it.inflight = nil
		it.dropSource(p)
		if src := it.pickSource(nil); src != nil {
			src.retry = append(src.retry, h)
		} else {
			delete(f.items, h)
		}
	}
	for _, q := range [][]wire.InvHash{p.want, p.retry} {
		for _, h := range q {
			if it := f.items[h]; it != nil {
				it.dropSource(p)
				if it.inflight == nil && len(it.sources) == 0 {
					delete(f.items, h)
				}
			}
		}
	}
	delete(f.busy, p)
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
	for _, s := range it.sources {
		if s == p {
			return true
		}
	}
	return false
}

func (it *fetchItem) dropSource(p *peer) {
	for i, s := range it.sources {
		if s == p {
			it.sources = append(it.sources[:i], it.sources[i+1:]...)
			return
		}
	}
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
