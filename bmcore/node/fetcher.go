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
	maxFetchItems = 500000
	// fetchItemTTL: an object nobody delivered within this time is forgotten.
	fetchItemTTL = 30 * time.Minute
)

type fetchItem struct {
	sources  []*peer
	inflight *peer
	deadline time.Time
	tries    int
	added    time.Time
}

// fetcher tracks the objects peers announced that we lack, spreads the
// getdata requests over the announcing peers and re-requests what is not
// delivered in time — from another peer when there is one, because PyB
// silently drops getdata that arrive during its anti-intersection window
// (SPEC.md §4.4). Its mutex also guards the want/retry/inflight fields of
// every peer.
type fetcher struct {
	mu    sync.Mutex
	items map[wire.InvHash]*fetchItem
	wake  chan struct{}
}

func newFetcher() *fetcher {
	return &fetcher{items: map[wire.InvHash]*fetchItem{}, wake: make(chan struct{}, 1)}
}

func (f *fetcher) kick() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// tracking reports whether h is already being fetched.
func (f *fetcher) tracking(h wire.InvHash) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.items[h] != nil
}

// announce records that p has the objects hs, which we lack.
func (f *fetcher) announce(p *peer, hs []wire.InvHash, now time.Time) {
	if len(hs) == 0 {
		return
	}
	f.mu.Lock()
	for _, h := range hs {
		it := f.items[h]
		if it == nil {
			if len(f.items) >= maxFetchItems {
				continue
			}
			it = &fetchItem{added: now}
			f.items[h] = it
		}
		known := false
		for _, s := range it.sources {
			if s == p {
				known = true
				break
			}
		}
		if known {
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
		delete(p.inflight, h)
		more = len(p.want)+len(p.retry) > 0
	}
	f.mu.Unlock()
	if more {
		f.kick()
	}
}

// schedule assigns wanted objects to the given (established) peers, in
// random order so that objects several peers announced are spread over
// them, and returns the getdata batches to send.
func (f *fetcher) schedule(peers []*peer, now time.Time, retry time.Duration) map[*peer][]wire.InvHash {
	rand.Shuffle(len(peers), func(i, j int) { peers[i], peers[j] = peers[j], peers[i] })
	f.mu.Lock()
	defer f.mu.Unlock()
	var out map[*peer][]wire.InvHash
	for progress := true; progress; {
		progress = false
		for _, p := range peers {
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
				it.inflight, it.deadline = p, now.Add(retry)
				it.tries++
				if p.inflight == nil {
					p.inflight = map[wire.InvHash]struct{}{}
				}
				p.inflight[h] = struct{}{}
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

// expire re-queues requests not answered by their deadline and forgets
// objects that have no live source left, were tried too often or are old.
func (f *fetcher) expire(now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for h, it := range f.items {
		if p := it.inflight; p != nil {
			if now.Before(it.deadline) {
				continue
			}
			delete(p.inflight, h)
			it.inflight = nil
			if it.tries >= maxFetchTries {
				delete(f.items, h)
				continue
			}
			if src := it.pickSource(p); src != nil {
				src.retry = append(src.retry, h)
				continue
			}
			delete(f.items, h)
			continue
		}
		if now.Sub(it.added) > fetchItemTTL || it.pickSource(nil) == nil {
			delete(f.items, h)
		}
	}
}

// peerGone hands what p was fetching to other sources.
func (f *fetcher) peerGone(p *peer) {
	f.mu.Lock()
	for h := range p.inflight {
		it := f.items[h]
		if it == nil {
			continue
		}
		it.inflight = nil
		if src := it.pickSource(p); src != nil && src != p {
			src.retry = append(src.retry, h)
		} else {
			delete(f.items, h)
		}
	}
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

// pickSource chooses a live source at random, preferring one other than prev.
func (it *fetchItem) pickSource(prev *peer) *peer {
	var live []*peer
	prevLive := false
	for _, s := range it.sources {
		if s.isClosing() {
			continue
		}
		if s == prev {
			prevLive = true
			continue
		}
		live = append(live, s)
	}
	if len(live) > 0 {
		return live[rand.IntN(len(live))]
	}
	if prevLive {
		return prev
	}
	return nil
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
