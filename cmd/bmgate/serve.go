package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bmgate/bmgate/bmcore/inventory"
	"github.com/bmgate/bmgate/bmcore/node"
	"github.com/bmgate/bmgate/bmcore/params"
	"github.com/bmgate/bmgate/gateway"
	"github.com/bmgate/bmgate/gateway/pyapi"
	"github.com/bmgate/bmgate/imapd"
	"github.com/bmgate/bmgate/mailmap"
	"github.com/bmgate/bmgate/mailmap/loginguard"
	"github.com/bmgate/bmgate/smtpd"
)

var cmdServe = &command{
	name:    "serve",
	summary: "Run the Bitmessage node, the SMTP submission server and the IMAP server.",
	serve:   true,
	run:     runServe,
}

func init() { commands = append(commands, cmdServe) }

// server is one running bmgate: the store, the node, the gateway and the
// mail listeners, wired together.
type server struct {
	cfg     Config
	log     *slog.Logger
	store   mailmap.Store
	node    *node.Node
	gw      *gateway.Gateway
	smtp    *smtpd.Server
	imap    *imapd.Server
	guard   *loginguard.Guard
	caps    connCaps
	clock   loginguard.Clock // the login guard's; nil: the real one (tests set a manual clock)
	started time.Time
	// instanceID names this run of serve in /status (bmgate status shows
	// which instance answered).
	instanceID string

	powMu     sync.Mutex
	powLast   uint64
	powLastAt time.Time
	powRate   float64
	powTrials uint64

	metrics *Metrics // the /metrics registry, made by build
}

func runServe(ctx context.Context, inv *invocation) error {
	cfg, err := inv.parse(0, 0)
	if err != nil {
		return err
	}
	log := cfg.NewLogger(inv.stderr)
	store, err := cfg.OpenStore(ctx, log.With("component", "store"))
	if err != nil {
		return err
	}
	defer store.Close()

	s := &server{cfg: cfg, log: log, store: store, started: time.Now(), instanceID: newInstanceID()}
	if err := s.build(); err != nil {
		return err
	}
	return s.run(ctx, inv)
}

// newInstanceID is a random id for one run of serve.
func newInstanceID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// gatewayTiming shortens the gateway's polling on the test network, whose
// proof of work is trivial, so a local experiment or test answers in seconds.
func gatewayTiming(net *params.Network, gc *gateway.Config) {
	if net != params.Testnet {
		return
	}
	gc.PollInterval = time.Second
	gc.PubkeyPoll = time.Second
	gc.MaintenanceInterval = 2 * time.Second
	gc.Lease = 30 * time.Second
	gc.InboundLease = 30 * time.Second
}

