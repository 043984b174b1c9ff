package node

import (
	"encoding/binary"
	"sync"
	"time"

	"github.com/bmgate/bmgate/bmcore/wire"
)

// hashSet is a bounded set of inventory hashes with two generations: when
// the current one reaches limit it becomes the old one and the previous old
// one is dropped. It keys on the first 8 bytes of the hash (a false match
// needs a 2^64 search), which keeps a per-peer set of 2×limit entries near
// 2 MB. Used for what a peer already knows and for recently rejected
// objects, where forgetting an entry only costs a redundant inv or a second
// validation.
type hashSet struct {
	mu       sync.Mutex
	cur, old map[uint64]struct{}
	limit    int
}

func newHashSet(limit int) *hashSet {
	return &hashSet{cur: map[uint64]struct{}{}, limit: limit}
}

func setKey(h *wire.InvHash) uint64 { return binary.LittleEndian.Uint64(h[:8]) }

func (s *hashSet) add(h wire.InvHash) {
	s.mu.Lock()
	s.addLocked(setKey(&h))
	s.mu.Unlock()
}

func (s *hashSet) addMany(hs []wire.InvHash) {
	s.mu.Lock()
	for i := range hs {
		s.addLocked(setKey(&hs[i]))
	}
	s.mu.Unlock()
}

func (s *hashSet) addLocked(k uint64) {
	if len(s.cur) >= s.limit {
		s.old, s.cur = s.cur, make(map[uint64]struct{}, s.limit/4)
	}
	s.cur[k] = struct{}{}
}

func (s *hashSet) has(h wire.InvHash) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hasLocked(setKey(&h))
}

func (s *hashSet) hasLocked(k uint64) bool {
	if _, ok := s.cur[k]; ok {
		return true
	}
	_, ok := s.old[k]
	return ok
}

// without returns the hashes of hs not in the set.
func (s *hashSet) without(hs []wire.InvHash) []wire.InvHash {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := hs[:0:0]
	for i := range hs {
		if !s.hasLocked(setKey(&hs[i])) {
			out = append(out, hs[i])
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
