package node

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/bmgate/bmgate/bmcore/inventory"
	"github.com/bmgate/bmgate/bmcore/wire"
)

// Known-node policy (docs/protocol.md §15).
const (
	maxKnownPerStream = 20000
	// addrAliveWindow: addr entries and advertised nodes must have been seen
	// this recently (PyB ADDRESS_ALIVE).
	addrAliveWindow = 3 * time.Hour
	// forgetAfter: nodes unseen this long are forgotten.
	forgetAfter = 28 * 24 * time.Hour
	// forgetBadAfter: nodes unseen this long with rating <= forgetBadRating are forgotten.
	forgetBadAfter  = 3 * time.Hour
	forgetBadRating = -0.5
	ratingStep      = 0.1
	// addrPerStream, addrPerChild: how many nodes go into the addr sent after
	// the handshake for a stream and for each of its child streams.
	addrPerStream = 500
	addrPerChild  = 250
	maxBackoff    = 30 * time.Minute
	maxFixedWait  = time.Minute
	// fixedFirstWait is the first wait before redialling a fixed peer
	// that could not be reached (doubling up to maxFixedWait): a peer the
	// operator named is expected back soon, e.g. one starting alongside.
	fixedFirstWait = 2 * time.Second
)

type nodeKey struct {
	addr   string
	stream uint64
}

type dialState struct {
	failures int
	next     time.Time
}

// addrBook is the in-memory view of the known nodes. Reads and updates stay
// in memory; flush writes the changed entries to KnownNodes from the
// maintenance goroutine, so a peer's reader never waits for storage.
type addrBook struct {
	mu      sync.Mutex
	nodes   map[uint64]map[string]*inventory.KnownNode
	dirty   map[nodeKey]struct{}
	removed map[nodeKey]struct{}
	dials   map[string]*dialState
	self    map[string]bool
}

func newAddrBook() *addrBook {
	return &addrBook{
		nodes:   map[uint64]map[string]*inventory.KnownNode{},
		dirty:   map[nodeKey]struct{}{},
		removed: map[nodeKey]struct{}{},
		dials:   map[string]*dialState{},
		self:    map[string]bool{},
	}
}

// canonAddr returns host:port with the host in canonical form (IPv4 dotted,
// IPv6 compressed lower case, names lower case).
func canonAddr(s string) (string, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", err
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		host = ip.Unmap().String()
	} else {
		host = strings.ToLower(host)
	}
	return net.JoinHostPort(host, port), nil
}

// addrClass tells which addresses may be stored, advertised and dialled.
type addrClass struct {
	allowPrivate bool
	socks        bool
}

// usable reports whether an address (canonical host:port) belongs in the
// book: a globally routable IP, or a v2 onion (docs/protocol.md §15.2); with
// allowPrivate also loopback and private addresses.
func (c addrClass) usable(addr string) bool {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "0" {
		return false
	}
	if strings.HasSuffix(host, ".onion") {
		_, err := wire.EncodeHost(host)
		return err == nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	return routable(ip) || (c.allowPrivate && (ip.IsLoopback() || ip.IsPrivate()))
}

// dialable adds the transport condition: onions only through a proxy.
func (c addrClass) dialable(addr string) bool {
	return c.usable(addr) && (c.socks || !strings.Contains(addr, ".onion"))
}

// routable is PyB's checkIPAddress made a little stricter: no loopback,
// private (RFC 1918, fc00::/7), link-local, multicast or unspecified.
func routable(ip netip.Addr) bool {
	ip = ip.Unmap()
	return ip.IsGlobalUnicast() && !ip.IsPrivate() && !ip.IsLoopback()
}

// load reads the known nodes of the streams and of their child streams
// (which only go into the addr we send, docs/protocol.md §13).
func (b *addrBook) load(ctx context.Context, store inventory.KnownNodes, streams []uint64) error {
	var all []uint64
	for _, s := range streams {
		all = append(all, s, 2*s, 2*s+1)
	}
	slices.Sort(all)
	for _, s := range slices.Compact(all) {
		list, err := store.ListNodes(ctx, s, maxKnownPerStream)
		if err != nil {
			return fmt.Errorf("load known nodes: %w", err)
		}
		b.mu.Lock()
		for i := range list {
			kn := list[i]
			b.stream(s)[kn.Addr] = &kn
		}
		b.mu.Unlock()
	}
	return nil
}

func (b *addrBook) stream(s uint64) map[string]*inventory.KnownNode {
	m := b.nodes[s]
	if m == nil {
		m = map[string]*inventory.KnownNode{}
		b.nodes[s] = m
	}
	return m
}

// seen records that addr was reported alive at t (from addr or an inbound
// peer). It never lowers LastSeen and, like PyB, ignores new nodes once the
// stream holds maxKnownPerStream.
func (b *addrBook) seen(stream uint64, addr string, services uint64, t time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.self[addr] {
		return
	}
	m := b.stream(stream)
	kn := m[addr]
	if kn == nil {
		if len(m) >= maxKnownPerStream {
			return
		}
		kn = &inventory.KnownNode{Addr: addr, Stream: stream}
		m[addr] = kn
	} else if !t.After(kn.LastSeen) {
		return
	}
	kn.LastSeen = t
	if services != 0 {
		kn.Services = services
	}
	b.markDirty(addr, stream)
}

// connected records a successful outbound handshake: rating +0.1, seen now.
func (b *addrBook) connected(addr string, streams []uint64, services uint64, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.dials, addr)
	for _, s := range streams {
		m := b.stream(s)
		kn := m[addr]
		if kn == nil {
			if len(m) >= maxKnownPerStream {
				continue
			}
			kn = &inventory.KnownNode{Addr: addr, Stream: s}
			m[addr] = kn
		}
		kn.LastSeen = now
		kn.Services = services
		kn.Rating = min(1, kn.Rating+ratingStep)
		b.markDirty(addr, s)
	}
}

