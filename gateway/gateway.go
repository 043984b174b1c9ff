package gateway

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bmgate/bmgate/bmcore/address"
	"github.com/bmgate/bmgate/bmcore/identity"
	"github.com/bmgate/bmgate/bmcore/params"
	"github.com/bmgate/bmgate/bmcore/pow"
	"github.com/bmgate/bmgate/bmcore/wire"
	"github.com/bmgate/bmgate/mailmap"
)

// Publisher floods an object the gateway built; the node implements it.
type Publisher interface {
	Publish(ctx context.Context, object []byte) (wire.InvHash, error)
}

// Config configures a Gateway. Zero durations take the defaults below.
type Config struct {
	Store     mailmap.Store
	Publisher Publisher // nil for a submit-only gateway (the sendmail command)
	Network   *params.Network
	Domain    string
	Logger    *slog.Logger
	Now       func() time.Time
	Rand      io.Reader

	// PoWWorkers is the number of cores a proof of work uses (0 = all).
	PoWWorkers int
	// MsgTTL is the lifetime of a first send (SPEC.md §5.4; default 4 days).
	// Each resend doubles it, up to 28 days.
	MsgTTL time.Duration
	// BroadcastTTL is the lifetime of broadcasts and chan posts (default 4 days).
	BroadcastTTL time.Duration
	// MaxNonceTrialsPerByte and MaxExtraBytes cap the difficulty a recipient
	// may demand (PyBitmessage's maxacceptable*, SPEC.md §6.5).
	MaxNonceTrialsPerByte uint64
	MaxExtraBytes         uint64
	// PubkeyGiveUp is how long a send waits for the recipient's pubkey
	// before it fails (default 7 days).
	PubkeyGiveUp time.Duration
	// AckGiveUp is how long a send is resent without an ack before it
	// fails (default 28 days).
	AckGiveUp time.Duration
	// PollInterval is how often the outbound worker looks for due work when
	// nothing woke it (default 5 s): rows queued by another process (the
	// sendmail command, another instance) are found this way.
	PollInterval time.Duration
	// PubkeyPoll is how often a send waiting for a pubkey looks again
	// (default 10 s).
	PubkeyPoll time.Duration
	// MaintenanceInterval paces pubkey publication and $Delivered upkeep
	// (default 30 s).
	MaintenanceInterval time.Duration
	// Lease is how long a claimed outbox row stays reserved without a
	// heartbeat (default 2 min); a crashed worker's rows come back after it.
	Lease time.Duration
	// IdentityRefresh is how long the identity and subscription caches used
	// for trial decryption stay fresh (default 10 s).
	IdentityRefresh time.Duration
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.MsgTTL, 4*24*time.Hour)
	def(&c.BroadcastTTL, 4*24*time.Hour)
	def(&c.PubkeyGiveUp, 7*24*time.Hour)
	def(&c.AckGiveUp, 28*24*time.Hour)
	def(&c.PollInterval, 5*time.Second)
	def(&c.PubkeyPoll, 10*time.Second)
	def(&c.MaintenanceInterval, 30*time.Second)
	def(&c.Lease, 2*time.Minute)
	def(&c.IdentityRefresh, 10*time.Second)
	if c.MaxNonceTrialsPerByte == 0 {
		c.MaxNonceTrialsPerByte = 20000000
	}
	if c.MaxExtraBytes == 0 {
		c.MaxExtraBytes = 20000000
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Rand == nil {
		c.Rand = rand.Reader
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Gateway is the bridge between mail and Bitmessage: it accepts
// submissions, runs the outbound pipeline and processes inbound objects.
type Gateway struct {
	cfg   Config
	store mailmap.Store
	log   *slog.Logger

	wakeOut chan struct{}
	wakeIn  chan struct{}

	idMu      sync.Mutex
	idCache   *identityCache
	subsCache *subscriptionCache

	powMu    sync.Mutex
	powJobs  map[int64]*pow.Progress // outbox id (or a negative key) → progress
	anonJobs int64

	deliveredMu sync.Mutex
	delivered   map[int64]pendingDelivered // acked rows whose Sent copy may still arrive

	stats struct {
		msgsIn, msgsOut, acks, reports atomic.Uint64
		powTrials                      atomic.Uint64 // trials of finished proofs of work
	}
}

type pendingDelivered struct {
	userID    int64
	messageID string
	until     time.Time
}

// New checks the configuration and returns a Gateway.
func New(cfg Config) (*Gateway, error) {
	if cfg.Store == nil {
		return nil, errors.New("gateway: no store")
	}
	if cfg.Network == nil {
		return nil, errors.New("gateway: no network profile")
	}
	if cfg.Domain == "" {
		return nil, errors.New("gateway: no mail domain")
	}
	cfg.setDefaults()
	return &Gateway{
		cfg:       cfg,
		store:     cfg.Store,
		log:       cfg.Logger,
		wakeOut:   make(chan struct{}, 1),
		wakeIn:    make(chan struct{}, 1),
		powJobs:   make(map[int64]*pow.Progress),
		delivered: make(map[int64]pendingDelivered),
	}, nil
}

// Domain is the mail domain Bitmessage addresses appear under.
func (g *Gateway) Domain() string { return g.cfg.Domain }

// WakeInbound tells the dispatcher that new objects are in the inventory.
// The node's OnObject hook calls it; it never blocks.
func (g *Gateway) WakeInbound() {
	select {
	case g.wakeIn <- struct{}{}:
	default:
	}
}

// WakeOutbound tells the outbound worker that new work may be due.
func (g *Gateway) WakeOutbound() {
	select {
	case g.wakeOut <- struct{}{}:
	default:
	}
}

// Run runs the outbound worker, the inbound dispatcher and the maintenance
// loop until ctx is cancelled. Work in flight is left in the store in a
// state another run resumes from.
func (g *Gateway) Run(ctx context.Context) error {
	if g.cfg.Publisher == nil {
		return errors.New("gateway: run needs a publisher")
	}
	var wg sync.WaitGroup
	loops := []func(context.Context){g.outboundLoop, g.inboundLoop, g.maintenanceLoop}
	for _, loop := range loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			loop(ctx)
		}()
	}
	wg.Wait()
	return nil
}

