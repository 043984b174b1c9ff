package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/bmgate/bmgate/mailmap"
	"github.com/bmgate/bmgate/mailmap/loginguard"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Status is a snapshot of a running server: what /status returns as JSON,
// what /metrics exports (statusCollector) and what `bmgate status` prints. serve fills it
// (storeStatus gives the database figures); the admin listener only
// formats it, so it knows nothing of the node's or the gateway's insides.
type Status struct {
	Version   string    `json:"version"`
	Network   string    `json:"network"`
	StartedAt time.Time `json:"started_at"`
	// InstanceID is random per start of serve; DatabaseID names the
	// database it serves (mailmap.DatabaseID). bmgate status blends a
	// server's figures only when its DatabaseID is its own.
	InstanceID string           `json:"instance_id,omitempty"`
	DatabaseID string           `json:"database_id,omitempty"`
	Peers      []PeerStatus     `json:"peers"`
	Inventory  int              `json:"inventory"` // objects in the inventory
	Objects    ObjectCounters   `json:"objects"`
	Messages   MessageCounters  `json:"messages"`
	Outbox     map[string]int   `json:"outbox"` // rows by mailmap.OutboxState
	PoW        PoWStatus        `json:"pow"`
	PoWJobs    []PoWJobStatus   `json:"pow_jobs"`  // the deployment's proof-of-work queue
	SetAside   []SetAsideStatus `json:"set_aside"` // inbound objects given up on (at most setAsideListed)
	Inbound    InboundStatus    `json:"inbound"`
	Sessions   SessionCounts    `json:"sessions"`
	// QueuedPoW is, per user, the proof of work their unsent mail still
	// needs, estimated on this machine (serve only).
	QueuedPoW         []QueuedPoWStatus `json:"queued_pow,omitempty"`
	QueuedPoWMeasured bool              `json:"queued_pow_rate_measured"`

	// Connection and login limits (serve's limitsStatus).
	Listeners           []ListenerStatus   `json:"listeners,omitempty"`
	Logins              LoginStatus        `json:"logins"`
	PasswordHash        PasswordHashStatus `json:"password_hash"`
	IMAPLiteralRefusals uint64             `json:"imap_literal_refusals"`
}

// QueuedPoWStatus is one user's mail waiting for proof of work.
type QueuedPoWStatus struct {
	User     string        `json:"user"`
	Messages int           `json:"messages"`
	Estimate time.Duration `json:"estimate_ns"`
}

// ListenerStatus is one SMTP or IMAP listener's connections.
type ListenerStatus struct {
	Name          string `json:"name"` // smtp, smtps, local_submit, imap, imaps
	Open          int    `json:"open"`
	Max           int    `json:"max"`
	RefusedCap    uint64 `json:"refused_cap"`    // turned away: the listener was at its cap
	RefusedPerIP  uint64 `json:"refused_per_ip"` // turned away: the address had max_connections_per_ip
	LoginTimeouts uint64 `json:"login_timeouts"` // closed: no login within login_timeout
}

// LoginStatus counts the login guard's decisions since the start.
type LoginStatus struct {
	// Attempts by protocol (smtp, imap) and outcome (loginguard.Outcome*:
	// ok, failed, locked, busy, disabled, error).
	Attempts map[string]map[string]uint64 `json:"attempts"`
	Waited   uint64                       `json:"waited"` // attempts that waited for their turn
	Pruned   uint64                       `json:"pruned"` // guard rows pruned
}

// PasswordHashStatus is the password-hashing semaphore (mailmap).
type PasswordHashStatus struct {
	Slots    int    `json:"slots"`
	InFlight int64  `json:"in_flight"`
	Peak     int64  `json:"peak"`
	Total    uint64 `json:"total"`
	Waited   uint64 `json:"waited"`
	Refused  uint64 `json:"refused"`
}

// PeerStatus is one connected peer.
type PeerStatus struct {
	Addr      string    `json:"addr"`
	Inbound   bool      `json:"inbound"`
	UserAgent string    `json:"user_agent,omitempty"`
	Since     time.Time `json:"since"`
}

// ObjectCounters count objects since the server started.
type ObjectCounters struct {
	Received uint64 `json:"received"` // valid objects new to the inventory
	Relayed  uint64 `json:"relayed"`  // objects sent to peers on getdata
	Invalid  uint64 `json:"invalid"`  // objects refused by validation
	// ConnRenewals counts connections to PyBitmessage 0.6 peers closed to
	// be re-established, so that they announce acks.
	ConnRenewals uint64 `json:"conn_renewals"`
}

// MessageCounters are the gateway's counters since the server started.
type MessageCounters struct {
	Received uint64 `json:"received"` // messages delivered into mailboxes
	Sent     uint64 `json:"sent"`     // msg/broadcast objects published
	Acks     uint64 `json:"acks"`     // acks matched to sent messages
	Reports  uint64 `json:"reports"`  // delivery status reports written
	Blocked  uint64 `json:"blocked"`  // msgs (one per user) dropped by the user's blacklist or whitelist
}

// PoWStatus is the proof-of-work engine's state.
type PoWStatus struct {
	InProgress      int     `json:"in_progress"`       // jobs being solved now
	Trials          uint64  `json:"trials"`            // nonces tried since start
	TrialsPerSecond float64 `json:"trials_per_second"` // recent rate
	SolveRate       float64 `json:"solve_rate"`        // trials/s of the last finished solve
}

