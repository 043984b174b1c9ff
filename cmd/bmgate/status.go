package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
	"unicode"

	"github.com/bmgate/bmgate/bmcore/wire"
	"github.com/bmgate/bmgate/gateway"
	"github.com/bmgate/bmgate/mailmap"
)

// setAsideListed bounds the set-aside objects a status lists.
const setAsideListed = 1000

// inboundWindow is how far back the inbound rate is measured.
const inboundWindow = 5 * time.Minute

// setAsidePrinted bounds the set-aside objects `bmgate status` prints
// (--json has them all).
const setAsidePrinted = 20

// storeStatus fills the figures the database holds: the inventory size,
// the outbox rows by state, the proof-of-work queue and the set-aside
// inbound objects. serve's Status func calls it too.
func storeStatus(ctx context.Context, st mailmap.Store, s *Status) error {
	n, err := st.InventoryCount(ctx)
	if err != nil {
		return fmt.Errorf("count inventory: %w", err)
	}
	counts, err := st.OutboxCounts(ctx)
	if err != nil {
		return fmt.Errorf("count outbox: %w", err)
	}
	jobs, err := st.PoWJobs(ctx)
	if err != nil {
		return fmt.Errorf("list proof of work: %w", err)
	}
	aside, err := st.SetAsideObjects(ctx, setAsideListed)
	if err != nil {
		return fmt.Errorf("list set-aside objects: %w", err)
	}
	s.SetAside = make([]SetAsideStatus, 0, len(aside))
	for _, o := range aside {
		s.SetAside = append(s.SetAside, SetAsideStatus{Hash: o.Hash.String(), Type: o.Type, Attempts: o.Attempts,
			Error: o.LastError, Expires: o.Expires})
	}
	b, err := st.InboundBacklog(ctx, time.Now(), inboundWindow)
	if err != nil {
		return fmt.Errorf("inbound backlog: %w", err)
	}
	s.Inbound.Pending, s.Inbound.Leased = b.Pending, b.Leased
	s.Inbound.RecentWindow, s.Inbound.Rate = b.Window.Seconds(), b.Rate()
	s.Inbound.CatchUpSeconds = -1
	if c := b.CatchUp(); c >= 0 {
		s.Inbound.CatchUpSeconds = c.Seconds()
	}
	s.Inventory = n
	s.Outbox = make(map[string]int, len(counts))
	for state, c := range counts {
		s.Outbox[string(state)] = c
	}
	s.PoWJobs = s.PoWJobs[:0]
	for _, j := range jobs {
		s.PoWJobs = append(s.PoWJobs, PoWJobStatus{ID: j.ID, Kind: j.Kind, State: string(j.State), OutboxID: j.OutboxID,
			UserID: j.UserID, Trials: j.Trials, Expected: j.Expected})
	}
	return nil
}

// estimatePoW fills each job's expected remaining time from a solve rate
// (trials per second), with the queue worked through in order by
// concurrency solvers at once.
func estimatePoW(jobs []PoWJobStatus, rate float64, concurrency int) {
	if rate <= 0 {
		return
	}
	var ahead float64 // seconds of queued work before the next pending job
	for i := range jobs {
		j := &jobs[i]
		if j.State == string(mailmap.PoWSolved) {
			continue
		}
		left := float64(j.Expected) - float64(j.Trials)
		if left <= 0 {
			left = float64(j.Expected) / 4 // unlucky so far; the wait for a hit is memoryless
		}
		own := left / rate
		if j.State == string(mailmap.PoWPending) {
			ahead += own / float64(max(concurrency, 1))
			own = ahead
		}
		j.Remaining = time.Duration(own * float64(time.Second))
	}
}

// adminURL is the URL of an admin endpoint for a client on this host: a
// listener on all interfaces is reached over loopback.
func adminURL(listen, path string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("admin address %q: %w", listen, err)
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
		if ip != nil && ip.To4() == nil {
			host = "::1"
		}
	}
	return "http://" + net.JoinHostPort(host, port) + path, nil
}

// adminGet fetches an admin endpoint of the running server.
func adminGet(ctx context.Context, cfg Config, path string) (*http.Response, error) {
	if ListenerOff(cfg.Admin) {
		return nil, errors.New("the admin listener is off (admin = off)")
	}
	u, err := adminURL(cfg.Admin, path)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		cancel()
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("no server answers at %s", cfg.Admin)
	}
	resp.Body = readCloser{resp.Body, cancel}
	return resp, nil
}

// readCloser cancels the request's context when the body is closed.
type readCloser struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (r readCloser) Close() error {
	err := r.ReadCloser.Close()
	r.cancel()
	return err
}

// errOtherDatabase: the admin listener asked belongs to an instance that
// serves another database.
var errOtherDatabase = errors.New("another instance")

func orNone(s string) string {
	if s == "" {
		return "none given"
	}
	return s
}

