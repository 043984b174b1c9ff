package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bmgate/bmgate/mailmap"
	"github.com/bmgate/bmgate/mailmap/loginguard"
)

// Status is a snapshot of a running server: what /status returns as JSON,
// what /metrics exports and what `bmgate status` prints. serve fills it
// (storeStatus gives the database figures); the admin listener only
// formats it, so it knows nothing of the node's or the gateway's insides.
type Status struct {
	Version   string           `json:"version"`
	Network   string           `json:"network"`
	StartedAt time.Time        `json:"started_at"`
	Peers     []PeerStatus     `json:"peers"`
	Inventory int              `json:"inventory"` // objects in the inventory
	Objects   ObjectCounters   `json:"objects"`
	Outbox    map[string]int   `json:"outbox"` // rows by mailmap.OutboxState
	PoW       PoWStatus        `json:"pow"`
	PoWJobs   []PoWJobStatus   `json:"pow_jobs"`  // the deployment's proof-of-work queue
	SetAside  []SetAsideStatus `json:"set_aside"` // inbound objects given up on (at most setAsideListed)
	Sessions  SessionCounts    `json:"sessions"`

	// Connection and login limits (serve's limitsStatus).
	Listeners           []ListenerStatus   `json:"listeners,omitempty"`
	Logins              LoginStatus        `json:"logins"`
	PasswordHash        PasswordHashStatus `json:"password_hash"`
	IMAPLiteralRefusals uint64             `json:"imap_literal_refusals"`
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

// SessionCounts are the open client sessions.
type SessionCounts struct {
	SMTP int `json:"smtp"`
	IMAP int `json:"imap"`
}

// Admin serves the admin HTTP endpoints:
//
//	/healthz  200 "ok" when Health returns nil, else 503
//	/metrics  Prometheus text exposition format 0.0.4, written by hand
//	/status   the Status as JSON
//
// It has no authentication: keep it on a loopback address.
type Admin struct {
	Health func(ctx context.Context) error // nil: always healthy
	Status func(ctx context.Context) (Status, error)
	Logger *slog.Logger // nil: discard
}

// adminTimeout bounds the work of one admin request.
const adminTimeout = 5 * time.Second

// Handler returns the admin endpoints.
func (a *Admin) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", a.healthz)
	mux.HandleFunc("GET /metrics", a.metrics)
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

func (a *Admin) metrics(w http.ResponseWriter, r *http.Request) {
	st, ok := a.snapshot(w, r)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	io.WriteString(w, formatMetrics(st))
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

// formatMetrics writes the Prometheus text format (HELP, TYPE, samples).
func formatMetrics(st Status) string {
	var b strings.Builder
	metric := func(name, typ, help string, samples ...string) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
		for _, s := range samples {
			b.WriteString(name + s + "\n")
		}
	}
	num := func(v float64) string {
		if math.Abs(v) < 1e15 {
			return " " + strconv.FormatFloat(v, 'f', -1, 64) // 123456789, not 1.23456789e+08
		}
		return " " + strconv.FormatFloat(v, 'g', -1, 64)
	}
	inbound := 0
	for _, p := range st.Peers {
		if p.Inbound {
			inbound++
		}
	}
	metric("bmgate_build_info", "gauge", "Version and network of the running server.",
		fmt.Sprintf("{version=%s,network=%s} 1", labelValue(st.Version), labelValue(st.Network)))
	if !st.StartedAt.IsZero() {
		metric("bmgate_start_time_seconds", "gauge", "Start time of the server since the Unix epoch.",
			num(float64(st.StartedAt.UnixMilli())/1000))
	}
	metric("bmgate_peers", "gauge", "Connected Bitmessage peers.",
		`{direction="inbound"}`+num(float64(inbound)),
		`{direction="outbound"}`+num(float64(len(st.Peers)-inbound)))
	metric("bmgate_inventory_objects", "gauge", "Objects in the inventory.", num(float64(st.Inventory)))
	metric("bmgate_inventory_set_aside_objects", "gauge",
		fmt.Sprintf("Inbound objects set aside after repeated processing failures (counted up to %d).", setAsideListed),
		num(float64(len(st.SetAside))))
	metric("bmgate_objects_received_total", "counter", "Valid objects received that were new to the inventory.", num(float64(st.Objects.Received)))
	metric("bmgate_objects_relayed_total", "counter", "Objects sent to peers that asked for them.", num(float64(st.Objects.Relayed)))
	metric("bmgate_objects_invalid_total", "counter", "Objects refused by validation.", num(float64(st.Objects.Invalid)))
	var outbox []string
	for _, s := range outboxStateNames(st.Outbox) {
		outbox = append(outbox, fmt.Sprintf("{state=%s}", labelValue(s))+num(float64(st.Outbox[s])))
	}
	metric("bmgate_outbox_messages", "gauge", "Outgoing messages by state.", outbox...)
	metric("bmgate_pow_in_progress", "gauge", "Proof-of-work jobs being solved.", num(float64(st.PoW.InProgress)))
	metric("bmgate_pow_trials_total", "counter", "Proof-of-work nonces tried.", num(float64(st.PoW.Trials)))
	metric("bmgate_pow_trials_per_second", "gauge", "Recent proof-of-work speed.", num(st.PoW.TrialsPerSecond))
	metric("bmgate_sessions", "gauge", "Open client sessions by protocol.",
		`{protocol="imap"}`+num(float64(st.Sessions.IMAP)),
		`{protocol="smtp"}`+num(float64(st.Sessions.SMTP)))
	limitMetrics(st, metric, num)
	return b.String()
}

// loginOutcomes is the order /metrics lists the login guard's outcomes in.
var loginOutcomes = []string{
	loginguard.OutcomeOK, loginguard.OutcomeFailed, loginguard.OutcomeLocked,
	loginguard.OutcomeBusy, loginguard.OutcomeDisabled, loginguard.OutcomeError,
}

// limitMetrics writes the connection, login and password-hashing metrics.
func limitMetrics(st Status, metric func(name, typ, help string, samples ...string), num func(float64) string) {
	var open, max, refused, timeouts []string
	for _, l := range st.Listeners {
		lv := "{listener=" + labelValue(l.Name)
		open = append(open, lv+"}"+num(float64(l.Open)))
		max = append(max, lv+"}"+num(float64(l.Max)))
		refused = append(refused, lv+`,reason="cap"}`+num(float64(l.RefusedCap)), lv+`,reason="per_ip"}`+num(float64(l.RefusedPerIP)))
		timeouts = append(timeouts, lv+"}"+num(float64(l.LoginTimeouts)))
	}
	if len(st.Listeners) > 0 {
		metric("bmgate_listener_connections", "gauge", "Open connections by mail listener.", open...)
		metric("bmgate_listener_max_connections", "gauge", "Connection cap by mail listener.", max...)
		metric("bmgate_listener_refused_total", "counter", "Connections turned away at once: the listener at its cap, or the client address at max_connections_per_ip.", refused...)
		metric("bmgate_listener_login_timeouts_total", "counter", "Connections closed for not logging in within login_timeout.", timeouts...)
	}
	var attempts []string
	protos := make([]string, 0, len(st.Logins.Attempts))
	for p := range st.Logins.Attempts {
		protos = append(protos, p)
	}
	slices.Sort(protos)
	for _, p := range protos {
		for _, o := range loginOutcomes {
			attempts = append(attempts, fmt.Sprintf("{protocol=%s,outcome=%s}", labelValue(p), labelValue(o))+num(float64(st.Logins.Attempts[p][o])))
		}
	}
	metric("bmgate_login_attempts_total", "counter", "Login attempts by protocol and the login guard's decision: ok, failed (wrong password or unknown user), locked (refused unchecked after failures), busy (no password-hashing slot), disabled, error.", attempts...)
	metric("bmgate_login_waits_total", "counter", "Login attempts that waited for their turn (a lock after failures, or another check of the same account).", num(float64(st.Logins.Waited)))
	metric("bmgate_login_guard_pruned_total", "counter", "Rows of the login guard's table pruned.", num(float64(st.Logins.Pruned)))
	metric("bmgate_password_hash_slots", "gauge", "Password checks (argon2id) allowed at once.", num(float64(st.PasswordHash.Slots)))
	metric("bmgate_password_hashes_in_flight", "gauge", "Password checks running now.", num(float64(st.PasswordHash.InFlight)))
	metric("bmgate_password_hashes_peak", "gauge", "Most password checks that ran at once.", num(float64(st.PasswordHash.Peak)))
	metric("bmgate_password_hashes_total", "counter", "Password hashes computed.", num(float64(st.PasswordHash.Total)))
	metric("bmgate_password_hash_waits_total", "counter", "Password checks that waited for a slot.", num(float64(st.PasswordHash.Waited)))
	metric("bmgate_password_hash_refused_total", "counter", "Password checks refused with a temporary failure: no slot freed up in time.", num(float64(st.PasswordHash.Refused)))
	metric("bmgate_imap_literal_refusals_total", "counter", "IMAP commands refused for a literal over the limit.", num(float64(st.IMAPLiteralRefusals)))
}

// labelValue quotes a label value as the exposition format wants:
// backslash, double quote and newline escaped.
func labelValue(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}

// buildVersion is the module version the binary was built from.
func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}
