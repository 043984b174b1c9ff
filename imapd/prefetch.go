package imapd

import (
	"context"
	"sync"
)

const (
	// prefetchWorkers read messages from the store in parallel with the
	// connection writing FETCH responses (or SEARCH matching): each
	// MessageRaw is a round trip (and, on SQLite, a statement parse),
	// which dominates a 10,000-message header fetch otherwise.
	prefetchWorkers = 3
	// prefetchWindow bounds how many messages are read ahead and held in
	// memory at once.
	prefetchWindow = 16
)

// rawResult is one message read ahead.
type rawResult struct {
	raw  []byte
	err  error
	done chan struct{}
}

// prefetcher reads the messages of uids in the background, in order, at
// most prefetchWindow ahead of the consumer.
type prefetcher struct {
	results []rawResult
	slots   chan struct{}
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// prefetch starts reading. The caller must call next for each index in
// order (or stop early) and then close.
func (s *session) prefetch(ctx context.Context, v *mailboxView, uids []uint32) *prefetcher {
	ctx, cancel := context.WithCancel(ctx)
	p := &prefetcher{
		results: make([]rawResult, len(uids)),
		slots:   make(chan struct{}, prefetchWindow),
		ctx:     ctx,
		cancel:  cancel,
	}
	for i := range p.results {
		p.results[i].done = make(chan struct{})
	}
	work := make(chan int)
	for range min(prefetchWorkers, len(uids)) {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for i := range work {
				r := &p.results[i]
				r.raw, r.err = s.loadRaw(ctx, v, uids[i])
				close(r.done)
			}
		}()
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer close(work)
		for i := range uids {
			select {
			case p.slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
			select {
			case work <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	return p
}

// next waits for message i, hands it over and frees its slot.
func (p *prefetcher) next(i int) ([]byte, error) {
	r := &p.results[i]
	select {
	case <-r.done:
	case <-p.ctx.Done():
		return nil, p.ctx.Err()
	}
	raw, err := r.raw, r.err
	r.raw = nil
	<-p.slots
	return raw, err
}

// close stops the workers and waits for them.
func (p *prefetcher) close() {
	p.cancel()
	p.wg.Wait()
}