// serverStatus reads /status of the running server.
func serverStatus(ctx context.Context, cfg Config) (Status, error) {
	resp, err := adminGet(ctx, cfg, "/status")
	if err != nil {
		return Status{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Status{}, fmt.Errorf("server at %s answers %s", cfg.Admin, resp.Status)
	}
	var s Status
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&s); err != nil {
		return Status{}, fmt.Errorf("read server status: %w", err)
	}
	return s, nil
}

var cmdStatus = &command{
	name: "status",
	summary: "Show the state of the node: connected peers, inventory size, outgoing messages by state, proof of work in progress. " +
		"Database figures are always shown; peers and proof of work come from the running server's admin listener.",
	run: func(ctx context.Context, inv *invocation) error {
		asJSON := inv.fs.Bool("json", false, "print the status as JSON")
		cfg, err := inv.parse(0, 0)
		if err != nil {
			return err
		}
		st, err := inv.openStore(ctx, cfg)
		if err != nil {
			return err
		}
		defer st.Close()
		live, liveErr := serverStatus(ctx, cfg)
		if own := mailmap.DatabaseID(st); liveErr == nil && live.DatabaseID != own {
			// Another instance (another data directory, another network)
			// answers on this admin address: its peers and counters are
			// not this database's.
			liveErr = fmt.Errorf("%w: the server answering at %s (instance %s) serves database %s, not this one (%s); "+
				"give this instance's --admin address", errOtherDatabase, cfg.Admin, orNone(live.InstanceID), orNone(live.DatabaseID), own)
		}
		s := live
		if liveErr != nil {
			s = Status{Network: cfg.Network}
		}
		// The database is the truth for what it holds, server or not.
		if err := storeStatus(ctx, st, &s); err != nil {
			return err
		}
		if liveErr == nil {
			estimatePoW(s.PoWJobs, s.PoW.SolveRate, cfg.PoWConcurrency)
		} else if gw, err := gateway.New(gateway.Config{Store: st, Network: cfg.NetworkParams(), Domain: cfg.Domain, PoWWorkers: cfg.PoWWorkers}); err == nil {
			// No server to ask: the work ahead at an assumed rate.
			if q, _, err := gw.QueuedPoW(ctx); err == nil {
				for _, u := range q {
					s.QueuedPoW = append(s.QueuedPoW, QueuedPoWStatus{User: u.User, Messages: u.Rows, Estimate: u.Estimate})
				}
			}
		}
		if *asJSON {
			enc := json.NewEncoder(inv.stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(struct {
				Status
				Running bool `json:"running"`
			}{s, liveErr == nil})
		}
		printStatus(inv.stdout, s, liveErr, time.Now())
		return nil
	},
}

func printStatus(w io.Writer, s Status, liveErr error, now time.Time) {
	if errors.Is(liveErr, errOtherDatabase) {
		fmt.Fprintf(w, "server:     none of this database's found (%v)\n", liveErr)
	} else if liveErr != nil {
		fmt.Fprintf(w, "server:     not running or not reachable: %v\n", liveErr)
	} else {
		fmt.Fprintf(w, "server:     running, version %s, up %s\n", s.Version, now.Sub(s.StartedAt).Truncate(time.Second))
	}
	fmt.Fprintf(w, "network:    %s\n", s.Network)
	if liveErr == nil {
		inbound := 0
		for _, p := range s.Peers {
			if p.Inbound {
				inbound++
			}
		}
		fmt.Fprintf(w, "peers:      %d (%d outbound, %d inbound)\n", len(s.Peers), len(s.Peers)-inbound, inbound)
		for _, p := range s.Peers {
			dir := "outbound"
			if p.Inbound {
				dir = "inbound"
			}
			fmt.Fprintf(w, "  %-45s %-8s %-28s since %s\n", p.Addr, dir, p.UserAgent, p.Since.Local().Format(time.DateTime))
		}
	}
	fmt.Fprintf(w, "inventory:  %d objects\n", s.Inventory)
	var parts []string
	for _, state := range outboxStateNames(s.Outbox) {
		parts = append(parts, fmt.Sprintf("%s %d", state, s.Outbox[state]))
	}
	fmt.Fprintf(w, "outbox:     %s\n", strings.Join(parts, ", "))
	fmt.Fprintf(w, "pow queue:  %d jobs\n", len(s.PoWJobs))
	for _, j := range s.PoWJobs {
		row := "-"
		if j.OutboxID != 0 {
			row = fmt.Sprintf("outbox %d", j.OutboxID)
		}
		eta := "time left unknown"
		switch {
		case j.State == string(mailmap.PoWSolved):
			eta = "publishing"
		case j.Remaining > 0:
			eta = "~" + j.Remaining.Round(time.Second).String() + " left"
		}
		fmt.Fprintf(w, "  job %-6d %-9s %-8s %-12s %d/%d trials, %s\n", j.ID, j.Kind, j.State, row, j.Trials, j.Expected, eta)
	}
	printInbound(w, s.Inbound)
	printSetAside(w, s.SetAside)
	if len(s.QueuedPoW) > 0 {
		how := "at the measured rate"
		if !s.QueuedPoWMeasured {
			how = "at an assumed rate until the first proof of work is measured"
		}
		fmt.Fprintf(w, "pow ahead:  estimated on this machine, %s\n", how)
		for _, u := range s.QueuedPoW {
			fmt.Fprintf(w, "  %-20s %d messages, ~%s\n", u.User, u.Messages, u.Estimate.Round(time.Second))
		}
	}
	if liveErr == nil {
		fmt.Fprintf(w, "pow:        %d in progress, %.0f trials/s\n", s.PoW.InProgress, s.PoW.TrialsPerSecond)
		fmt.Fprintf(w, "objects:    %d received, %d relayed, %d invalid\n", s.Objects.Received, s.Objects.Relayed, s.Objects.Invalid)
		fmt.Fprintf(w, "sessions:   %d SMTP, %d IMAP\n", s.Sessions.SMTP, s.Sessions.IMAP)
		printLimits(w, s)
	}
}

// printLimits shows the listeners' connections against their caps and the
// login guard's decisions (`bmgate login-guard list` shows what is locked).
func printLimits(w io.Writer, s Status) {
	var conns []string
	for _, l := range s.Listeners {
		c := fmt.Sprintf("%s %d/%d", l.Name, l.Open, l.Max)
		if l.RefusedCap+l.RefusedPerIP > 0 {
			c += fmt.Sprintf(" (%d refused)", l.RefusedCap+l.RefusedPerIP)
		}
		conns = append(conns, c)
	}
	if len(conns) > 0 {
		fmt.Fprintf(w, "conns:      %s\n", strings.Join(conns, ", "))
	}
	total := map[string]uint64{}
	for _, byOutcome := range s.Logins.Attempts {
		for o, n := range byOutcome {
			total[o] += n
		}
	}
	var parts []string
	for _, o := range loginOutcomes {
		if total[o] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", total[o], o))
		}
	}
	if len(parts) == 0 {
		parts = append(parts, "none")
	}
	fmt.Fprintf(w, "logins:     %s (password checks: %d now, at most %d at once)\n", strings.Join(parts, ", "), s.PasswordHash.InFlight, s.PasswordHash.Slots)
}

