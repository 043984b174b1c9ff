package smtpd

import (
	"sync"
	"time"
)

// throttle slows down password guessing: every failed login from an IP
// costs that IP a delay before the answer, growing with the failures seen
// in the last throttleWindow (up to throttleMaxSteps times the base delay).
// Together with the per-IP connection limit this bounds the guessing rate.
type throttle struct {
	base time.Duration

	mu    sync.Mutex
	fails map[string]failures
}

type failures struct {
	n    int
	last time.Time
}

const (
	throttleWindow   = 15 * time.Minute
	throttleMaxSteps = 10
	throttleMaxIPs   = 1 << 16 // memory bound for the failure table
)

func newThrottle(base time.Duration) *throttle {
	return &throttle{base: base, fails: make(map[string]failures)}
}

// failed records a failed login from ip and returns how long to wait before
// answering it.
func (t *throttle) failed(ip string, now time.Time) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.fails[ip]
	if now.Sub(f.last) > throttleWindow {
		f = failures{}
	}
	f.n++
	f.last = now
	if len(t.fails) >= throttleMaxIPs {
		t.prune(now)
	}
	t.fails[ip] = f
	return t.base * time.Duration(min(f.n, throttleMaxSteps))
}

// succeeded forgets the failures of ip.
func (t *throttle) succeeded(ip string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.fails, ip)
}

func (t *throttle) prune(now time.Time) {
	for ip, f := range t.fails {
		if now.Sub(f.last) > throttleWindow {
			delete(t.fails, ip)
		}
	}
	if len(t.fails) >= throttleMaxIPs {
		// Under a spread-out attack every entry is fresh: start over
		// rather than grow without bound.
		clear(t.fails)
	}
}
