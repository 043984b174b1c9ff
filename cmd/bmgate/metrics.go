package main

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/bmgate/bmgate/mailmap"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics is the serve command's Prometheus registry (never the global
// default one): the Go and process collectors, the SMTP and IMAP command
// counters, and a collector that reads the server's Status at scrape time.
type Metrics struct {
	Registry *prometheus.Registry
	SMTP     *commandMetrics // smtpd.Config.Commands
	IMAP     *commandMetrics // imapd.Config.Commands
}

// SMTP and IMAP commands the mail servers report (their label values,
// created at zero so that the series exist from the start).
var (
	smtpCommands = []string{"AUTH", "MAIL", "RCPT", "DATA"}
	imapCommands = []string{"LOGIN", "SELECT", "FETCH", "SEARCH", "STORE", "COPY", "MOVE", "EXPUNGE",
		"APPEND", "LIST", "STATUS", "CREATE", "DELETE", "RENAME"}
)

// newMetrics builds a registry whose status collector calls status at
// each scrape (bounded by adminTimeout).
func newMetrics(status func(context.Context) (Status, error)) *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	if status != nil {
		reg.MustRegister(newStatusCollector(status))
	}
	return &Metrics{
		Registry: reg,
		SMTP:     newCommandMetrics(reg, "smtp", smtpCommands),
		IMAP:     newCommandMetrics(reg, "imap", imapCommands),
	}
}

// commandMetrics counts one protocol's commands; it is the mail server's
// CommandObserver.
type commandMetrics struct {
	total    *prometheus.CounterVec
	failures *prometheus.CounterVec
	duration *prometheus.HistogramVec
	known    []string
}

func newCommandMetrics(reg prometheus.Registerer, proto string, known []string) *commandMetrics {
	m := &commandMetrics{
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bmgate_" + proto + "_commands_total",
			Help: "Commands handled by the " + proto + " server, by command.",
		}, []string{"command"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bmgate_" + proto + "_command_failures_total",
			Help: "Commands the " + proto + " server answered with an error, by command.",
		}, []string{"command"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "bmgate_" + proto + "_command_duration_seconds",
			Help:    "Time the " + proto + " server took to handle a command, by command.",
			Buckets: []float64{.001, .005, .01, .05, .1, .5, 1, 5, 30},
		}, []string{"command"}),
		known: known,
	}
	reg.MustRegister(m.total, m.failures, m.duration)
	for _, c := range known {
		m.total.WithLabelValues(c)
		m.failures.WithLabelValues(c)
		m.duration.WithLabelValues(c)
	}
	return m
}

// ObserveCommand implements smtpd.CommandObserver and imapd.CommandObserver.
// A command outside the known set is counted as "other", which keeps the
// label set bounded.
func (m *commandMetrics) ObserveCommand(command string, took time.Duration, err error) {
	if !slices.Contains(m.known, command) {
		command = "other"
	}
	m.total.WithLabelValues(command).Inc()
	if err != nil {
		m.failures.WithLabelValues(command).Inc()
	}
	m.duration.WithLabelValues(command).Observe(took.Seconds())
}

// statusCollector exports the counters the node, the gateway, the mail
// servers and the login guard keep themselves, and the store's figures,
// read through a Status at scrape time.
type statusCollector struct {
	status func(context.Context) (Status, error)

	buildInfo, startTime, peers, inventory, setAside                     *prometheus.Desc
	objReceived, objRelayed, objInvalid, connRenewals                    *prometheus.Desc
	msgsReceived, msgsSent, acks, reports, msgsBlocked                   *prometheus.Desc
	outbox, powQueue, powInProgress, powTrials, sessions                 *prometheus.Desc
	lnOpen, lnMax, lnRefused, lnTimeouts                                 *prometheus.Desc
	loginAttempts, loginWaits, loginPruned                               *prometheus.Desc
	hashSlots, hashInFlight, hashPeak, hashTotal, hashWaits, hashRefused *prometheus.Desc
	literalRefusals, statusUp                                            *prometheus.Desc
	inPending, inLeased, inRate, inCatchUp, inProcessed                  *prometheus.Desc
}

