package imapd

import (
	"context"
	"sync"
)

const (
	// prefetchBatch is how many messages one store read (MessagesRaw)
	// fetches: one round trip (and, on SQLite, one statement parse) per
	// batch instead of per message, which dominates a 10,000-message
	// header fetch otherwise.
	prefetchBatch = 16
	// prefetchWorkers read batches from the store in parallel with the
	// connection writing FETCH responses (or SEARCH matching).
	prefetchWorkers = 2
	// prefetchWindow bounds how many messages are read ahead and held in
	// memory at once: room for every worker's batch and the one being
	// consumed.
	prefetchWindow = (prefetchWorkers + 1) * prefetchBatch
)

// rawResult is one message read ahead.
type rawResult struct {
	raw  []byte
	err  error
	done chan struct{}
}

// prefetcher reads the messages of uids in the background, in batches, in
// order, at most prefetchWindow ahead of the consumer.
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
	batches := (len(uids) + prefetchBatch - 1) / prefetchBatch
	work := make(chan int) // index of a batch's first message
	for range min(prefetchWorkers, batches) {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for start := range work {
				end := min(start+prefetchBatch, len(uids))
				s.loadBatch(ctx, v, uids[start:end], p.results[start:end])
			}
		}()
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer close(work)
		for start := 0; start < len(uids); start += prefetchBatch {
			for range min(prefetchBatch, len(uids)-start) {
				select {
				case p.slots <- struct{}{}:
				case <-ctx.Done():
					return
				}
			}
			select {
			case work <- start:
			case <-ctx.Done():
				return
			}
		}
	}()
	return p
}

// loadBatch reads the messages of uids in one store call and completes
// their results. A message expunged by someone else since the view was
// last synced is reported as (nil, nil) and the view is woken.
func (s *session) loadBatch(ctx context.Context, v *mailboxView, uids []uint32, results []rawResult) {
	raws, err := s.srv.store.MessagesRaw(ctx, s.user.ID, v.id, uids)
	missing := false
	for i, uid := range uids {
		r := &results[i]
		if err != nil {
			r.err = err
		} else if raw, ok := raws[uid]; ok {
			r.raw = raw
		} else {
			missing = true
		}
		close(r.done)
	}
	if missing {
		v.wake()
	}
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
