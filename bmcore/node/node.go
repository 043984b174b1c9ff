package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bmgate/bmgate/bmcore/inventory"
	"github.com/bmgate/bmgate/bmcore/params"
	"github.com/bmgate/bmgate/bmcore/wire"
)

const (
	// notifyQueue is how many OnObject notifications may wait.
	notifyQueue = 4096
	// rejectedCacheSize bounds the per-generation size of the rejected set.
	rejectedCacheSize = 1 << 16
)

// Node is a Bitmessage P2P node. Create it with New, run it with Start and
// stop it with Close.
type Node struct {
	cfg      Config
	log      *slog.Logger
	net      *params.Network
	streams  []uint64 // sorted; stream 1 is the only one in use (docs/protocol.md §13)
	class    addrClass
	inv      inventory.Inventory
	book     *addrBook
	bans     *banList
	fetch    *fetcher
	have     *haveSet
	rejected *hashSet
	notifyCh chan inventory.StoredObject
	fixed    map[string]bool
	connReq  chan string
	kick     chan struct{} // wakes the connection manager
	renew    *ackRenewer

	mu        sync.Mutex
	started   bool
	closed    bool
	ctx       context.Context
	cancel    context.CancelFunc
	ln        net.Listener
	peers     map[*peer]struct{}
	byKey     map[string]*peer // one connection per peer address (docs/protocol.md §3.3)
	nonces    map[uint64]*peer // our version nonces, to detect self-connections
	wg        sync.WaitGroup
	closeOnce sync.Once

	objectsReceived  atomic.Uint64
	objectsRelayed   atomic.Uint64
	objectsInvalid   atomic.Uint64
	objectsPublished atomic.Uint64
	notifyDropped    atomic.Uint64
	bytesIn          atomic.Uint64
	bytesOut         atomic.Uint64
	connRenewals     atomic.Uint64

	// Events tests wait on instead of sleeping: completed passes of the
	// connection manager and of the fetch loop, and ack renewals scheduled.
	connPasses      atomic.Uint64
	fetchPasses     atomic.Uint64
	renewsScheduled atomic.Uint64
	// testHookEstablished, when set before Start, runs in the reader
	// goroutine right after a connection became established.
	testHookEstablished func(*peer)
}

// Stats is a snapshot of the node's counters.
type Stats struct {
	PeersInbound  int // established inbound connections
	PeersOutbound int // established outbound connections
	Handshaking   int // connections still dialling or in version/verack
	// InventoryObjects is the number of stored objects the node knows of
	// (unexpired at start plus those stored since, minus expired ones).
	InventoryObjects int
	// Fetching is the number of announced objects being downloaded.
	Fetching         int
	ObjectsReceived  uint64 // new valid objects stored from peers
	ObjectsPublished uint64 // new objects stored through Publish
	ObjectsRelayed   uint64 // object packets sent to peers
	ObjectsInvalid   uint64 // objects refused by CheckObject
	NotifyDropped    uint64 // OnObject notifications dropped (queue full)
	Banned           int    // ban keys currently refused
	BytesIn          uint64
	BytesOut         uint64
	// ConnRenewals counts connections to PyBitmessage 0.6 peers closed, to
	// be re-established, so that they announce the acks of our msgs
	// (Config.AckRenewDelay).
	ConnRenewals uint64
}

// PeerInfo describes one connection.
type PeerInfo struct {
	Addr            string // dialled address, or remote IP and advertised port
	Remote          string // socket remote address ("" while dialling)
	Inbound         bool
	Fixed           bool
	Established     bool
	ProtocolVersion uint32
	Services        uint64
	UserAgent       string
	Streams         []uint64
	ConnectedAt     time.Time
	BytesIn         uint64
	BytesOut        uint64
	Score           float64 // misbehaviour score of its ban key
}

// New checks cfg and returns a node that is not yet running.
func New(cfg Config) (*Node, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	n := &Node{
		cfg:      cfg,
		log:      cfg.Logger.With("net", cfg.Network.Name),
		net:      cfg.Network,
		streams:  []uint64{1},
		class:    addrClass{allowPrivate: cfg.AllowPrivateAddrs, socks: cfg.SOCKS5 != ""},
		inv:      cfg.Inventory,
		book:     newAddrBook(),
		bans:     newBanList(),
		fetch:    newFetcher(cfg.MaxFetching, cfg.MaxFetchingPerPeer, cfg.GetDataRetry),
		have:     newHaveSet(),
		rejected: newHashSet(rejectedCacheSize),
		notifyCh: make(chan inventory.StoredObject, notifyQueue),
		fixed:    map[string]bool{},
		connReq:  make(chan string, 16),
		kick:     make(chan struct{}, 1),
		peers:    map[*peer]struct{}{},
		byKey:    map[string]*peer{},
		nonces:   map[uint64]*peer{},
	}
	n.renew = newAckRenewer(&n.cfg)
	for _, p := range cfg.Peers {
		addr, err := canonAddr(p)
		if err != nil {
			return nil, fmt.Errorf("%w: peer %q: %v", ErrConfig, p, err)
		}
		n.fixed[addr] = true
	}
	return n, nil
}