func newStatusCollector(status func(context.Context) (Status, error)) *statusCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &statusCollector{
		status:          status,
		buildInfo:       d("bmgate_build_info", "Version and network of the running server.", "version", "network"),
		startTime:       d("bmgate_start_time_seconds", "Start time of the server since the Unix epoch."),
		peers:           d("bmgate_peers", "Connected Bitmessage peers.", "direction"),
		inventory:       d("bmgate_inventory_objects", "Objects in the inventory."),
		setAside:        d("bmgate_inventory_set_aside_objects", "Inbound objects set aside after repeated processing failures (counted up to 1000)."),
		objReceived:     d("bmgate_objects_received_total", "Valid objects received that were new to the inventory."),
		objRelayed:      d("bmgate_objects_relayed_total", "Objects sent to peers that asked for them."),
		objInvalid:      d("bmgate_objects_invalid_total", "Objects refused by validation."),
		connRenewals:    d("bmgate_connection_renewals_total", "Connections to PyBitmessage 0.6 peers closed to be re-established, so that they announce acks."),
		msgsReceived:    d("bmgate_messages_received_total", "Bitmessage messages delivered into mailboxes."),
		msgsBlocked:     d("bmgate_messages_blocked_total", "Bitmessage msgs dropped by a user's blacklist or whitelist (one per user)."),
		msgsSent:        d("bmgate_messages_sent_total", "Msg and broadcast objects published."),
		acks:            d("bmgate_acks_total", "Acks matched to sent messages."),
		reports:         d("bmgate_reports_total", "Delivery status reports written."),
		outbox:          d("bmgate_outbox_messages", "Outgoing messages by state.", "state"),
		powQueue:        d("bmgate_pow_queue_jobs", "Proof-of-work jobs of the deployment's queue by state.", "state"),
		powInProgress:   d("bmgate_pow_in_progress", "Proof-of-work jobs being solved by this process."),
		powTrials:       d("bmgate_pow_trials_total", "Proof-of-work nonces tried (rate() gives the speed)."),
		sessions:        d("bmgate_sessions", "Open client sessions by protocol.", "protocol"),
		lnOpen:          d("bmgate_listener_connections", "Open connections by mail listener.", "listener"),
		lnMax:           d("bmgate_listener_max_connections", "Connection cap by mail listener.", "listener"),
		lnRefused:       d("bmgate_listener_refused_total", "Connections turned away at once: the listener at its cap, or the client address at max_connections_per_ip.", "listener", "reason"),
		lnTimeouts:      d("bmgate_listener_login_timeouts_total", "Connections closed for not logging in within login_timeout.", "listener"),
		loginAttempts:   d("bmgate_login_attempts_total", "Login attempts by protocol and the login guard's decision: ok, failed (wrong password or unknown user), locked (refused unchecked after failures), busy (no password-hashing slot), disabled, error.", "protocol", "outcome"),
		loginWaits:      d("bmgate_login_waits_total", "Login attempts that waited for their turn (a lock after failures, or another check of the same account)."),
		loginPruned:     d("bmgate_login_guard_pruned_total", "Rows of the login guard's table pruned."),
		hashSlots:       d("bmgate_password_hash_slots", "Password checks (argon2id) allowed at once."),
		hashInFlight:    d("bmgate_password_hashes_in_flight", "Password checks running now."),
		hashPeak:        d("bmgate_password_hashes_peak", "Most password checks that ran at once."),
		hashTotal:       d("bmgate_password_hashes_total", "Password hashes computed."),
		hashWaits:       d("bmgate_password_hash_waits_total", "Password checks that waited for a slot."),
		hashRefused:     d("bmgate_password_hash_refused_total", "Password checks refused with a temporary failure: no slot freed up in time."),
		literalRefusals: d("bmgate_imap_literal_refusals_total", "IMAP commands refused for a literal over the limit."),
		inPending:       d("bmgate_inbound_pending_objects", "Inventory objects waiting to be processed by the gateway (set-aside ones not counted)."),
		inLeased:        d("bmgate_inbound_leased_objects", "Pending objects claimed by an instance now."),
		inRate:          d("bmgate_inbound_rate_objects_per_second", "Objects the deployment (every instance on the database) processed per second over the last 5 minutes."),
		inCatchUp:       d("bmgate_inbound_catch_up_seconds", "Expected time to process the pending objects at the recent rate (absent when nothing was processed lately)."),
		inProcessed:     d("bmgate_inbound_objects_processed_total", "Inbound objects this process processed."),
		statusUp:        d("bmgate_store_up", "1 when the store's figures (inventory, outbox, proof-of-work queue, set-aside objects) could be read for this scrape, else 0."),
	}
}

func (c *statusCollector) descs() []*prometheus.Desc {
	return []*prometheus.Desc{c.buildInfo, c.startTime, c.peers, c.inventory, c.setAside,
		c.objReceived, c.objRelayed, c.objInvalid, c.connRenewals,
		c.msgsReceived, c.msgsSent, c.acks, c.reports, c.msgsBlocked,
		c.outbox, c.powQueue, c.powInProgress, c.powTrials, c.sessions,
		c.lnOpen, c.lnMax, c.lnRefused, c.lnTimeouts,
		c.loginAttempts, c.loginWaits, c.loginPruned,
		c.hashSlots, c.hashInFlight, c.hashPeak, c.hashTotal, c.hashWaits, c.hashRefused,
		c.literalRefusals, c.statusUp, c.inPending, c.inLeased, c.inRate, c.inCatchUp, c.inProcessed}
}

