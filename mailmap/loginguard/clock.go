package loginguard

import (
	"sync"
	"time"
)

// Clock is the time source of a Guard.
type Clock interface {
	Now() time.Time
	// After returns a channel that receives once d has passed, and a
	// function that stops it.
	After(d time.Duration) (<-chan time.Time, func() bool)
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) After(d time.Duration) (<-chan time.Time, func() bool) {
	t := time.NewTimer(d)
	return t.C, t.Stop
}

// ManualClock is a Clock that moves only when told to (tests): waits end
// when Advance passes their time, or once Free is called.
type ManualClock struct {
	mu      sync.Mutex
	now     time.Time
	timers  map[*manualTimer]struct{}
	changed chan struct{} // closed when a timer is added or removed
	free    bool
	freedAt time.Time // real time of Free
}

type manualTimer struct {
	at time.Time
	ch chan time.Time
}

// NewManualClock returns a ManualClock at t.
func NewManualClock(t time.Time) *ManualClock {
	return &ManualClock{now: t, timers: make(map[*manualTimer]struct{}), changed: make(chan struct{})}
}

// Now returns the clock's time.
func (c *ManualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.free {
		return c.now.Add(time.Since(c.freedAt))
	}
	return c.now
}

// After implements Clock.
func (c *ManualClock) After(d time.Duration) (<-chan time.Time, func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.free {
		t := time.NewTimer(d)
		return t.C, t.Stop
	}
	t := &manualTimer{at: c.now.Add(d), ch: make(chan time.Time, 1)}
	if d <= 0 {
		t.ch <- c.now
		return t.ch, func() bool { return false }
	}
	c.timers[t] = struct{}{}
	c.signal()
	return t.ch, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		_, ok := c.timers[t]
		delete(c.timers, t)
		if ok {
			c.signal()
		}
		return ok
	}
}

func (c *ManualClock) signal() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// Advance moves the clock by d and fires the timers that are due.
func (c *ManualClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	for t := range c.timers {
		if !t.at.After(c.now) {
			t.ch <- c.now
			delete(c.timers, t)
		}
	}
	c.signal()
}

// Waiters returns the number of pending timers, and a channel closed when
// that number may have changed.
func (c *ManualClock) Waiters() (int, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers), c.changed
}

// WaitForWaiters blocks until at least n timers are pending or done is
// closed; it reports whether n were reached.
func (c *ManualClock) WaitForWaiters(n int, done <-chan struct{}) bool {
	for {
		k, changed := c.Waiters()
		if k >= n {
			return true
		}
		select {
		case <-changed:
		case <-done:
			return false
		}
	}
}

// Free ends the test's control: the clock jumps a day ahead (past every
// lock and wait), pending waits end, and from then on it runs in real time,
// so nothing stays parked while the test shuts down.
func (c *ManualClock) Free() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(24 * time.Hour)
	c.free, c.freedAt = true, time.Now()
	for t := range c.timers {
		t.ch <- c.now
		delete(c.timers, t)
	}
	c.signal()
}