func (s *server) build() error {
	s.metrics = newMetrics(s.status)
	cfg := s.cfg
	netp := cfg.NetworkParams()
	gcfg := gateway.Config{
		Store:          s.store,
		Network:        netp,
		Domain:         cfg.Domain,
		Logger:         s.log.With("component", "gateway"),
		PoWWorkers:     cfg.PoWWorkers,
		PoWConcurrency: cfg.PoWConcurrency,
		InboundWorkers: cfg.InboundWorkers,
		MsgTTL:         cfg.MessageTTL,
		BroadcastTTL:   cfg.BroadcastTTL,
		PubkeyGiveUp:   cfg.PubkeyTimeout,
		AckGiveUp:      cfg.AckTimeout,

		MaxQueuedPoWPerUser: cfg.MaxQueuedPoW,
	}
	gatewayTiming(netp, &gcfg)
	listen := cfg.P2P
	if ListenerOff(listen) {
		listen = ""
	}
	maxOut := cfg.MaxOutbound
	if maxOut == 0 {
		maxOut = -1 // max_outbound = 0: dial only the configured peers
	}
	var gw *gateway.Gateway
	n, err := node.New(node.Config{
		Network:        netp,
		ListenAddr:     listen,
		Peers:          cfg.Peers,
		Bootstrap:      cfg.Bootstrap,
		MaxOutbound:    maxOut,
		MaxInbound:     cfg.MaxInbound,
		Inventory:      s.store,
		KnownNodes:     s.store,
		UserAgent:      userAgent(),
		SOCKS5:         cfg.SOCKS5,
		SOCKS5User:     cfg.SOCKS5User,
		SOCKS5Password: cfg.SOCKS5Password,
		Logger:         s.log.With("component", "node"),
		OnObject: func(inventory.StoredObject) {
			if gw != nil {
				gw.WakeInbound()
			}
		},
		AllowPrivateAddrs: netp == params.Testnet,
	})
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	gcfg.Publisher = n
	gw, err = gateway.New(gcfg)
	if err != nil {
		return err
	}
	s.node, s.gw = n, gw

	tlsConfig, err := cfg.TLSConfig()
	if err != nil {
		return err
	}
	// Logins: one guard for SMTP and IMAP, its counts in the database (so
	// shared by every instance and shown by `bmgate login-guard list`);
	// password hashing bounded process-wide.
	mailmap.SetPasswordHashLimit(cfg.PasswordHashConcurrency, 0)
	knownFor := cfg.LoginKnownFor
	if knownFor == 0 {
		knownFor = -1 // off
	}
	s.guard = loginguard.New(loginguard.Config{
		Store:     s.store,
		BaseDelay: cfg.LoginDelay,
		MaxDelay:  cfg.LoginMaxDelay,
		Window:    cfg.LoginWindow,
		KnownFor:  knownFor,
		Clock:     s.clock,
		Logger:    s.log.With("component", "loginguard"),
	})
	s.caps = connectionCaps(cfg, openFileLimit())
	smtpCfg := smtpd.Config{
		Domain:            cfg.Hostname,
		TLSConfig:         tlsConfig,
		AllowInsecureAuth: cfg.InsecureAuth(cfg.SMTP),
		MaxConnsPerIP:     cfg.MaxConnectionsPerIP,
		MaxConns:          s.caps.SMTP,
		TrustedMaxConns:   cfg.LocalSubmitMaxConnections,
		LoginTimeout:      cfg.LoginTimeout,
		Guard:             s.guard,
		Logger:            s.log.With("component", "smtp"),
		Commands:          s.metrics.SMTP,
	}
	if !ListenerOff(cfg.LocalSubmit) {
		u, err := s.store.UserByName(context.Background(), cfg.LocalSubmitUser)
		if err != nil {
			return fmt.Errorf("local_submit_user %q: %w", cfg.LocalSubmitUser, err)
		}
		smtpCfg.Trusted = &smtpd.TrustedLocal{User: u}
	}
	s.smtp = smtpd.New(s.store, gw, smtpCfg)
	s.imap = imapd.New(s.store, imapd.Config{
		TLSConfig:         tlsConfig,
		AllowInsecureAuth: cfg.InsecureAuth(cfg.IMAP),
		MaxConnsPerIP:     cfg.MaxConnectionsPerIP,
		MaxConns:          s.caps.IMAP,
		LoginTimeout:      cfg.LoginTimeout,
		Guard:             s.guard,
		Logger:            s.log.With("component", "imap"),
		Commands:          s.metrics.IMAP,
	})
	return nil
}

// listen opens a listener ("unix:/path" or host:port).
func listen(addr string) (net.Listener, error) {
	if p, ok := strings.CutPrefix(addr, "unix:"); ok {
		return listenUnix(p, 0o600, "")
	}
	return net.Listen("tcp", addr)
}

// listenService opens a mail listener; local_submit's unix socket gets
// local_submit_mode and local_submit_group.
func (s *server) listenService(name, addr string) (net.Listener, error) {
	p, ok := strings.CutPrefix(addr, "unix:")
	if !ok || name != "local_submit" {
		return listen(addr)
	}
	mode, err := parseFileMode(s.cfg.LocalSubmitMode)
	if err != nil {
		return nil, err
	}
	return listenUnix(p, os.FileMode(mode), s.cfg.LocalSubmitGroup)
}

// listenUnix listens on a unix socket at path with the given permissions
// and group (name or number; "" keeps the process's). What is at path
// already is removed only when it is a socket nobody listens on (a stale
// one from a previous run); any other file is left alone, with an error.
func listenUnix(path string, mode os.FileMode, group string) (net.Listener, error) {
	gid := -1
	if group != "" {
		g, err := user.LookupGroup(group)
		if err != nil {
			if g, err = user.LookupGroupId(group); err != nil {
				return nil, fmt.Errorf("group %q: no such group", group)
			}
		}
		if gid, err = strconv.Atoi(g.Gid); err != nil {
			return nil, fmt.Errorf("group %q: %w", group, err)
		}
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("%s exists and is not a socket (%s); remove it or choose another path: bmgate will not delete it", path, fi.Mode().Type())
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s: another process is listening on this socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	// Chmod after bind: the socket is made with the umask's mode; until
	// the chmod it is at most that open, never more than asked.
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("chmod %s: %w", path, err)
	}
	if gid >= 0 {
		if err := os.Chown(path, -1, gid); err != nil {
			ln.Close()
			return nil, fmt.Errorf("give %s to group %s: %w", path, group, err)
		}
	}
	return ln, nil
}