// PoWJobStatus is one proof-of-work job with its expected remaining time
// (at the running server's solve rate; 0 when unknown or solved).
type PoWJobStatus struct {
	ID        int64         `json:"id"`
	Kind      string        `json:"kind"`
	State     string        `json:"state"`
	OutboxID  int64         `json:"outbox_id,omitempty"`
	UserID    int64         `json:"user_id,omitempty"`
	Trials    uint64        `json:"trials"`
	Expected  uint64        `json:"expected"`
	Remaining time.Duration `json:"remaining_ns"`
}

// SetAsideStatus is an inbound object whose processing failed too often:
// the gateway no longer tries it (mailmap.SetAsideObject).
type SetAsideStatus struct {
	Hash     string    `json:"hash"` // inventory hash, hex
	Type     uint32    `json:"type"`
	Attempts int       `json:"attempts"`
	Error    string    `json:"error"` // the last failure
	Expires  time.Time `json:"expires"`
}

// InboundStatus is the gateway's inbound queue: what waits, how fast the
// deployment (every instance on the database) works through it, and when
// it will have caught up at that rate.
type InboundStatus struct {
	Pending        int     `json:"pending"`         // objects not yet processed (set-aside ones not counted)
	Leased         int     `json:"leased"`          // of them, claimed by an instance now
	RecentWindow   float64 `json:"recent_window_s"` // the window Rate is measured over, seconds
	Rate           float64 `json:"rate"`            // objects processed per second by the deployment lately
	CatchUpSeconds float64 `json:"catch_up_s"`      // expected time to process Pending at Rate; -1: unknown
	Processed      uint64  `json:"processed"`       // objects this server processed since it started
}

// SessionCounts are the open client sessions.
type SessionCounts struct {
	SMTP int `json:"smtp"`
	IMAP int `json:"imap"`
}

// Admin serves the admin HTTP endpoints:
//
//	/healthz  200 "ok" when Health returns nil, else 503
//	/metrics  Prometheus exposition (client_golang) of Metrics.Registry
//	/status   the Status as JSON
//
// It has no authentication: keep it on a loopback address.
type Admin struct {
	Health func(ctx context.Context) error // nil: always healthy
	Status func(ctx context.Context) (Status, error)
	// Metrics is what /metrics exports; nil: a registry of its own over
	// Status (newMetrics).
	Metrics *Metrics
	Logger  *slog.Logger // nil: discard
}

// adminTimeout bounds the work of one admin request.
const adminTimeout = 5 * time.Second

// Handler returns the admin endpoints.
func (a *Admin) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", a.healthz)
	m := a.Metrics
	if m == nil {
		m = newMetrics(a.Status)
	}
	prom := promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(a.logger().Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		prom.ServeHTTP(w, r)
	})
	mux.HandleFunc("GET /status", a.status)
	return mux
}

// Serve answers admin requests on ln until ctx ends, then shuts down.
func (a *Admin) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           a.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		WriteTimeout:      30 * time.Second,
		ErrorLog:          slog.NewLogLogger(a.logger().Handler(), slog.LevelWarn),
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			srv.Shutdown(shutdownCtx)
		case <-done:
		}
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve admin: %w", err)
	}
	return nil
}

func (a *Admin) logger() *slog.Logger {
	if a.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return a.Logger
}

func (a *Admin) healthz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
	defer cancel()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if a.Health != nil {
		if err := a.Health(ctx); err != nil {
			a.logger().Warn("health check failed", "err", err)
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "unhealthy\n")
			return
		}
	}
	io.WriteString(w, "ok\n")
}

func (a *Admin) snapshot(w http.ResponseWriter, r *http.Request) (Status, bool) {
	ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
	defer cancel()
	st, err := a.Status(ctx)
	if err != nil {
		a.logger().Warn("admin status failed", "err", err)
		http.Error(w, "status unavailable", http.StatusServiceUnavailable)
		return Status{}, false
	}
	return st, true
}

func (a *Admin) status(w http.ResponseWriter, r *http.Request) {
	st, ok := a.snapshot(w, r)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(st)
}

// outboxStates is the order /metrics and `bmgate status` list states in.
var outboxStates = []mailmap.OutboxState{
	mailmap.OutboxQueued, mailmap.OutboxAwaitingPubkey, mailmap.OutboxDoingPoW,
	mailmap.OutboxSent, mailmap.OutboxAcked, mailmap.OutboxFailed,
}

// outboxStateNames returns the known states in order, then any other state
// the map holds, sorted.
func outboxStateNames(counts map[string]int) []string {
	names := make([]string, 0, len(outboxStates)+len(counts))
	for _, s := range outboxStates {
		names = append(names, string(s))
	}
	var extra []string
	for s := range counts {
		if !slices.Contains(names, s) {
			extra = append(extra, s)
		}
	}
	slices.Sort(extra)
	return append(names, extra...)
}

// loginOutcomes is the order /metrics lists the login guard's outcomes in.
var loginOutcomes = []string{
	loginguard.OutcomeOK, loginguard.OutcomeFailed, loginguard.OutcomeLocked,
	loginguard.OutcomeBusy, loginguard.OutcomeDisabled, loginguard.OutcomeError,
}