// Describe implements prometheus.Collector.
func (c *statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs() {
		ch <- d
	}
}

// errStoreStatus marks a Status whose store figures are missing: the
// other figures are still filled.
var errStoreStatus = errors.New("store status")

// Collect implements prometheus.Collector.
func (c *statusCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	st, err := c.status(ctx)
	storeOK := err == nil
	if err != nil && !errors.Is(err, errStoreStatus) {
		ch <- prometheus.NewInvalidMetric(c.statusUp, err)
		return
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(c.buildInfo, 1, st.Version, st.Network)
	if !st.StartedAt.IsZero() {
		gauge(c.startTime, float64(st.StartedAt.UnixMilli())/1000)
	}
	inbound := 0
	for _, p := range st.Peers {
		if p.Inbound {
			inbound++
		}
	}
	gauge(c.peers, float64(inbound), "inbound")
	gauge(c.peers, float64(len(st.Peers)-inbound), "outbound")
	if storeOK {
		gauge(c.statusUp, 1)
		gauge(c.inventory, float64(st.Inventory))
		gauge(c.setAside, float64(len(st.SetAside)))
		for _, s := range outboxStateNames(st.Outbox) {
			gauge(c.outbox, float64(st.Outbox[s]), s)
		}
		jobs := map[string]int{}
		for _, j := range st.PoWJobs {
			jobs[j.State]++
		}
		for _, s := range powJobStateNames(jobs) {
			gauge(c.powQueue, float64(jobs[s]), s)
		}
		gauge(c.inPending, float64(st.Inbound.Pending))
		gauge(c.inLeased, float64(st.Inbound.Leased))
		gauge(c.inRate, st.Inbound.Rate)
		if st.Inbound.CatchUpSeconds >= 0 {
			gauge(c.inCatchUp, st.Inbound.CatchUpSeconds)
		}
	} else {
		gauge(c.statusUp, 0)
	}
	counter(c.objReceived, st.Objects.Received)
	counter(c.objRelayed, st.Objects.Relayed)
	counter(c.objInvalid, st.Objects.Invalid)
	counter(c.connRenewals, st.Objects.ConnRenewals)
	counter(c.msgsReceived, st.Messages.Received)
	counter(c.msgsBlocked, st.Messages.Blocked)
	counter(c.msgsSent, st.Messages.Sent)
	counter(c.acks, st.Messages.Acks)
	counter(c.reports, st.Messages.Reports)
	counter(c.inProcessed, st.Inbound.Processed)
	gauge(c.powInProgress, float64(st.PoW.InProgress))
	counter(c.powTrials, st.PoW.Trials)
	gauge(c.sessions, float64(st.Sessions.IMAP), "imap")
	gauge(c.sessions, float64(st.Sessions.SMTP), "smtp")
	for _, l := range st.Listeners {
		gauge(c.lnOpen, float64(l.Open), l.Name)
		gauge(c.lnMax, float64(l.Max), l.Name)
		counter(c.lnRefused, l.RefusedCap, l.Name, "cap")
		counter(c.lnRefused, l.RefusedPerIP, l.Name, "per_ip")
		counter(c.lnTimeouts, l.LoginTimeouts, l.Name)
	}
	protos := make([]string, 0, len(st.Logins.Attempts))
	for p := range st.Logins.Attempts {
		protos = append(protos, p)
	}
	slices.Sort(protos)
	for _, p := range protos {
		for _, o := range loginOutcomes {
			counter(c.loginAttempts, st.Logins.Attempts[p][o], p, o)
		}
	}
	counter(c.loginWaits, st.Logins.Waited)
	counter(c.loginPruned, st.Logins.Pruned)
	gauge(c.hashSlots, float64(st.PasswordHash.Slots))
	gauge(c.hashInFlight, float64(st.PasswordHash.InFlight))
	gauge(c.hashPeak, float64(st.PasswordHash.Peak))
	counter(c.hashTotal, st.PasswordHash.Total)
	counter(c.hashWaits, st.PasswordHash.Waited)
	counter(c.hashRefused, st.PasswordHash.Refused)
	counter(c.literalRefusals, st.IMAPLiteralRefusals)
}

// powJobStateNames returns the proof-of-work job states in order, then any
// other state the map holds, sorted.
func powJobStateNames(counts map[string]int) []string {
	names := []string{string(mailmap.PoWPending), string(mailmap.PoWSolving), string(mailmap.PoWSolved)}
	var extra []string
	for s := range counts {
		if !slices.Contains(names, s) {
			extra = append(extra, s)
		}
	}
	slices.Sort(extra)
	return append(names, extra...)
}