// touch refreshes LastSeen of an established outbound peer.
func (b *addrBook) touch(addr string, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for s, m := range b.nodes {
		if kn := m[addr]; kn != nil {
			kn.LastSeen = now
			b.markDirty(addr, s)
		}
	}
}

// failed records a failed dial or handshake: rating −0.1 and a backoff
// that doubles per consecutive failure.
func (b *addrBook) failed(addr string, now time.Time, base, limit time.Duration) (wait time.Duration, failures int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	d := b.dials[addr]
	if d == nil {
		d = &dialState{}
		b.dials[addr] = d
	}
	wait = min(base<<min(d.failures, 16), limit)
	d.failures++
	d.next = now.Add(wait)
	for s, m := range b.nodes {
		if kn := m[addr]; kn != nil {
			kn.Rating = max(-1, kn.Rating-ratingStep)
			b.markDirty(addr, s)
		}
	}
	return wait, d.failures
}

// hold keeps addr from being dialled until now+d without touching its rating
// (used after rotating a connection away).
func (b *addrBook) hold(addr string, until time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	d := b.dials[addr]
	if d == nil {
		d = &dialState{}
		b.dials[addr] = d
	}
	d.next = until
}

func (b *addrBook) mayDial(addr string, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.self[addr] {
		return false
	}
	d := b.dials[addr]
	return d == nil || !now.Before(d.next)
}

// markSelf remembers that addr leads back to this node and forgets it.
func (b *addrBook) markSelf(addr string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.self[addr] = true
	for s, m := range b.nodes {
		if _, ok := m[addr]; ok {
			delete(m, addr)
			b.markRemoved(addr, s)
		}
	}
}

// candidates returns up to n dialable addresses of the given streams that
// pass skip, drawn at random with weight 1.1+rating, so better-rated nodes
// come first more often but every node gets a chance.
func (b *addrBook) candidates(streams []uint64, n int, now time.Time, class addrClass, skip func(string) bool) []string {
	b.mu.Lock()
	type cand struct {
		addr string
		key  float64
	}
	var cs []cand
	seen := map[string]bool{}
	for _, s := range streams {
		for addr, kn := range b.nodes[s] {
			if seen[addr] || b.self[addr] {
				continue
			}
			seen[addr] = true
			if d := b.dials[addr]; d != nil && now.Before(d.next) {
				continue
			}
			if !class.dialable(addr) {
				continue
			}
			// Weighted sampling without replacement (Efraimidis–Spirakis).
			w := 1.1 + kn.Rating
			cs = append(cs, cand{addr, -rand.ExpFloat64() / w})
		}
	}
	b.mu.Unlock()
	// Partial selection of the n largest keys.
	var out []string
	for len(out) < n && len(cs) > 0 {
		best := 0
		for i := range cs {
			if cs[i].key > cs[best].key {
				best = i
			}
		}
		if !skip(cs[best].addr) {
			out = append(out, cs[best].addr)
		}
		cs[best] = cs[len(cs)-1]
		cs = cs[:len(cs)-1]
	}
	return out
}