func (s *server) run(ctx context.Context, inv *invocation) error {
	cfg := s.cfg
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	type service struct {
		name, addr string
		serve      func(net.Listener) error
	}
	services := []service{
		{"smtp", cfg.SMTP, s.smtp.Serve},
		{"smtps", cfg.SMTPS, s.smtp.ServeTLS},
		{"imap", cfg.IMAP, s.imap.Serve},
		{"imaps", cfg.IMAPS, s.imap.ServeTLS},
		{"local_submit", cfg.LocalSubmit, s.smtp.ServeTrusted},
	}
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	errc := make(chan error, len(services)+4)
	var bound []string
	addrs := map[string]string{} // listener name → the address it is bound to (real ports, not :0)
	for _, sv := range services {
		if ListenerOff(sv.addr) {
			continue
		}
		ln, err := s.listenService(sv.name, sv.addr)
		if err != nil {
			return fmt.Errorf("%s listener: %w", sv.name, err)
		}
		lns = append(lns, ln)
		bound = append(bound, fmt.Sprintf("%s=%s", sv.name, ln.Addr()))
		addrs[sv.name] = ln.Addr().String()
		if ln.Addr().Network() == "unix" {
			addrs[sv.name] = "unix:" + ln.Addr().String()
		}
		go func() {
			if err := sv.serve(ln); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("%s: %w", sv.name, err)
			}
		}()
	}
	if !ListenerOff(cfg.Admin) {
		ln, err := listen(cfg.Admin)
		if err != nil {
			return fmt.Errorf("admin listener: %w", err)
		}
		lns = append(lns, ln)
		bound = append(bound, fmt.Sprintf("admin=%s", ln.Addr()))
		admin := &Admin{Health: s.health, Status: s.status, Metrics: s.metrics, Logger: s.log.With("component", "admin")}
		go func() {
			if err := admin.Serve(ctx, ln); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("admin: %w", err)
			}
		}()
	}

	if !ListenerOff(cfg.Autoconfig) {
		imap, smtp, err := endpoints(cfg)
		if err != nil {
			return err
		}
		ln, err := listen(cfg.Autoconfig)
		if err != nil {
			return fmt.Errorf("autoconfig listener: %w", err)
		}
		lns = append(lns, ln)
		bound = append(bound, fmt.Sprintf("autoconfig=%s", ln.Addr()))
		ac := &autoconfigServer{Domain: cfg.Domain, Hostname: cfg.Hostname, IMAP: imap, SMTP: smtp,
			Log: s.log.With("component", "autoconfig")}
		go func() {
			if err := ac.serve(ln); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("autoconfig: %w", err)
			}
		}()
	}

	if !ListenerOff(cfg.API) {
		ln, err := listen(cfg.API)
		if err != nil {
			return fmt.Errorf("api listener: %w", err)
		}
		lns = append(lns, ln)
		bound = append(bound, fmt.Sprintf("api=%s", ln.Addr()))
		addrs["api"] = ln.Addr().String()
		if !isLoopback(cfg.API) {
			s.log.Warn("the XML-RPC API listens beyond loopback over plain HTTP: passwords travel in clear in every request; put it behind a TLS proxy", "api", ln.Addr().String())
		}
		api, err := pyapi.New(pyapi.Config{Store: s.store, Gateway: s.gw, Guard: s.guard, Network: cfg.NetworkParams(),
			Domain: cfg.Domain, Version: Version(), Status: s.clientStatus, Logger: s.log.With("component", "api")})
		if err != nil {
			return err
		}
		go func() {
			if err := api.Serve(ctx, ln); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("api: %w", err)
			}
		}()
	}

	if err := s.node.Start(ctx); err != nil {
		return fmt.Errorf("start node: %w", err)
	}
	guardDone := make(chan struct{})
	go func() {
		defer close(guardDone)
		s.guard.Run(ctx) // prunes the login guard's table
	}()
	defer func() { <-guardDone }()
	hs := mailmap.PasswordHashStatus()
	s.log.Info("connection and login limits", "smtp_max_connections", s.caps.SMTP, "imap_max_connections", s.caps.IMAP,
		"local_submit_max_connections", s.caps.Local, "max_connections_per_ip", cfg.MaxConnectionsPerIP,
		"open_file_limit", s.caps.Limit, "fd_reserve", s.caps.Reserve, "login_timeout", cfg.LoginTimeout,
		"login_delay", cfg.LoginDelay, "login_max_delay", cfg.LoginMaxDelay, "password_hash_concurrency", hs.Slots)
	if a := s.node.Addr(); a != nil {
		bound = append(bound, fmt.Sprintf("p2p=%s", a))
	}
	gwDone := make(chan struct{})
	go func() {
		defer close(gwDone)
		if err := s.gw.Run(ctx); err != nil {
			errc <- fmt.Errorf("gateway: %w", err)
		}
	}()
	s.log.Info("bmgate running", "version", Version(), "network", cfg.Network, "db", redactURL(cfg.DB), "listeners", strings.Join(bound, " "))
	s.printWelcome(inv, addrs)

	var runErr error
	select {
	case <-ctx.Done():
		s.log.Info("shutting down")
	case runErr = <-errc:
		s.log.Error("stopping after a fatal error", "err", runErr)
	}
	cancel()
	// Stop taking new mail first, then let the gateway checkpoint (its rows
	// stay in the store in a resumable state), then the node.
	shutCtx, shutCancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer shutCancel()
	if err := s.smtp.Shutdown(shutCtx); err != nil {
		s.log.Warn("smtp shutdown", "err", err)
	}
	s.imap.Close()
	<-gwDone
	s.node.Close()
	return runErr
}

