package main

import (
	"encoding/hex"
	"errors"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/bmgate/bmgate/bmcore/params"
	"github.com/bmgate/bmgate/mailmap/loginguard"
)

// Config is the whole configuration of bmgate. Every field is one key of the
// configuration file, one environment variable (BMGATE_ and the key in upper
// case) and, where the field says so, one command-line flag. The precedence
// is defaults < file < environment < flags. The sample configuration
// (deploy/bmgate.conf.sample, `bmgate config sample`) is generated from these
// tags, so the help text here is the documentation.
//
// Tags: key is the file key; flag is the flag name ("-" for none; a name
// starting with "no-" inverts a bool) with arg naming its value and flaghelp
// replacing the help's first sentence; scope "all" offers the flag on every
// subcommand, otherwise only on serve; secret hides the value in `config show`.
type Config struct {
	Data string `key:"data" arg:"DIR" flag:"data" scope:"all" help:"Directory for the SQLite database, the self-signed TLS certificate and the secret key."`
	DB   string `key:"db" arg:"DSN" flag:"db" scope:"all" secret:"password" help:"Database: a postgres:// URL or a libpq key=value DSN (host=… dbname=…) for PostgreSQL, or an SQLite file path (sqlite:PATH when the name contains '='); empty means <data>/bmgate.db. SQLite runs in WAL mode, so the subcommands can use the file while serve runs."`

	SecretKey     string `key:"secret_key" flag:"-" secret:"all" help:"Key that encrypts the Bitmessage private keys at rest: 64 hex digits. Better given as BMGATE_SECRET_KEY than written here. Empty: read from secret_key_file. LOSING IT LOSES EVERY IDENTITY in the database; back it up with the database."`
	SecretKeyFile string `key:"secret_key_file" arg:"FILE" flag:"secret-key-file" scope:"all" help:"File holding the secret key (64 hex digits); empty means <data>/secret.key. The file is created (mode 0600) with a random key on first use."`

	Network  string `key:"network" arg:"mainnet|test" flag:"network" scope:"all" help:"Bitmessage network: mainnet, or test (a private network with trivial proof of work, for experiments)."`
	Domain   string `key:"domain" arg:"NAME" flag:"domain" scope:"all" help:"Mail domain of Bitmessage addresses: BM-…@<domain>. The default is the one PyBitmessage's SMTP bridge uses, so address books carry over."`
	Hostname string `key:"hostname" arg:"NAME" flag:"hostname" help:"Host name the SMTP server announces and the self-signed certificate names; empty means the system host name."`

	SMTP              string `key:"smtp" arg:"ADDR" flag:"smtp" help:"SMTP submission listener (STARTTLS), host:port, or off."`
	SMTPS             string `key:"smtps" arg:"ADDR" flag:"smtps" help:"SMTP submission listener with implicit TLS (port 465 style), host:port, or off."`
	IMAP              string `key:"imap" arg:"ADDR" flag:"imap" help:"IMAP listener (STARTTLS), host:port, or off."`
	IMAPS             string `key:"imaps" arg:"ADDR" flag:"imaps" help:"IMAP listener with implicit TLS (port 993 style), host:port, or off."`
	TLSCert           string `key:"tls_cert" arg:"FILE" flag:"tls-cert" help:"PEM certificate chain for SMTP and IMAP TLS; empty means a self-signed certificate kept in <data>. The file is re-read when it changes, so renewals need no restart."`
	TLSKey            string `key:"tls_key" arg:"FILE" flag:"tls-key" help:"PEM private key belonging to tls_cert."`
	AllowInsecureAuth string `key:"allow_insecure_auth" arg:"auto|yes|no" flag:"allow-insecure-auth" help:"Password logins without TLS: auto (allowed only on listeners bound to a loopback address, where nothing crosses a network), yes, or no."`

	SMTPMaxConnections        int           `key:"smtp_max_connections" flag:"smtp-max-connections" help:"Open connections each SMTP listener (smtp, smtps) accepts at most; more are answered 421 and closed at once. 0 sizes it from the process's open-file limit (RLIMIT_NOFILE), leaving room for the database, the peer-to-peer node and the other listeners; serve logs the sizes it chose."`
	IMAPMaxConnections        int           `key:"imap_max_connections" flag:"imap-max-connections" help:"Open connections each IMAP listener (imap, imaps) accepts at most; more get BYE (or, on imaps, are closed) at once. 0 sizes it from the open-file limit, like smtp_max_connections."`
	LocalSubmitMaxConnections int           `key:"local_submit_max_connections" flag:"local-submit-max-connections" help:"Open connections the local_submit listener accepts at most."`
	MaxConnectionsPerIP       int           `key:"max_connections_per_ip" flag:"max-connections-per-ip" help:"Open SMTP connections, and open IMAP connections, one client address may hold at most."`
	LoginTimeout              time.Duration `key:"login_timeout" flag:"login-timeout" help:"How long an SMTP or IMAP connection may stay without logging in, from its connect, however busy; then it is closed. Logged-in sessions have the protocols' usual idle limits."`
	LoginDelay                time.Duration `key:"login_delay" flag:"login-delay" help:"After a failed login, how long no login is admitted from that client address, nor for that account (from any address), nor for the account from an address it logged in from before; every further failure within login_window doubles it, up to login_max_delay. So an account gets at most one guess per login_delay, whatever the number of addresses. Counts are kept in the database: see bmgate login-guard."`
	LoginMaxDelay             time.Duration `key:"login_max_delay" flag:"login-max-delay" help:"The longest lock after failed logins."`
	LoginWindow               time.Duration `key:"login_window" flag:"login-window" help:"Failed logins are forgotten once the last one is this old (at least login_max_delay)."`
	LoginKnownFor             time.Duration `key:"login_known_for" flag:"login-known-for" help:"An address an account logged in from stays known to it this long: its logins skip the account's and the address's locks (someone guessing a password does not lock the owner out) and count their failures separately. 0 turns this off."`
	PasswordHashConcurrency   int           `key:"password_hash_concurrency" flag:"password-hash-concurrency" help:"Password checks (argon2id, 19 MiB each) running at once; more wait up to 3 s, then get a temporary failure. 0 means the number of CPUs, at most 4. This bounds the memory logins can take."`

	LocalSubmit      string `key:"local_submit" arg:"ADDR" flag:"local-submit" help:"Trusted local SMTP submission without AUTH, for scripts and cron on this host: unix:/path/to/socket, a loopback host:port, or off. Mail is sent as local_submit_user."`
	LocalSubmitUser  string `key:"local_submit_user" arg:"USER" flag:"local-submit-user" help:"User that mail arriving on local_submit is sent as (its From must still be one of the user's addresses)."`
	LocalSubmitMode  string `key:"local_submit_mode" arg:"MODE" flag:"local-submit-mode" help:"Permissions of the local_submit unix socket, in octal. Connecting needs write permission: 0660 lets the server's group (or local_submit_group) in, 0666 every local account."`
	LocalSubmitGroup string `key:"local_submit_group" arg:"GROUP" flag:"local-submit-group" help:"Group (name or number) the local_submit unix socket is given to, so that the accounts in it can submit; empty keeps the server's group. The server must be a member of it (or root)."`

	SendmailIdentity []string `key:"sendmail_identity" arg:"USER:BM-ADDR" flag:"-" help:"Default identity of a local user for bmgate sendmail: root:BM-… sends what root (cron's From: root) writes from that address, and mail addressed to root goes to it. Repeat the key or separate with commas."`

	P2P            string   `key:"p2p" arg:"ADDR" flag:"p2p" help:"Bitmessage peer-to-peer listener: host:port, off (outbound connections only), or empty for all interfaces on the network's port (8444 on mainnet, 18444 on test)."`
	Peers          []string `key:"peer" arg:"HOST:PORT" flag:"peer" help:"Peer (host:port) to connect to besides the known nodes; repeat the key or the flag, or separate with commas."`
	Bootstrap      bool     `key:"bootstrap" flag:"no-bootstrap" flaghelp:"Do not use seed nodes and bootstrap servers (a closed test network)." help:"Use the network's seed nodes and bootstrap servers when no known node answers. Set to false (flag --no-bootstrap) for a closed test network."`
	MaxOutbound    int      `key:"max_outbound" flag:"max-outbound" help:"Outbound connections to known nodes to keep; 0 dials only the peers given with peer."`
	MaxInbound     int      `key:"max_inbound" flag:"max-inbound" help:"Inbound peer connections to accept at most (set p2p to off to accept none)."`
	SOCKS5         string   `key:"socks5" arg:"HOST:PORT" flag:"socks5" help:"SOCKS5 proxy (host:port; Tor listens on 127.0.0.1:9050) for every outbound peer connection; empty means connect directly. Host names are resolved by the proxy."`
	SOCKS5User     string   `key:"socks5_user" arg:"USER" flag:"socks5-user" help:"User name for the SOCKS5 proxy (RFC 1929); empty means no authentication."`
	SOCKS5Password string   `key:"socks5_password" flag:"-" secret:"all" help:"Password for the SOCKS5 proxy; better given as BMGATE_SOCKS5_PASSWORD."`

	PoWWorkers     int           `key:"pow_workers" flag:"pow-workers" help:"Goroutines that do proof of work; 0 means one per CPU."`
	PoWConcurrency int           `key:"pow_concurrency" flag:"pow-concurrency" help:"Proofs of work this instance solves at once, each on pow_workers goroutines. Jobs wait in a durable queue shared by every instance; users take turns."`
	InboundWorkers int           `key:"inbound_workers" flag:"inbound-workers" help:"Goroutines that trial-decrypt incoming messages against every local address; 0 means one per CPU. Every instance on one database claims inbound work of its own."`
	MessageTTL     time.Duration `key:"message_ttl" flag:"message-ttl" help:"Lifetime of a sent message on the network (1h…672h); unacknowledged messages are resent with a doubled TTL after it passes."`
	BroadcastTTL   time.Duration `key:"broadcast_ttl" flag:"broadcast-ttl" help:"Lifetime of broadcasts and chan posts on the network (1h…672h)."`
	PubkeyTimeout  time.Duration `key:"pubkey_timeout" flag:"pubkey-timeout" help:"How long a message waits for its recipient's public key before it bounces."`
	AckTimeout     time.Duration `key:"ack_timeout" flag:"ack-timeout" help:"How long a sent message may stay unacknowledged, resends included, before it bounces."`
	MaxQueuedPoW   time.Duration `key:"max_queued_pow_per_user" flag:"max-queued-pow-per-user" help:"Most proof-of-work time one user's unsent mail may need, as estimated on this machine (bmgate status shows the estimates); a submission past it is refused with 452 and the reason, to be sent again later. Attachments make proof of work longer. 0 means no limit."`

	Autoconfig string `key:"autoconfig" arg:"ADDR" flag:"autoconfig" help:"HTTP listener for mail client autoconfiguration (Thunderbird's /mail/config-v1.1.xml and /.well-known/autoconfig/mail/config-v1.1.xml, Outlook's /autodiscover/autodiscover.xml), host:port, or off. It describes the IMAP and SMTP listeners at hostname; expose it as autoconfig.<domain> on port 80 (README)."`

	API string `key:"api" arg:"ADDR" flag:"api" help:"PyBitmessage-compatible XML-RPC API (the methods of PyBitmessage 0.6.3's api.py), host:port, or off. Each request logs in as a bmgate user with HTTP basic auth (user name or own address and password) and sees only that user's addresses and mail. Plain HTTP: keep it on loopback, or behind a TLS proxy, since passwords travel in every request (README, PyBitmessage API)."`

	Admin     string `key:"admin" arg:"ADDR" flag:"admin" scope:"all" help:"Admin HTTP listener (/healthz, /metrics in Prometheus format, /status used by bmgate status), host:port, or off. Keep it on loopback: it has no authentication."`
	LogFormat string `key:"log_format" arg:"text|json" flag:"log-format" scope:"all" help:"Log format: text or json."`
	LogLevel  string `key:"log_level" arg:"LEVEL" flag:"log-level" scope:"all" help:"Log level: debug, info, warn or error."`
}

