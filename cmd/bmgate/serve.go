package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/bmgate/bmgate/bmcore/inventory"
	"github.com/bmgate/bmgate/bmcore/node"
	"github.com/bmgate/bmgate/bmcore/params"
	"github.com/bmgate/bmgate/gateway"
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

	s := &server{cfg: cfg, log: log, store: store, started: time.Now()}
	if err := s.build(); err != nil {
		return err
	}
	return s.run(ctx, inv)
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
		_ = os.Remove(p)
		return net.Listen("unix", p)
	}
	return net.Listen("tcp", addr)
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
	errc := make(chan error, len(services)+2)
	var bound []string
	for _, sv := range services {
		if ListenerOff(sv.addr) {
			continue
		}
		ln, err := listen(sv.addr)
		if err != nil {
			return fmt.Errorf("%s listener: %w", sv.name, err)
		}
		lns = append(lns, ln)
		bound = append(bound, fmt.Sprintf("%s=%s", sv.name, ln.Addr()))
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
	s.log.Info("bmgate running", "network", cfg.Network, "db", redactURL(cfg.DB), "listeners", strings.Join(bound, " "))
	s.printWelcome(inv)

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

// printWelcome tells a person how to point a mail client at this server.
func (s *server) printWelcome(inv *invocation) {
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
	w := inv.stdout
	fmt.Fprintf(w, "\nbmgate is running on the %s network. Configure your mail client:\n", cfg.Network)
	if !ListenerOff(cfg.IMAP) {
		h, p := host(cfg.IMAP)
		fmt.Fprintf(w, "  Incoming (IMAP):  server %s, port %s, STARTTLS (self-signed unless you set tls_cert), normal password\n", h, p)
	}
	if !ListenerOff(cfg.SMTP) {
		h, p := host(cfg.SMTP)
		fmt.Fprintf(w, "  Outgoing (SMTP):  server %s, port %s, STARTTLS, normal password\n", h, p)
	}
	fmt.Fprintf(w, "  User name and password: those of `bmgate user add NAME`.\n")
	fmt.Fprintf(w, "  Your address: BM-…@%s for each of `bmgate address list --user NAME`.\n", cfg.Domain)
	users, err := s.store.ListUsers(context.Background())
	if err == nil && len(users) == 0 {
		fmt.Fprintf(w, "\nNo users yet. Create one, then an address:\n  bmgate user add alice\n  bmgate address new --user alice\n")
	}
	fmt.Fprintln(w)
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
	st.Version = buildVersion()
	st.Network = s.cfg.Network
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
	st.Messages = MessageCounters{Received: gs.MessagesIn, Sent: gs.MessagesOut, Acks: gs.Acks, Reports: gs.Reports}
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