// sample returns the addr entries sent after a handshake (docs/protocol.md §15.2):
// for each of the peer's streams up to 500 nodes of the stream and 250 of
// each child stream, seen within 3 h, rating >= 0, no onions, in random order.
func (b *addrBook) sample(peerStreams []uint64, now time.Time, class addrClass, exclude string) []wire.NetAddr {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []wire.NetAddr
	take := func(s uint64, limit int) {
		var list []wire.NetAddr
		for addr, kn := range b.nodes[s] {
			if addr == exclude || kn.Rating < 0 || now.Sub(kn.LastSeen) > addrAliveWindow ||
				strings.Contains(addr, ".onion") || !class.usable(addr) || s > 1<<32-1 {
				continue
			}
			na, ok := netAddrOf(addr)
			if !ok {
				continue
			}
			na.Time, na.Stream, na.Services = uint64(max(kn.LastSeen.Unix(), 0)), uint32(s), wire.ServiceNetwork
			list = append(list, na)
		}
		rand.Shuffle(len(list), func(i, j int) { list[i], list[j] = list[j], list[i] })
		out = append(out, list[:min(limit, len(list))]...)
	}
	for _, s := range peerStreams {
		take(s, addrPerStream)
		take(2*s, addrPerChild)
		take(2*s+1, addrPerChild)
	}
	return out
}

func netAddrOf(addr string) (wire.NetAddr, bool) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return wire.NetAddr{}, false
	}
	ip, err := wire.EncodeHost(host)
	if err != nil {
		return wire.NetAddr{}, false
	}
	port, err := netip.ParseAddrPort("0.0.0.0:" + portStr)
	if err != nil {
		return wire.NetAddr{}, false
	}
	return wire.NetAddr{IP: ip, Port: port.Port()}, true
}

// empty reports whether the book has no node in any of the streams.
func (b *addrBook) empty(streams []uint64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, s := range streams {
		if len(b.nodes[s]) > 0 {
			return false
		}
	}
	return true
}

// cleanup forgets nodes unseen for 28 days, or for 3 h with a bad rating
// (docs/protocol.md §15.2), and dial states that no longer hold anything back.
func (b *addrBook) cleanup(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for s, m := range b.nodes {
		for addr, kn := range m {
			age := now.Sub(kn.LastSeen)
			if age > forgetAfter || (age > forgetBadAfter && kn.Rating <= forgetBadRating) {
				delete(m, addr)
				b.markRemoved(addr, s)
			}
		}
	}
	for addr, d := range b.dials {
		if now.Sub(d.next) > maxBackoff {
			delete(b.dials, addr)
		}
	}
}

func (b *addrBook) markDirty(addr string, s uint64) {
	k := nodeKey{addr, s}
	delete(b.removed, k)
	b.dirty[k] = struct{}{}
}

func (b *addrBook) markRemoved(addr string, s uint64) {
	k := nodeKey{addr, s}
	delete(b.dirty, k)
	b.removed[k] = struct{}{}
}

// flush writes changed and removed entries to the store. Entries that fail
// to write stay pending for the next flush.
func (b *addrBook) flush(ctx context.Context, store inventory.KnownNodes) error {
	b.mu.Lock()
	var ups []inventory.KnownNode
	for k := range b.dirty {
		if kn := b.nodes[k.stream][k.addr]; kn != nil {
			ups = append(ups, *kn)
		}
	}
	var rms []nodeKey
	for k := range b.removed {
		rms = append(rms, k)
	}
	clear(b.dirty)
	clear(b.removed)
	b.mu.Unlock()

	var firstErr error
	for i, kn := range ups {
		if err := store.UpsertNode(ctx, kn); err != nil {
			b.mu.Lock()
			for _, r := range ups[i:] {
				b.dirty[nodeKey{r.Addr, r.Stream}] = struct{}{}
			}
			b.mu.Unlock()
			firstErr = fmt.Errorf("save known node: %w", err)
			break
		}
	}
	for i, k := range rms {
		if err := store.RemoveNode(ctx, k.addr, k.stream); err != nil {
			b.mu.Lock()
			for _, r := range rms[i:] {
				if _, ok := b.dirty[r]; !ok {
					b.removed[r] = struct{}{}
				}
			}
			b.mu.Unlock()
			if firstErr == nil {
				firstErr = fmt.Errorf("remove known node: %w", err)
			}
			break
		}
	}
	return firstErr
}

// addSeeds inserts the hard-coded seed nodes, as PyB does on an empty
// list, with last-seen 28 days minus 10 minutes ago (docs/protocol.md §15.1).
func (b *addrBook) addSeeds(seeds []string, stream uint64, now time.Time) {
	t := now.Add(-forgetAfter + 10*time.Minute)
	for _, s := range seeds {
		if addr, err := canonAddr(s); err == nil {
			b.seen(stream, addr, wire.ServiceNetwork, t)
		}
	}
}