// Stats is a snapshot for metrics and the status command.
type Stats struct {
	MessagesIn  uint64 // messages delivered into mailboxes
	MessagesOut uint64 // msg/broadcast objects published
	Acks        uint64 // acks matched to sent messages
	Reports     uint64 // delivery status reports written
	PoWJobs     []PoWJob
	PoWTrials   uint64 // trials done since start, jobs in progress included
}

// PoWJob is one proof of work in progress.
type PoWJob struct {
	OutboxID int64
	Trials   uint64
	Expected uint64
}

// Stats returns current counters.
func (g *Gateway) Stats() Stats {
	s := Stats{
		MessagesIn:  g.stats.msgsIn.Load(),
		MessagesOut: g.stats.msgsOut.Load(),
		Acks:        g.stats.acks.Load(),
		Reports:     g.stats.reports.Load(),
	}
	g.powMu.Lock()
	s.PoWTrials = g.stats.powTrials.Load()
	for id, p := range g.powJobs {
		j := PoWJob{OutboxID: id, Trials: p.Trials(), Expected: p.Expected()}
		if id > 0 {
			s.PoWJobs = append(s.PoWJobs, j)
		}
		s.PoWTrials += j.Trials
	}
	g.powMu.Unlock()
	return s
}

// solve runs proof of work on a headless object for the target and returns
// the whole object. progressID, when non-zero, makes the job visible in Stats.
func (g *Gateway) solve(ctx context.Context, progressID int64, headless []byte, target uint64) ([]byte, error) {
	p := &pow.Progress{}
	// Jobs without an outbox row (acks, pubkeys, getpubkeys) are tracked
	// under negative keys so their trials count but they are not listed.
	g.powMu.Lock()
	key := progressID
	if key == 0 {
		g.anonJobs--
		key = g.anonJobs
	}
	g.powJobs[key] = p
	g.powMu.Unlock()
	defer func() {
		g.powMu.Lock()
		delete(g.powJobs, key)
		g.stats.powTrials.Add(p.Trials())
		g.powMu.Unlock()
	}()
	obj, err := pow.SolveObject(ctx, headless, target, pow.Options{Workers: g.cfg.PoWWorkers, Progress: p})
	if err != nil {
		return nil, fmt.Errorf("proof of work: %w", err)
	}
	return obj, nil
}

// networkTarget is the target for an object at the network minimum
// difficulty, with the clock margin of SPEC.md §6.2.
func (g *Gateway) target(headless []byte, ntpb, extra uint64) uint64 {
	expires := beUint64(headless[:8])
	ttl := int64(expires) - g.cfg.Now().Unix()
	ntpb, extra = g.cfg.Network.Clamp(ntpb, extra)
	return pow.Target(uint64(len(headless)+8), ttl+pow.SolveMargin, ntpb, extra)
}

func beUint64(b []byte) uint64 {
	var v uint64
	for _, c := range b[:8] {
		v = v<<8 | uint64(c)
	}
	return v
}

// jitter returns a random offset in [-300, 300) seconds, as PyBitmessage adds
// to every TTL (SPEC.md §5.4), so expiry times do not fingerprint bmgate.
func (g *Gateway) jitter() int64 {
	var b [2]byte
	if _, err := io.ReadFull(g.cfg.Rand, b[:]); err != nil {
		return 0
	}
	return int64(uint16(b[0])<<8|uint16(b[1]))%600 - 300
}

