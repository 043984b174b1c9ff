package pow

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
)

// ErrWorkers is returned for a negative Options.Workers.
var ErrWorkers = errors.New("negative worker count")

// chunkTrials is how many trials a worker runs between looks at the
// context and the other workers: about a millisecond for the fast kernels,
// a few for the portable one.
const chunkTrials = 1 << 14

// Options tunes Solve. The zero value uses every CPU and starts at nonce 0.
type Options struct {
	// Workers is the number of goroutines searching; 0 means runtime.NumCPU().
	Workers int
	// Progress, if not nil, is reset and then updated while solving.
	Progress *Progress
	// StartNonce is the first nonce tried. Worker w tries StartNonce+w,
	// then every Workers-th nonce after it, so no nonce is tried twice;
	// with one worker the result is the smallest valid nonce from StartNonce
	// on. PyBitmessage's single-thread loop starts at 1 (docs/protocol.md §6.3).
	StartNonce uint64
}

// Progress reports how far a Solve has got. Its methods may be called from
// any goroutine while Solve runs.
type Progress struct {
	trials   atomic.Uint64
	expected atomic.Uint64
}

// Trials is the number of nonces tried so far.
func (p *Progress) Trials() uint64 { return p.trials.Load() }

// Expected is the average number of trials the target needs (ExpectedTrials).
func (p *Progress) Expected() uint64 { return p.expected.Load() }

// Solve finds a nonce whose trial value for payload (the object without its
// nonce) is at most target (docs/protocol.md §6.3). It returns ctx.Err() if ctx ends
// first; all its goroutines have exited when it returns.
func Solve(ctx context.Context, payload []byte, target uint64, opts Options) (uint64, error) {
	ih := InitialHash(payload)
	return solve(ctx, newJob(&ih), target, opts, kernels[0])
}

// SolveObject is Solve returning the whole object: uint64_be(nonce) || payload.
func SolveObject(ctx context.Context, payload []byte, target uint64, opts Options) ([]byte, error) {
	nonce, err := Solve(ctx, payload, target, opts)
	if err != nil {
		return nil, err
	}
	obj := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint64(obj, nonce)
	copy(obj[8:], payload)
	return obj, nil
}

func solve(ctx context.Context, j *job, target uint64, opts Options, k kernel) (uint64, error) {
	workers := opts.Workers
	if workers < 0 {
		return 0, fmt.Errorf("solve proof of work: %w", ErrWorkers)
	}
	if workers == 0 {
		workers = runtime.NumCPU()
	}
	if p := opts.Progress; p != nil {
		p.trials.Store(0)
		p.expected.Store(ExpectedTrials(target))
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	var (
		wg    sync.WaitGroup
		once  sync.Once
		nonce uint64
		found bool
	)
	for w := range workers {
		wg.Go(func() {
			n, ok := work(wctx, j, target, k, opts.StartNonce+uint64(w), uint64(workers), opts.Progress)
			if ok {
				once.Do(func() {
					nonce, found = n, true
					stop()
				})
			}
		})
	}
	wg.Wait()
	if found {
		return nonce, nil
	}
	return 0, ctx.Err()
}

// work tries start, start+stride, start+2*stride, … until a trial value is
// at most target (returning that nonce) or ctx ends.
func work(ctx context.Context, j *job, target uint64, k kernel, start, stride uint64, p *Progress) (uint64, bool) {
	var nonces, out [8]uint64
	for i := range k.lanes {
		nonces[i] = start + uint64(i)*stride
	}
	incr := uint64(k.lanes) * stride
	iters := uint64(chunkTrials / k.lanes)
	for {
		select {
		case <-ctx.Done():
			return 0, false
		default:
		}
		n := k.search(j, &nonces, incr, iters, target, &out)
		if p != nil {
			p.trials.Add(n * uint64(k.lanes))
		}
		for i := range k.lanes {
			if out[i] <= target {
				return nonces[i] + (n-1)*incr, true
			}
		}
		for i := range k.lanes {
			nonces[i] += n * incr
		}
	}
}