// printInbound shows the inbound backlog and when it will be worked
// through at the deployment's recent rate.
func printInbound(w io.Writer, in InboundStatus) {
	eta := "caught up"
	switch {
	case in.Pending > 0 && in.CatchUpSeconds < 0:
		eta = "time to catch up unknown (nothing processed lately)"
	case in.Pending > 0:
		eta = "caught up in ~" + time.Duration(in.CatchUpSeconds*float64(time.Second)).Round(time.Second).String()
	}
	fmt.Fprintf(w, "inbound:    %d pending (%d being processed), %.1f objects/s over the last %s, %s\n",
		in.Pending, in.Leased, in.Rate, time.Duration(in.RecentWindow*float64(time.Second)), eta)
}

// printSetAside lists the inbound objects the gateway gave up on, with the
// error an operator needs to act on them.
func printSetAside(w io.Writer, objs []SetAsideStatus) {
	n := fmt.Sprint(len(objs))
	if len(objs) >= setAsideListed {
		n = "at least " + n
	}
	fmt.Fprintf(w, "set aside:  %s inbound objects\n", n)
	for i, o := range objs {
		if i == setAsidePrinted {
			fmt.Fprintf(w, "  … and %d more (bmgate status --json lists them)\n", len(objs)-i)
			break
		}
		fmt.Fprintf(w, "  %s %-9s %d attempts: %s\n", o.Hash, objectTypeName(o.Type), o.Attempts, oneLine(o.Error, 200))
	}
}

// objectTypeName names a Bitmessage object type.
func objectTypeName(t uint32) string {
	switch t {
	case wire.ObjectGetPubkey:
		return "getpubkey"
	case wire.ObjectPubkey:
		return "pubkey"
	case wire.ObjectMsg:
		return "msg"
	case wire.ObjectBroadcast:
		return "broadcast"
	}
	return fmt.Sprintf("type %d", t)
}

// oneLine makes an error text printable on one terminal line: control
// characters become spaces, and it is cut to at most n runes.
func oneLine(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	if r := []rune(s); len(r) > n {
		s = string(r[:n-1]) + "…"
	}
	return s
}

var cmdHealthcheck = &command{
	name:    "healthcheck",
	summary: "Exit 0 when the running server's /healthz answers ok (for container health checks), 1 otherwise.",
	run: func(ctx context.Context, inv *invocation) error {
		cfg, err := inv.parse(0, 0)
		if err != nil {
			return err
		}
		resp, err := adminGet(ctx, cfg, "/healthz")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("server unhealthy: %s", resp.Status)
		}
		fmt.Fprintln(inv.stdout, "ok")
		return nil
	},
}