// Start loads the known nodes and the inventory index, starts listening
// (if ListenAddr is set) and starts the background loops. The node runs
// until ctx is cancelled or Close is called; Close must be called in both
// cases to wait for it.
func (n *Node) Start(ctx context.Context) error {
	n.mu.Lock()
	if n.started || n.closed {
		n.mu.Unlock()
		if n.closed {
			return ErrClosed
		}
		return ErrAlreadyStarted
	}
	n.started = true
	n.ctx, n.cancel = context.WithCancel(ctx)
	n.mu.Unlock()

	if err := n.book.load(n.ctx, n.cfg.KnownNodes, n.streams); err != nil {
		return fmt.Errorf("start node: %w", err)
	}
	now := n.cfg.Now()
	for _, s := range n.streams {
		hs, err := n.inv.Hashes(n.ctx, s, now)
		if err != nil {
			return fmt.Errorf("start node: list inventory: %w", err)
		}
		// Hashes does not return expiry times: assume the longest
		// possible life, so the index never forgets an object the
		// inventory still holds; entries outliving their object are
		// harmless (nobody announces an expired object).
		for _, h := range hs {
			n.have.add(h, now.Add(MaxExpiresAhead))
		}
	}
	if n.cfg.ListenAddr != "" {
		var lc net.ListenConfig
		ln, err := lc.Listen(n.ctx, "tcp", n.cfg.ListenAddr)
		if err != nil {
			return fmt.Errorf("start node: listen: %w", err)
		}
		n.mu.Lock()
		n.ln = ln
		n.mu.Unlock()
		n.log.Info("listening", "addr", ln.Addr().String())
		n.spawn(func() { n.acceptLoop(ln) })
	}
	n.spawn(n.connLoop)
	n.spawn(n.fetchLoop)
	n.spawn(n.maintLoop)
	n.spawn(n.notifyLoop)
	n.spawn(func() {
		// Cancelling Start's context stops the node like Close does.
		<-n.ctx.Done()
		n.shutdown()
	})
	return nil
}

// Close stops the node: it closes the listener and every connection, stops
// all loops and waits for every goroutine before it returns. Known-node
// changes are written to KnownNodes.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.mu.Lock()
		started := n.started
		n.closed = true
		n.mu.Unlock()
		if !started {
			return
		}
		n.cancel()
		n.shutdown()
		n.wg.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := n.book.flush(ctx, n.cfg.KnownNodes); err != nil {
			n.log.Warn("saving known nodes", "err", err)
		}
	})
	return nil
}

// shutdown closes the listener and all connections; loops exit on n.ctx.
func (n *Node) shutdown() {
	n.mu.Lock()
	n.closed = true
	ln := n.ln
	peers := make([]*peer, 0, len(n.peers))
	for p := range n.peers {
		peers = append(peers, p)
	}
	n.mu.Unlock()
	if ln != nil {
		_ = ln.Close()
	}
	for _, p := range peers {
		p.close(ErrClosed, false)
	}
}

// spawn runs f in a goroutine tracked by Close, unless the node is closed.
func (n *Node) spawn(f func()) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return false
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		f()
	}()
	return true
}

// Addr returns the listening address, or nil when not listening.
func (n *Node) Addr() net.Addr {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ln == nil {
		return nil
	}
	return n.ln.Addr()
}

// Connect asks for an outbound connection to addr (host:port) now, outside
// the MaxOutbound budget. It does nothing if the node is not running or
// already connected to addr.
func (n *Node) Connect(addr string) {
	select {
	case n.connReq <- addr:
	default:
		n.log.Warn("connect request dropped: queue full", "addr", addr)
	}
}

// Publish checks a locally made object like a received one (plus the
// sender's whole-object cap of 2^18 bytes), stores it and announces it to
// every established peer. Publishing an object already stored returns its
// hash and nil.
func (n *Node) Publish(ctx context.Context, object []byte) (wire.InvHash, error) {
	return n.publish(ctx, object, false)
}

// PublishAwaitingAck publishes one of our msg objects whose recipient will
// send an ack back: a PyBitmessage 0.6 peer that fetches it gets its
// connection renewed so that the ack is announced (interop F1). Acks we
// send and chan posts, which bring nothing back, go through Publish.
func (n *Node) PublishAwaitingAck(ctx context.Context, object []byte) (wire.InvHash, error) {
	return n.publish(ctx, object, true)
}

func (n *Node) publish(ctx context.Context, object []byte, awaitAck bool) (wire.InvHash, error) {
	if len(object) > wire.MaxObjectSize {
		return wire.InvHash{}, fmt.Errorf("publish: %w (%d bytes)", ErrObjectTooLarge, len(object))
	}
	obj, err := CheckObject(object, n.cfg.Now(), n.net, n.streams)
	if err != nil {
		return wire.InvHash{}, fmt.Errorf("publish: %w", err)
	}
	so := storedObject(obj)
	so.Raw = slices.Clone(object)
	added, err := n.inv.Put(ctx, so)
	if err != nil {
		return wire.InvHash{}, fmt.Errorf("publish: store object: %w", err)
	}
	if awaitAck && so.Type == wire.ObjectMsg {
		// Before it is announced, so that no fetch comes first.
		n.renew.published(so.Hash, so.Expires, n.cfg.Now())
	}
	n.have.add(so.Hash, so.Expires)
	if added {
		n.objectsPublished.Add(1)
		n.log.Debug("object published", "hash", so.Hash.String(), "type", so.Type)
		n.announce(so.Hash, so.Stream, nil)
		n.notify(so)
	}
	return so.Hash, nil
}