// printWelcome tells a person how to point a mail client at this server:
// the listeners as bound (a configured port 0 shows the port it got), and
// the users' addresses.
func (s *server) printWelcome(inv *invocation, addrs map[string]string) {
	cfg := s.cfg
	host := func(addr string) (string, string) {
		h, p, err := net.SplitHostPort(addr)
		if err != nil {
			return addr, ""
		}
		if h == "" || h == "0.0.0.0" || h == "::" {
			h = cfg.Hostname
		}
		return h, p
	}
	tlsNote := "self-signed unless you set tls_cert"
	if cfg.TLSCert != "" {
		tlsNote = "certificate " + cfg.TLSCert
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nbmgate %s is running on the %s network. Configure your mail client:\n", Version(), cfg.Network)
	for _, l := range []struct{ name, label, security string }{
		{"imap", "Incoming (IMAP): ", "STARTTLS (" + tlsNote + ")"},
		{"imaps", "Incoming (IMAPS):", "SSL/TLS (" + tlsNote + ")"},
		{"smtp", "Outgoing (SMTP): ", "STARTTLS"},
		{"smtps", "Outgoing (SMTPS):", "SSL/TLS"},
	} {
		if a, ok := addrs[l.name]; ok {
			h, p := host(a)
			fmt.Fprintf(&b, "  %s server %s, port %s, %s, normal password\n", l.label, h, p, l.security)
		}
	}
	if a, ok := addrs["local_submit"]; ok {
		fmt.Fprintf(&b, "  Local submission: %s, no password, sent as %s\n", a, cfg.LocalSubmitUser)
	}
	if a, ok := addrs["api"]; ok {
		h, p := host(a)
		fmt.Fprintf(&b, "  PyBitmessage XML-RPC API: http://%s/, HTTP basic auth with the user name and password\n", net.JoinHostPort(h, p))
	}
	fmt.Fprintf(&b, "  User name and password: those of `bmgate user add NAME`.\n")
	ctx := context.Background()
	users, err := s.store.ListUsers(ctx)
	switch {
	case err != nil:
		fmt.Fprintf(&b, "  Your address: BM-…@%s for each of `bmgate address list --user NAME`.\n", cfg.Domain)
	case len(users) == 0:
		fmt.Fprintf(&b, "\nNo users yet. Create one, then an address:\n  bmgate user add alice\n  bmgate address new --user alice\n")
	default:
		const maxListed = 20
		fmt.Fprintf(&b, "  Email addresses:\n")
		for i, u := range users {
			if i == maxListed {
				fmt.Fprintf(&b, "    … and %d more users (bmgate user list)\n", len(users)-maxListed)
				break
			}
			ids, err := s.store.Identities(ctx, u.ID)
			if err != nil {
				continue
			}
			var list []string
			for _, id := range ids {
				if id.Kind == mailmap.KindNormal {
					list = append(list, gateway.BMToMail(id.Address, cfg.Domain))
				}
			}
			if len(list) == 0 {
				fmt.Fprintf(&b, "    %s: none yet (bmgate address new --user %s)\n", u.Name, u.Name)
				continue
			}
			fmt.Fprintf(&b, "    %s: %s\n", u.Name, strings.Join(list, ", "))
		}
	}
	fmt.Fprintln(&b)
	io.WriteString(inv.stdout, b.String())
}

func (s *server) health(ctx context.Context) error {
	_, err := s.store.InventoryCount(ctx)
	return err
}

// status fills the admin Status from the node, the gateway and the store.
func (s *server) status(ctx context.Context) (Status, error) {
	var st Status
	var storeErr error
	if err := storeStatus(ctx, s.store, &st); err != nil {
		// The rest is still filled: /metrics exports it (bmgate_store_up 0).
		storeErr = fmt.Errorf("%w: %w", errStoreStatus, err)
	}
	st.Version = Version()
	st.Network = s.cfg.Network
	st.InstanceID = s.instanceID
	st.DatabaseID = mailmap.DatabaseID(s.store)
	st.StartedAt = s.started
	for _, p := range s.node.Peers() {
		if p.Established {
			st.Peers = append(st.Peers, PeerStatus{Addr: p.Addr, Inbound: p.Inbound, UserAgent: p.UserAgent, Since: p.ConnectedAt})
		}
	}
	ns := s.node.Stats()
	st.Objects = ObjectCounters{Received: ns.ObjectsReceived, Relayed: ns.ObjectsRelayed, Invalid: ns.ObjectsInvalid,
		ConnRenewals: ns.ConnRenewals}
	gs := s.gw.Stats()
	st.Messages = MessageCounters{Received: gs.MessagesIn, Sent: gs.MessagesOut, Acks: gs.Acks, Reports: gs.Reports, Blocked: gs.Blocked}
	st.Inbound.Processed = gs.Objects
	st.PoW = s.powStatus(gs)
	// Live trial counts of the jobs this process is solving.
	for i, j := range st.PoWJobs {
		for _, live := range gs.PoWJobs {
			if live.ID == j.ID {
				st.PoWJobs[i].Trials = live.Trials
			}
		}
	}
	estimatePoW(st.PoWJobs, gs.PoWRate, s.cfg.PoWConcurrency)
	if q, measured, err := s.gw.QueuedPoW(ctx); err == nil {
		st.QueuedPoWMeasured = measured
		for _, u := range q {
			st.QueuedPoW = append(st.QueuedPoW, QueuedPoWStatus{User: u.User, Messages: u.Rows, Estimate: u.Estimate})
		}
	}
	st.Sessions = SessionCounts{SMTP: s.smtp.Sessions(), IMAP: s.imap.Sessions()}
	s.limitsStatus(&st)
	return st, storeErr
}

// clientStatus is what the XML-RPC API's clientStatus reports.
func (s *server) clientStatus() pyapi.ClientStatus {
	var cs pyapi.ClientStatus
	for _, p := range s.node.Peers() {
		if p.Established {
			cs.NetworkConnections++
			cs.IncomingConnections = cs.IncomingConnections || p.Inbound
		}
	}
	gs := s.gw.Stats()
	cs.MessagesProcessed = gs.MessagesIn
	return cs
}

// limitsStatus fills the connection, login and password-hashing figures.
func (s *server) limitsStatus(st *Status) {
	for _, l := range s.smtp.Stats().Listeners {
		st.Listeners = append(st.Listeners, ListenerStatus{Name: l.Name, Open: l.Open, Max: l.Max,
			RefusedCap: l.RefusedCap, RefusedPerIP: l.RefusedPerIP, LoginTimeouts: l.LoginTimeouts})
	}
	is := s.imap.Stats()
	for _, l := range is.Listeners {
		st.Listeners = append(st.Listeners, ListenerStatus{Name: l.Name, Open: l.Open, Max: l.Max,
			RefusedCap: l.RefusedCap, RefusedPerIP: l.RefusedPerIP, LoginTimeouts: l.LoginTimeouts})
	}
	st.IMAPLiteralRefusals = is.LiteralRefusals
	gs := s.guard.Stats()
	st.Logins = LoginStatus{Attempts: gs.Attempts, Waited: gs.Waited, Pruned: gs.Pruned}
	hs := mailmap.PasswordHashStatus()
	st.PasswordHash = PasswordHashStatus{Slots: hs.Slots, InFlight: hs.InFlight, Peak: hs.Peak, Total: hs.Total, Waited: hs.Waited, Refused: hs.Refused}
}

// powStatus turns the gateway's trial counter into a rate over the time
// since the previous status request.
func (s *server) powStatus(gs gateway.Stats) PoWStatus {
	s.powMu.Lock()
	defer s.powMu.Unlock()
	now := time.Now()
	if !s.powLastAt.IsZero() && gs.PoWTrials >= s.powLast {
		if dt := now.Sub(s.powLastAt).Seconds(); dt > 0 {
			s.powRate = float64(gs.PoWTrials-s.powLast) / dt
		}
	}
	s.powLast, s.powLastAt = gs.PoWTrials, now
	return PoWStatus{InProgress: len(gs.PoWJobs), Trials: gs.PoWTrials, TrialsPerSecond: s.powRate, SolveRate: gs.PoWRate}
}
