package node

import (
	"sync"
	"time"

	"github.com/bmgate/bmgate/bmcore/wire"
)

// hashSet is a bounded set of inventory hashes with two generations: when
// the current one reaches limit it becomes the old one and the previous old
// one is dropped. Used for what a peer already knows and for recently
// rejected objects, where forgetting an entry only costs a redundant inv or
// a second validation.
type hashSet struct {
	mu       sync.Mutex
	cur, old map[wire.InvHash]struct{}
	limit    int
}

func newHashSet(limit int) *hashSet {
	return &hashSet{cur: map[wire.InvHash]struct{}{}, limit: limit}
}

func (s *hashSet) add(h wire.InvHash) {
	s.mu.Lock()
	s.addLocked(h)
	s.mu.Unlock()
}

func (s *hashSet) addMany(hs []wire.InvHash) {
	s.mu.Lock()
	for _, h := range hs {
		s.addLocked(h)
	}
	s.mu.Unlock()
}

func (s *hashSet) addLocked(h wire.InvHash) {
	if len(s.cur) >= s.limit {
		s.old, s.cur = s.cur, make(map[wire.InvHash]struct{}, s.limit/4)
	}
	s.cur[h] = struct{}{}
}

func (s *hashSet) has(h wire.InvHash) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.cur[h]; ok {
		return true
	}
	_, ok := s.old[h]
	return ok
}

// without returns the hashes of hs not in the set.
func (s *hashSet) without(hs []wire.InvHash) []wire.InvHash {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := hs[:0:0]
	for _, h := range hs {
		_, a := s.cur[h]
		_, b := s.old[h]
		if !a && !b {
			out = append(out, h)
		}
	}
	return out
}

// haveSet indexes the hashes the inventory holds, with their expiry, so the
// inv exchange costs no inventory query per announced hash.
type haveSet struct {
	mu sync.Mutex
	m  map[wire.InvHash]int64 // hash → expiresTime
}

func newHaveSet() *haveSet { return &haveSet{m: map[wire.InvHash]int64{}} }

func (s *haveSet) add(h wire.InvHash, expires time.Time) {
	s.mu.Lock()
	s.m[h] = expires.Unix()
	s.mu.Unlock()
}

func (s *haveSet) has(h wire.InvHash) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.m[h]
	return ok
}

// without returns the hashes of hs not in the set.
func (s *haveSet) without(hs []wire.InvHash) []wire.InvHash {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := hs[:0:0]
	for _, h := range hs {
		if _, ok := s.m[h]; !ok {
			out = append(out, h)
		}
	}
	return out
}

func (s *haveSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// prune drops entries that expired before the given time, as Inventory.Expire does.
func (s *haveSet) prune(before time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for h, exp := range s.m {
		if exp < before.Unix() {
			delete(s.m, h)
		}
	}
}
