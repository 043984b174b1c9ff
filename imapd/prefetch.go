package imapd

import (
	"context"
	"sync"

	"github.com/bmgate/bmgate/mailmap"
)

const (
	// prefetchBatch is how many messages one store read (MessagesRaw)
	// fetches: one round trip (and, on SQLite, one statement parse) per
	// batch instead of per message, which dominates a 10,000-message
	// fetch otherwise.
	prefetchBatch = 16
	// headerBatch is the same for header index entries (MessageHeaders),
	// which are small: a header is a few hundred bytes where a message
	// can be megabytes.
	headerBatch = 256
	// prefetchWorkers read batches from the store in parallel with the
	// connection writing FETCH responses (or SEARCH matching).
	prefetchWorkers = 2
)

// result is one message read ahead.
type result[T any] struct {
	val  T
	ok   bool // the message exists
	err  error
	done chan struct{}
}

// prefetcher reads something of each message of uids (its bytes, its header
// index entry) in the background, in batches, in order, at most
// (prefetchWorkers+1) batches ahead of the consumer.
type prefetcher[T any] struct {
	results []result[T]
	slots   chan struct{}
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// loader reads a batch of messages of a mailbox; absent UIDs are gone.
type loader[T any] func(ctx context.Context, userID, mailboxID int64, uids []uint32) (map[uint32]T, error)

// prefetchRaw reads the messages' bytes ahead (MessagesRaw).
func (s *session) prefetchRaw(ctx context.Context, v *mailboxView, uids []uint32) *prefetcher[[]byte] {
	return startPrefetch(ctx, s, v, uids, prefetchBatch, s.srv.store.MessagesRaw)
}

// prefetchHeaders reads the messages' header index entries ahead
// (MessageHeaders): no message bodies.
func (s *session) prefetchHeaders(ctx context.Context, v *mailboxView, uids []uint32) *prefetcher[mailmap.MessageHeader] {
	return startPrefetch(ctx, s, v, uids, headerBatch, s.srv.store.MessageHeaders)
}

// startPrefetch starts reading. The caller must call next for each index in
// order (or stop early) and then close.
func startPrefetch[T any](ctx context.Context, s *session, v *mailboxView, uids []uint32, batch int, load loader[T]) *prefetcher[T] {
	ctx, cancel := context.WithCancel(ctx)
	p := &prefetcher[T]{
		results: make([]result[T], len(uids)),
		slots:   make(chan struct{}, (prefetchWorkers+1)*batch),
		ctx:     ctx,
		cancel:  cancel,
	}
	for i := range p.results {
		p.results[i].done = make(chan struct{})
	}
	batches := (len(uids) + batch - 1) / batch
	work := make(chan int) // index of a batch's first message
	for range min(prefetchWorkers, batches) {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for start := range work {
				end := min(start+batch, len(uids))
				loadBatch(ctx, s, v, load, uids[start:end], p.results[start:end])
			}
		}()
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer close(work)
		for start := 0; start < len(uids); start += batch {
			for range min(batch, len(uids)-start) {
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
// last synced is reported as absent and the view is woken.
func loadBatch[T any](ctx context.Context, s *session, v *mailboxView, load loader[T], uids []uint32, results []result[T]) {
	vals, err := load(ctx, s.user.ID, v.id, uids)
	missing := false
	for i, uid := range uids {
		r := &results[i]
		if err != nil {
			r.err = err
		} else if val, ok := vals[uid]; ok {
			r.val, r.ok = val, true
		} else {
			missing = true
		}
		close(r.done)
	}
	if missing {
		v.wake()
	}
}

// next waits for message i, hands it over and frees its slot. ok is false
// for a message that is gone (expunged meanwhile).
func (p *prefetcher[T]) next(i int) (val T, ok bool, err error) {
	r := &p.results[i]
	select {
	case <-r.done:
	case <-p.ctx.Done():
		return val, false, p.ctx.Err()
	}
	val, ok, err = r.val, r.ok, r.err
	var zero T
	r.val = zero
	<-p.slots
	return val, ok, err
}

// close stops the workers and waits for them.
func (p *prefetcher[T]) close() {
	p.cancel()
	p.wg.Wait()
}
