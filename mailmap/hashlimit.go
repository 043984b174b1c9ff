package mailmap

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// ErrBusy means a password could not be checked now: as many argon2id
// computations as the process allows were running, and none ended within
// the wait. Callers answer with a temporary failure (SMTP 454 4.7.0, IMAP
// NO [UNAVAILABLE]); the attempt is not a failed login.
var ErrBusy = errors.New("mailmap: too many password checks at once, try again later")

// Every argon2id computation of the process (login checks, the dummy check
// for unknown users, hashing a new password) runs under one semaphore: each
// takes argonMemory (19 MiB) for its duration, so the memory spent on
// password hashing is at most slots × 19 MiB, however many logins arrive at
// once. It is global rather than per Store because the memory is the
// process's: several Stores in one process share it.
//
// A computation beyond the limit waits (for its context, and at most the
// configured wait) holding no hash memory, then fails with ErrBusy.

// DefaultPasswordHashWait is how long a password check waits for a free slot.
const DefaultPasswordHashWait = 3 * time.Second

// maxDefaultHashSlots caps the default: on a many-core machine one slot per
// core would allow gigabytes of hash memory, far more than logins need (one
// check takes about 50 ms, so 4 slots verify some 80 logins a second).
const maxDefaultHashSlots = 4

// DefaultPasswordHashSlots is the default number of concurrent password
// hashes: GOMAXPROCS, at most 4.
func DefaultPasswordHashSlots() int { return max(1, min(runtime.GOMAXPROCS(0), maxDefaultHashSlots)) }

type hashLimiter struct {
	mu    sync.Mutex
	slots chan struct{} // a token per running computation; replaced by SetPasswordHashLimit
	wait  time.Duration

	inFlight atomic.Int64
	peak     atomic.Int64
	total    atomic.Uint64
	waited   atomic.Uint64
	refused  atomic.Uint64
}

var hashes = &hashLimiter{slots: make(chan struct{}, DefaultPasswordHashSlots()), wait: DefaultPasswordHashWait}

// SetPasswordHashLimit sets how many argon2id computations may run at once
// in this process (slots ≤ 0: DefaultPasswordHashSlots) and how long a
// check waits for a slot before failing with ErrBusy (wait ≤ 0:
// DefaultPasswordHashWait). Computations already running finish under the
// old limit.
func SetPasswordHashLimit(slots int, wait time.Duration) {
	if slots <= 0 {
		slots = DefaultPasswordHashSlots()
	}
	if wait <= 0 {
		wait = DefaultPasswordHashWait
	}
	hashes.mu.Lock()
	defer hashes.mu.Unlock()
	hashes.slots = make(chan struct{}, slots)
	hashes.wait = wait
}

// PasswordHashStats describes the password-hashing semaphore.
type PasswordHashStats struct {
	Slots    int           // concurrent computations allowed
	Wait     time.Duration // longest wait for a slot
	InFlight int64         // computations running now
	Peak     int64         // most computations ever running at once (since ResetPasswordHashPeak)
	Total    uint64        // computations run
	Waited   uint64        // computations that had to wait for a slot
	Refused  uint64        // checks refused with ErrBusy (or ended by their context) while waiting
}

// PasswordHashStatus returns the semaphore's counters.
func PasswordHashStatus() PasswordHashStats {
	hashes.mu.Lock()
	slots, wait := cap(hashes.slots), hashes.wait
	hashes.mu.Unlock()
	return PasswordHashStats{
		Slots:    slots,
		Wait:     wait,
		InFlight: hashes.inFlight.Load(),
		Peak:     hashes.peak.Load(),
		Total:    hashes.total.Load(),
		Waited:   hashes.waited.Load(),
		Refused:  hashes.refused.Load(),
	}
}

// ResetPasswordHashPeak sets Peak to the computations running now (tests
// measure the peak of one load).
func ResetPasswordHashPeak() { hashes.peak.Store(hashes.inFlight.Load()) }

// acquire takes a slot, waiting at most the configured time (and no longer
// than ctx allows). The returned function gives the slot back.
func (h *hashLimiter) acquire(ctx context.Context) (func(), error) {
	h.mu.Lock()
	slots, wait := h.slots, h.wait
	h.mu.Unlock()
	select {
	case slots <- struct{}{}:
	default:
		h.waited.Add(1)
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case slots <- struct{}{}:
		case <-t.C:
			h.refused.Add(1)
			return nil, ErrBusy
		case <-ctx.Done():
			h.refused.Add(1)
			return nil, ctx.Err()
		}
	}
	n := h.inFlight.Add(1)
	for {
		p := h.peak.Load()
		if n <= p || h.peak.CompareAndSwap(p, n) {
			break
		}
	}
	h.total.Add(1)
	var once sync.Once
	return func() {
		once.Do(func() {
			h.inFlight.Add(-1)
			<-slots
		})
	}, nil
}

// limitedHash is hashPassword under the semaphore.
func limitedHash(ctx context.Context, password string) (string, error) {
	release, err := hashes.acquire(ctx)
	if err != nil {
		return "", err
	}
	defer release()
	return hashPassword(password)
}

// limitedVerify is verifyPassword under the semaphore.
func limitedVerify(ctx context.Context, encoded, password string) (ok, needsRehash bool, err error) {
	release, err := hashes.acquire(ctx)
	if err != nil {
		return false, false, err
	}
	defer release()
	ok, needsRehash = verifyPassword(encoded, password)
	return ok, needsRehash, nil
}