// Stats returns a snapshot of the counters.
func (n *Node) Stats() Stats {
	s := Stats{
		InventoryObjects: n.have.len(),
		Fetching:         n.fetch.pending(),
		ObjectsReceived:  n.objectsReceived.Load(),
		ObjectsPublished: n.objectsPublished.Load(),
		ObjectsRelayed:   n.objectsRelayed.Load(),
		ObjectsInvalid:   n.objectsInvalid.Load(),
		NotifyDropped:    n.notifyDropped.Load(),
		ConnRenewals:     n.connRenewals.Load(),
		Banned:           n.bans.count(time.Now()),
		BytesIn:          n.bytesIn.Load(),
		BytesOut:         n.bytesOut.Load(),
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for p := range n.peers {
		switch {
		case !p.established.Load():
			s.Handshaking++
		case p.inbound:
			s.PeersInbound++
		default:
			s.PeersOutbound++
		}
	}
	return s
}

// Peers describes the current connections.
func (n *Node) Peers() []PeerInfo {
	n.mu.Lock()
	list := make([]*peer, 0, len(n.peers))
	for p := range n.peers {
		list = append(list, p)
	}
	n.mu.Unlock()
	now := time.Now()
	out := make([]PeerInfo, 0, len(list))
	for _, p := range list {
		pi := PeerInfo{
			Addr:        p.displayAddr(),
			Inbound:     p.inbound,
			Fixed:       p.fixed,
			Established: p.established.Load(),
			ConnectedAt: p.created,
			BytesIn:     p.bytesIn.Load(),
			BytesOut:    p.bytesOut.Load(),
			Score:       n.bans.score(p.banKey(), now),
		}
		p.mu.Lock()
		if p.remote.IsValid() {
			pi.Remote = p.remote.String()
		}
		p.mu.Unlock()
		if v := p.remoteVersion(); v != nil {
			pi.ProtocolVersion, pi.Services, pi.UserAgent = v.ProtocolVersion, v.Services, v.UserAgent
			pi.Streams = slices.Clone(v.Streams)
		}
		out = append(out, pi)
	}
	return out
}

// established returns the established connections.
func (n *Node) establishedPeers() []*peer {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]*peer, 0, len(n.peers))
	for p := range n.peers {
		if p.established.Load() && !p.isClosing() {
			out = append(out, p)
		}
	}
	return out
}

// announce queues an inv of h to every established peer of the stream that
// does not know it yet, except the one it came from (docs/protocol.md §5.3 step 7).
func (n *Node) announce(h wire.InvHash, stream uint64, except *peer) {
	for _, p := range n.establishedPeers() {
		if p == except || !p.inStream(stream) || p.known.has(h) {
			continue
		}
		p.known.add(h)
		p.queueAnnounce(h)
	}
}

// ingest handles an object a peer sent: check, store, then relay
// (docs/protocol.md §5.3). It returns a non-nil error when the peer must be dropped.
func (n *Node) ingest(src *peer, raw []byte) error {
	h := wire.ComputeInvHash(raw)
	n.fetch.received(h, src)
	src.known.add(h)
	if n.have.has(h) || n.rejected.has(h) {
		return nil
	}
	obj, err := CheckObject(raw, n.cfg.Now(), n.net, n.streams)
	if err != nil {
		n.objectsInvalid.Add(1)
		n.rejected.add(h)
		return src.misbehave(objectPenalty(err), err.Error())
	}
	so := storedObject(obj)
	added, err := n.inv.Put(n.ctx, so)
	if err != nil {
		if n.ctx.Err() == nil {
			n.log.Error("storing object failed", "hash", h.String(), "err", err)
		}
		return nil
	}
	n.have.add(h, so.Expires)
	if !added {
		return nil
	}
	n.objectsReceived.Add(1)
	n.announce(h, so.Stream, src)
	n.notify(so)
	return nil
}

func objectPenalty(err error) float64 {
	switch {
	case errors.Is(err, ErrMalformedObject):
		return scoreMalformedObject
	case errors.Is(err, ErrInsufficientPoW):
		return scoreBadPoW
	case errors.Is(err, ErrWrongStream):
		return scoreWrongStream
	default:
		return scoreBadExpiry
	}
}

func (n *Node) notify(so inventory.StoredObject) {
	if n.cfg.OnObject == nil {
		return
	}
	select {
	case n.notifyCh <- so:
	default:
		n.notifyDropped.Add(1)
	}
}

func (n *Node) notifyLoop() {
	for {
		select {
		case <-n.ctx.Done():
			return
		case so := <-n.notifyCh:
			n.cfg.OnObject(so)
		}
	}
}