// Off is the value that disables a listener.
const Off = "off"

// DefaultConfig returns the configuration bmgate runs with when nothing is
// configured: a single-user node on a laptop, every mail listener on loopback.
func DefaultConfig() Config {
	return Config{
		Data:                      "./bmgate-data",
		Network:                   params.Mainnet.Name,
		Domain:                    "bmaddr.lan",
		SMTP:                      "127.0.0.1:1587",
		SMTPS:                     Off,
		IMAP:                      "127.0.0.1:1143",
		IMAPS:                     Off,
		AllowInsecureAuth:         "auto",
		LocalSubmit:               Off,
		LocalSubmitMode:           "0660",
		LocalSubmitMaxConnections: 100,
		MaxConnectionsPerIP:       20,
		LoginTimeout:              60 * time.Second,
		LoginDelay:                loginguard.DefaultBaseDelay,
		LoginMaxDelay:             loginguard.DefaultMaxDelay,
		LoginWindow:               loginguard.DefaultWindow,
		LoginKnownFor:             loginguard.DefaultKnownFor,
		Bootstrap:                 true,
		MaxOutbound:               8,
		MaxInbound:                200,
		MessageTTL:                96 * time.Hour, // docs/protocol.md §5.4: PyB's API default of 4 days
		PoWConcurrency:            1,
		BroadcastTTL:              96 * time.Hour,
		PubkeyTimeout:             7 * 24 * time.Hour,
		AckTimeout:                28 * 24 * time.Hour, // the longest TTL a resend reaches (docs/protocol.md §5.4)
		Admin:                     "127.0.0.1:8446",
		Autoconfig:                Off,
		API:                       Off,
		LogFormat:                 "text",
		LogLevel:                  "info",
	}
}

