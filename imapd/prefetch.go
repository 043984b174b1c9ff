package imapd

import (
	"context"
	"sync"

	"github.com/bmgate/bmgate/mailmap"
)

const (
	// rawBatch and rawBatchBytes bound one store read of messages
	// (MessagesRaw): at most that many messages, and no more bytes than
	// that (by the sizes the view knows) unless one message alone is
	// bigger. One round trip (and, on SQLite, one statement) per batch
	// instead of per message is what a 10,000-message fetch or text
	// search costs otherwise; the byte bound keeps big messages few.
	rawBatch      = 128
	rawBatchBytes = 512 << 10
	// headerBatch is the same for header index entries (MessageHeaders),
	// which are small: a header is a few hundred bytes.
	headerBatch = 256
	// prefetchWorkers read batches from the store in parallel with the
	// connection writing FETCH responses (or SEARCH matching). At most
	// prefetchWorkers+1 batches are held at once.
	prefetchWorkers = 2
)

// result is one message read ahead.
type result[T any] struct {
	val  T
	ok   bool // the message exists
	err  error
	done chan struct{}
}

// prefetcher reads something of each message of a list (its bytes, its
// header index entry) in the background, in batches, in order, at most
// prefetchWorkers+1 batches ahead of the consumer.
type prefetcher[T any] struct {
	results []result[T]
	slots   chan struct{} // one per batch read and not yet consumed past
	starts  map[int]bool  // indexes that begin a batch
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// loader reads a batch of messages of a mailbox; absent UIDs are gone.
type loader[T any] func(ctx context.Context, userID, mailboxID int64, uids []uint32) (map[uint32]T, error)

// prefetchRaw reads the messages' bytes ahead (MessagesRaw).
func (s *session) prefetchRaw(ctx context.Context, v *mailboxView, ts []target) *prefetcher[[]byte] {
	var batches []int // each batch's first index, then len(ts)
	var n, size int64
	for i, t := range ts {
		if i == 0 || n == rawBatch || (n > 0 && size+t.msg.size > rawBatchBytes) {
			batches = append(batches, i)
			n, size = 0, 0
		}
		n++
		size += t.msg.size
	}
	return startPrefetch(ctx, s, v, uidsOf(ts), append(batches, len(ts)), s.srv.store.MessagesRaw)
}

// prefetchHeaders reads the messages' header index entries ahead
// (MessageHeaders, the given parts): no message bodies.
func (s *session) prefetchHeaders(ctx context.Context, v *mailboxView, ts []target, parts mailmap.HeaderParts) *prefetcher[mailmap.MessageHeader] {
	var batches []int
	for i := 0; i < len(ts); i += headerBatch {
		batches = append(batches, i)
	}
	load := func(ctx context.Context, userID, mailboxID int64, uids []uint32) (map[uint32]mailmap.MessageHeader, error) {
		return s.srv.store.MessageHeaders(ctx, userID, mailboxID, uids, parts)
	}
	return startPrefetch(ctx, s, v, uidsOf(ts), append(batches, len(ts)), load)
}

// startPrefetch starts reading uids in the given batches (the first index
// of each, then len(uids)). The caller must call next for each index in
// order (or stop early) and then close.
func startPrefetch[T any](ctx context.Context, s *session, v *mailboxView, uids []uint32, bounds []int, load loader[T]) *prefetcher[T] {
	ctx, cancel := context.WithCancel(ctx)
	p := &prefetcher[T]{
		results: make([]result[T], len(uids)),
		ctx:     ctx,
		cancel:  cancel,
	}
	for i := range p.results {
		p.results[i].done = make(chan struct{})
	}
	batches := len(bounds) - 1
	// A batch is read once the consumer is within prefetchWorkers+1
	// batches of it: consuming the first message of batch i frees the
	// read of batch i+prefetchWorkers+1.
	p.slots = make(chan struct{}, prefetchWorkers+1)
	p.starts = make(map[int]bool, batches)
	for b := range batches {
		p.starts[bounds[b]] = true
	}
	type span struct{ start, end int }
	work := make(chan span)
	for range min(prefetchWorkers, batches) {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for sp := range work {
				loadBatch(ctx, s, v, load, uids[sp.start:sp.end], p.results[sp.start:sp.end])
			}
		}()
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer close(work)
		for b := range batches {
			select {
			case p.slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
			select {
			case work <- span{bounds[b], bounds[b+1]}:
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
	if i > 0 && p.starts[i] {
		<-p.slots // the previous batch is consumed
	}
	return val, ok, err
}

// close stops the workers and waits for them.
func (p *prefetcher[T]) close() {
	p.cancel()
	p.wg.Wait()
}