// localIdentity converts a stored identity into protocol keys and checks
// that the keys really belong to the stored address.
func localIdentity(m mailmap.Identity) (*identity.Identity, error) {
	a, err := address.Decode(m.Address)
	if err != nil {
		return nil, fmt.Errorf("identity %s: %w", m.Address, err)
	}
	id, err := identity.FromKeys(a.Version, a.Stream, m.SigningKey, m.EncryptionKey)
	if err != nil {
		return nil, fmt.Errorf("identity %s: %w", m.Address, err)
	}
	if id.Address != a {
		return nil, fmt.Errorf("identity %s: keys give %s", m.Address, id.Address)
	}
	id.NonceTrialsPerByte = max(m.NonceTrialsPerByte, 1)
	id.ExtraBytes = max(m.ExtraBytes, 1)
	return id, nil
}

// identityCache holds every local identity with parsed keys, for trial
// decryption and getpubkey answers. A chan joined by several users is one
// key with several owners.
type identityCache struct {
	loaded time.Time
	stored []mailmap.Identity   // every row
	keys   []*identity.Identity // one per distinct address
	owners [][]int              // keys index → indexes into stored, first joiner first
	byAddr map[address.Address]int
	byTag  map[[32]byte]int
	byRipe map[[20]byte]int
}

// owner returns the row of a key owned by the user, if any.
func (c *identityCache) owner(i int, userID int64) (mailmap.Identity, bool) {
	for _, j := range c.owners[i] {
		if c.stored[j].UserID == userID {
			return c.stored[j], true
		}
	}
	return mailmap.Identity{}, false
}

func (g *Gateway) identities(ctx context.Context) (*identityCache, error) {
	g.idMu.Lock()
	defer g.idMu.Unlock()
	now := g.cfg.Now()
	if g.idCache != nil && now.Sub(g.idCache.loaded) < g.cfg.IdentityRefresh {
		return g.idCache, nil
	}
	all, err := g.store.AllIdentities(ctx)
	if err != nil {
		return nil, fmt.Errorf("load identities: %w", err)
	}
	c := &identityCache{loaded: now, byAddr: map[address.Address]int{}, byTag: map[[32]byte]int{}, byRipe: map[[20]byte]int{}}
	// Deriving public keys costs two point multiplications per identity:
	// keep the parsed keys of addresses that were already cached.
	prev := map[string]*identity.Identity{}
	if g.idCache != nil {
		for _, id := range g.idCache.keys {
			prev[id.Address.String()] = id
		}
	}
	for _, m := range all {
		a, err := address.Decode(m.Address)
		if err != nil {
			g.log.Error("skipping unusable identity", "address", m.Address, "err", err)
			continue
		}
		if i, ok := c.byAddr[a]; ok {
			c.owners[i] = append(c.owners[i], len(c.stored))
			c.stored = append(c.stored, m)
			continue
		}
		id, ok := prev[m.Address]
		if !ok || id.NonceTrialsPerByte != max(m.NonceTrialsPerByte, 1) || id.ExtraBytes != max(m.ExtraBytes, 1) {
			if id, err = localIdentity(m); err != nil {
				g.log.Error("skipping unusable identity", "address", m.Address, "err", err)
				continue
			}
		}
		i := len(c.keys)
		c.owners = append(c.owners, []int{len(c.stored)})
		c.stored = append(c.stored, m)
		c.keys = append(c.keys, id)
		c.byAddr[id.Address] = i
		c.byTag[id.Address.Tag()] = i
		c.byRipe[id.Address.Ripe] = i
	}
	g.idCache = c
	return c, nil
}

// invalidateIdentities drops the identity cache (after a change we made).
func (g *Gateway) invalidateIdentities() {
	g.idMu.Lock()
	if g.idCache != nil {
		g.idCache.loaded = time.Time{} // reload, keeping the parsed keys
	}
	g.subsCache = nil
	g.idMu.Unlock()
}

type subscriptionCache struct {
	loaded time.Time
	subs   []mailmap.Subscription
	addrs  []address.Address // distinct
}

func (g *Gateway) subscriptions(ctx context.Context) (*subscriptionCache, error) {
	g.idMu.Lock()
	defer g.idMu.Unlock()
	now := g.cfg.Now()
	if g.subsCache != nil && now.Sub(g.subsCache.loaded) < g.cfg.IdentityRefresh {
		return g.subsCache, nil
	}
	all, err := g.store.AllSubscriptions(ctx)
	if err != nil {
		return nil, fmt.Errorf("load subscriptions: %w", err)
	}
	c := &subscriptionCache{loaded: now, subs: all}
	seen := map[address.Address]bool{}
	for _, s := range all {
		a, err := address.Decode(s.Address)
		if err != nil {
			continue
		}
		if !seen[a] {
			seen[a] = true
			c.addrs = append(c.addrs, a)
		}
	}
	g.subsCache = c
	return c, nil
}

// sleep waits for d, a wake-up or cancellation; it reports false on cancel.
func sleep(ctx context.Context, d time.Duration, wake <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-wake:
		return true
	case <-t.C:
		return true
	}
}
