package node

import (
	"sync"
	"time"
)

// Misbehaviour scoring. A peer whose score reaches banThreshold is
// disconnected and its ban key refused for Config.BanDuration. Scores decay
// by scoreDecayPerMinute for every full minute, so an honest peer that now
// and then relays an object our clock disagrees with (docs/protocol.md §6.2) never
// gets there, while a burst of offences adds up exactly.
const (
	banThreshold        = 100
	scoreDecayPerMinute = 1.0

	scoreMalformedMsg    = 20  // undecodable addr/inv/getdata/error payload
	scoreMalformedObject = 20  // non-minimal header var_int, payload over 2^18
	scoreBadPoW          = 5   // insufficient proof of work
	scoreBadExpiry       = 2   // expired or too far in the future: often a clock issue
	scoreWrongStream     = 5   // pushed an object of a stream we did not ask for
	scoreFraming         = 50  // bad checksum, oversized length, command before handshake
	scoreBadMagic        = 25  // another network or protocol
	scoreInvFlood        = 100 // more inventory than the token bucket allows
	scoreUnanswered      = 40  // disconnected for unanswered getdata: the third time within the hour bans
)

type scoreEntry struct {
	value float64
	at    time.Time
}

// banList holds the scores and bans of ban keys: the IP of an inbound peer,
// the dialled address of an outbound one.
type banList struct {
	mu     sync.Mutex
	scores map[string]*scoreEntry
	bans   map[string]time.Time // key → end of ban
}

func newBanList() *banList {
	return &banList{scores: map[string]*scoreEntry{}, bans: map[string]time.Time{}}
}

// add raises key's score by delta at now and reports whether it reached
// the threshold, in which case the key is banned until now+d.
func (b *banList) add(key string, delta float64, now time.Time, d time.Duration) (score float64, banned bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.scores[key]
	if e == nil {
		e = &scoreEntry{at: now}
		b.scores[key] = e
	}
	settle(e, now)
	e.value += delta
	if e.value >= banThreshold {
		delete(b.scores, key)
		b.bans[key] = now.Add(d)
		return e.value, true
	}
	return e.value, false
}

func (b *banList) score(key string, now time.Time) float64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	if e := b.scores[key]; e != nil {
		return decayed(e, now)
	}
	return 0
}

func (b *banList) banned(key string, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	until, ok := b.bans[key]
	return ok && now.Before(until)
}

// count returns the number of active bans.
func (b *banList) count(now time.Time) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, until := range b.bans {
		if now.Before(until) {
			n++
		}
	}
	return n
}

// prune forgets ended bans and fully decayed scores.
func (b *banList) prune(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for k, until := range b.bans {
		if !now.Before(until) {
			delete(b.bans, k)
		}
	}
	for k, e := range b.scores {
		if decayed(e, now) <= 0 {
			delete(b.scores, k)
		}
	}
}

// decayed returns the score after the full minutes since e.at.
func decayed(e *scoreEntry, now time.Time) float64 {
	mins := float64(now.Sub(e.at) / time.Minute)
	return max(0, e.value-mins*scoreDecayPerMinute)
}

// settle applies the decay of the full minutes elapsed and keeps the
// fraction of a minute for later, so frequent updates still decay.
func settle(e *scoreEntry, now time.Time) {
	mins := now.Sub(e.at) / time.Minute
	if mins <= 0 {
		return
	}
	e.value = max(0, e.value-float64(mins)*scoreDecayPerMinute)
	e.at = e.at.Add(mins * time.Minute)
}
