package gateway

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

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
	// PoWConcurrency is how many proofs of work this process solves at
	// once (default 1: each one uses PoWWorkers cores).
	PoWConcurrency int
	// MsgTTL is the lifetime of a first send (docs/protocol.md §5.4; default 4 days).
	// Each resend doubles it, up to 28 days.
	MsgTTL time.Duration
	// BroadcastTTL is the lifetime of broadcasts and chan posts (default 4 days).
	BroadcastTTL time.Duration
	// MaxNonceTrialsPerByte and MaxExtraBytes cap the difficulty a recipient
	// may demand (PyBitmessage's maxacceptable*, docs/protocol.md §6.5).
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
	// MaxObjectAttempts is how many times the processing of an inbound
	// object may fail before it is set aside for an operator (default 5).
	MaxObjectAttempts int
	// InboundWorkers is how many cores trial-decrypt inbound msg objects
	// at once (default: all of them, runtime.NumCPU).
	InboundWorkers int
	// InboundLease is how long a claimed batch of inbound objects stays
	// this instance's without a heartbeat (default 1 min; renewed every
	// third of it while the batch is worked on). When it runs out (a
	// crash), another instance, or this one restarted, processes the
	// batch; deliveries are idempotent, so nothing is filed twice.
	InboundLease time.Duration
	// MaxQueuedPoWPerUser caps the proof-of-work time (as estimated on
	// this machine) of one user's mail waiting to be sent; a submission
	// that would pass it is refused with a 4xx (0 = no cap).
	MaxQueuedPoWPerUser time.Duration
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
	def(&c.InboundLease, time.Minute)
	if c.InboundWorkers <= 0 {
		c.InboundWorkers = runtime.NumCPU()
	}
	if c.PoWConcurrency <= 0 {
		c.PoWConcurrency = 1
	}
	if c.MaxObjectAttempts <= 0 {
		c.MaxObjectAttempts = 5
	}
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

	idMu      sync.Mutex // guards the caches of identities.go
	idCache   *identityCache
	subsCache *subscriptionCache

	owner   string // this process's lease token for outbox rows and jobs
	wakePoW chan struct{}
	powMu   sync.Mutex
	powJobs map[int64]runningJob // job id → what this process is solving
	powRate atomic.Uint64        // float64 bits: trials per second of the last solve

	deliveredMu sync.Mutex
	delivered   map[int64]pendingDelivered // acked rows whose Sent copy may still arrive

	stats struct {
		msgsIn, msgsOut, acks, reports atomic.Uint64
		blocked                        atomic.Uint64 // msg copies a user's sender list dropped
		powTrials                      atomic.Uint64 // trials of finished proofs of work
		objects                        atomic.Uint64 // inbound objects this process processed
	}
}

// pendingDelivered is an acked row whose Sent copy is to get $Delivered.
// A copy is found by the row's Message-ID or, for a mail sent without
// one, by its content (see sentCopyMatches).
type pendingDelivered struct {
	userID    int64
	messageID string
	subject   string
	body      string
	original  []byte
	created   time.Time
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
		owner:     newOwner(),
		wakePoW:   make(chan struct{}, 1),
		powJobs:   make(map[int64]runningJob),
		delivered: make(map[int64]pendingDelivered),
	}, nil
}

// Domain is the mail domain Bitmessage addresses appear under.
func (g *Gateway) Domain() string { return g.cfg.Domain }

// WakeInbound tells the inbound workers that new objects are in the inventory.
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

// Run runs the outbound worker, the inbound workers and the maintenance
// loop until ctx is cancelled. Work in flight is left in the store in a
// state another run resumes from.
func (g *Gateway) Run(ctx context.Context) error {
	if g.cfg.Publisher == nil {
		return errors.New("gateway: run needs a publisher")
	}
	defer g.release()
	var wg sync.WaitGroup
	loops := []func(context.Context){g.outboundLoop, g.powLoop, g.inboundLoop, g.maintenanceLoop}
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
	Blocked     uint64 // msgs (one per user) dropped by the user's blacklist or whitelist
	MessagesOut uint64 // msg/broadcast objects published
	Acks        uint64 // acks matched to sent messages
	Reports     uint64 // delivery status reports written
	PoWJobs     []PoWJob
	PoWTrials   uint64  // trials done since start, jobs in progress included
	PoWRate     float64 // trials per second of the last finished proof of work (0: none yet)
	Objects     uint64  // inbound objects this process processed
}

// PoWJob is one proof-of-work job: in Stats, one this process is solving;
// from PoWQueue, any job of the deployment.
type PoWJob struct {
	ID        int64
	Kind      string // msg, broadcast, ack, pubkey, getpubkey
	State     string // pending, solving, solved
	OutboxID  int64  // 0 for the node's own jobs
	UserID    int64
	Trials    uint64
	Expected  uint64
	Remaining time.Duration // expected time to completion (PoWQueue only)
}

// Stats returns current counters.
func (g *Gateway) Stats() Stats {
	s := Stats{
		MessagesIn:  g.stats.msgsIn.Load(),
		Blocked:     g.stats.blocked.Load(),
		MessagesOut: g.stats.msgsOut.Load(),
		Acks:        g.stats.acks.Load(),
		Reports:     g.stats.reports.Load(),
		Objects:     g.stats.objects.Load(),
	}
	s.PoWRate = math.Float64frombits(g.powRate.Load())
	g.powMu.Lock()
	s.PoWTrials = g.stats.powTrials.Load()
	for id, r := range g.powJobs {
		j := PoWJob{ID: id, Kind: r.job.Kind, State: string(mailmap.PoWSolving), OutboxID: r.job.OutboxID,
			UserID: r.job.UserID, Trials: r.progress.Trials(), Expected: r.progress.Expected()}
		s.PoWJobs = append(s.PoWJobs, j)
		s.PoWTrials += j.Trials
	}
	slices.SortFunc(s.PoWJobs, func(a, b PoWJob) int { return cmp.Compare(a.ID, b.ID) })
	g.powMu.Unlock()
	return s
}

// newOwner makes the token that marks this process's leases.
// It is random whatever Config.Rand is, so that two gateways never share it.
func newOwner() string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return fmt.Sprintf("pid%d-%d", os.Getpid(), time.Now().UnixNano())
	}
	return fmt.Sprintf("%x", b)
}

// networkTarget is the target for an object at the network minimum
// difficulty, with the clock margin of docs/protocol.md §6.2.
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
// to every TTL (docs/protocol.md §5.4), so expiry times do not fingerprint bmgate.
func (g *Gateway) jitter() int64 {
	var b [2]byte
	if _, err := io.ReadFull(g.cfg.Rand, b[:]); err != nil {
		return 0
	}
	return int64(uint16(b[0])<<8|uint16(b[1]))%600 - 300
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
