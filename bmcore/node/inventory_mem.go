package node

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/bmgate/bmgate/bmcore/inventory"
	"github.com/bmgate/bmgate/bmcore/wire"
)

// NewMemInventory returns an in-memory Inventory for tests.
func NewMemInventory() inventory.Inventory {
	return &memInventory{objs: map[wire.InvHash]inventory.StoredObject{}}
}

type memInventory struct {
	mu   sync.Mutex
	objs map[wire.InvHash]inventory.StoredObject
}

func (m *memInventory) Has(_ context.Context, h wire.InvHash) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.objs[h]
	return ok, nil
}

func (m *memInventory) Get(_ context.Context, h wire.InvHash) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.objs[h]
	if !ok {
		return nil, inventory.ErrNotFound
	}
	return o.Raw, nil
}

func (m *memInventory) Put(_ context.Context, o inventory.StoredObject) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.objs[o.Hash]; ok {
		return false, nil
	}
	o.Raw = append([]byte(nil), o.Raw...)
	m.objs[o.Hash] = o
	return true, nil
}

func (m *memInventory) Hashes(_ context.Context, stream uint64, now time.Time) ([]wire.InvHash, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var hs []wire.InvHash
	for h, o := range m.objs {
		if o.Stream == stream && o.Expires.After(now) {
			hs = append(hs, h)
		}
	}
	return hs, nil
}

func (m *memInventory) Expire(_ context.Context, before time.Time) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for h, o := range m.objs {
		if o.Expires.Before(before) {
			delete(m.objs, h)
			n++
		}
	}
	return n, nil
}

// NewMemKnownNodes returns an in-memory KnownNodes for tests.
func NewMemKnownNodes() inventory.KnownNodes {
	return &memKnownNodes{nodes: map[memNodeKey]inventory.KnownNode{}}
}

type memNodeKey struct {
	addr   string
	stream uint64
}

type memKnownNodes struct {
	mu    sync.Mutex
	nodes map[memNodeKey]inventory.KnownNode
}

func (m *memKnownNodes) ListNodes(_ context.Context, stream uint64, limit int) ([]inventory.KnownNode, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []inventory.KnownNode
	for k, n := range m.nodes {
		if k.stream == stream {
			out = append(out, n)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].LastSeen.After(out[j].LastSeen) })
	if limit >= 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func (m *memKnownNodes) UpsertNode(_ context.Context, n inventory.KnownNode) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.nodes[memNodeKey{n.Addr, n.Stream}] = n
	return nil
}

func (m *memKnownNodes) RemoveNode(_ context.Context, addr string, stream uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.nodes, memNodeKey{addr, stream})
	return nil
}