// SQLiteFile is the database file used when no DSN is configured.
const SQLiteFile = "bmgate.db"

// IsPostgres reports whether a DSN names a PostgreSQL database.
func IsPostgres(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// ListenerOff reports whether a listener address disables the listener.
func ListenerOff(addr string) bool { return addr == "" || addr == Off }

// InsecureAuth reports whether password logins without TLS are allowed on a
// listener bound to addr (see allow_insecure_auth).
func (c *Config) InsecureAuth(addr string) bool {
	switch c.AllowInsecureAuth {
	case "yes":
		return true
	case "no":
		return false
	}
	return isLoopback(addr)
}

// NetworkParams returns the profile of the configured network.
func (c *Config) NetworkParams() *params.Network { return params.ByName(c.Network) }

// isLoopback reports whether a listen address (host:port or unix:/path) can
// only be reached from this host.
func isLoopback(addr string) bool {
	if strings.HasPrefix(addr, "unix:") {
		return true
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// consumer reads concrete settings.
func (c *Config) resolve() {
	if c.DB == "" {
		c.DB = filepath.Join(c.Data, SQLiteFile)
	}
	if isLibpqDSN(c.DB) {
		if u, err := libpqToURL(c.DB); err == nil {
			c.DB = u // else Validate says what is wrong
		}
	}
	if c.SecretKeyFile == "" {
		c.SecretKeyFile = filepath.Join(c.Data, "secret.key")
	}
	if c.P2P == "" {
		if n := c.NetworkParams(); n != nil {
			c.P2P = net.JoinHostPort("", strconv.Itoa(n.DefaultPort))
		}
	}
	if c.Hostname == "" {
		if h, err := os.Hostname(); err == nil && validDomain(h) {
			c.Hostname = h
		} else {
			c.Hostname = "localhost"
		}
	}
	if c.PoWWorkers == 0 {
		c.PoWWorkers = runtime.NumCPU()
	}
}

// decodeSecretKey parses the 64-hex-digit secret key.
func decodeSecretKey(s string) ([]byte, error) {
	k, err := hex.DecodeString(strings.TrimSpace(s))
	if err != nil || len(k) != secretKeyLen {
		return nil, errors.New("want 64 hex digits")
	}
	return k, nil
}
