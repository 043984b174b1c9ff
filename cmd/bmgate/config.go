package main

import (
	"bufio"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
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
	DB   string `key:"db" arg:"DSN" flag:"db" scope:"all" secret:"password" help:"Database: a postgres:// URL for PostgreSQL, or a SQLite file path; empty means <data>/bmgate.db. SQLite runs in WAL mode, so the subcommands can use the file while serve runs."`

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

	LocalSubmit     string `key:"local_submit" arg:"ADDR" flag:"local-submit" help:"Trusted local SMTP submission without AUTH, for scripts and cron on this host: unix:/path/to/socket, a loopback host:port, or off. Mail is sent as local_submit_user."`
	LocalSubmitUser string `key:"local_submit_user" arg:"USER" flag:"local-submit-user" help:"User that mail arriving on local_submit is sent as (its From must still be one of the user's addresses)."`

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
	MessageTTL     time.Duration `key:"message_ttl" flag:"message-ttl" help:"Lifetime of a sent message on the network (1h…672h); unacknowledged messages are resent with a doubled TTL after it passes."`
	BroadcastTTL   time.Duration `key:"broadcast_ttl" flag:"broadcast-ttl" help:"Lifetime of broadcasts and chan posts on the network (1h…672h)."`
	PubkeyTimeout  time.Duration `key:"pubkey_timeout" flag:"pubkey-timeout" help:"How long a message waits for its recipient's public key before it bounces."`
	AckTimeout     time.Duration `key:"ack_timeout" flag:"ack-timeout" help:"How long a sent message may stay unacknowledged, resends included, before it bounces."`

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

// ConfigError says which key holds a bad value.
type ConfigError struct {
	Key    string
	Reason string
}

func (e *ConfigError) Error() string { return fmt.Sprintf("config %s: %s", e.Key, e.Reason) }

// Validate checks every value and reports all problems at once.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, &ConfigError{Key: key, Reason: fmt.Sprintf(format, args...)})
	}
	listener := func(key, addr string, unixOK bool) {
		if ListenerOff(addr) {
			return
		}
		if unixOK && strings.HasPrefix(addr, "unix:") {
			if !filepath.IsAbs(strings.TrimPrefix(addr, "unix:")) {
				bad(key, "unix socket path must be absolute: %q", addr)
			}
			return
		}
		if err := checkHostPort(addr, true); err != nil {
			bad(key, "%v", err)
		}
	}

	if c.Data == "" {
		bad("data", "must not be empty")
	}
	if c.DB != "" && IsPostgres(c.DB) {
		if _, err := url.Parse(c.DB); err != nil {
			bad("db", "not a valid URL")
		}
	}
	if c.SecretKey != "" {
		if _, err := decodeSecretKey(c.SecretKey); err != nil {
			bad("secret_key", "%v", err)
		}
	}
	if c.NetworkParams() == nil {
		bad("network", "unknown network %q (want %s or %s)", c.Network, params.Mainnet.Name, params.Testnet.Name)
	}
	if !validDomain(c.Domain) {
		bad("domain", "not a valid domain name: %q", c.Domain)
	}
	if c.Hostname != "" && !validDomain(c.Hostname) {
		bad("hostname", "not a valid host name: %q", c.Hostname)
	}
	listener("smtp", c.SMTP, false)
	listener("smtps", c.SMTPS, false)
	listener("imap", c.IMAP, false)
	listener("imaps", c.IMAPS, false)
	listener("p2p", c.P2P, false)
	listener("admin", c.Admin, false)
	listener("local_submit", c.LocalSubmit, true)
	if (c.TLSCert == "") != (c.TLSKey == "") {
		bad("tls_cert", "tls_cert and tls_key must be given together")
	}
	switch c.AllowInsecureAuth {
	case "auto", "yes", "no":
	default:
		bad("allow_insecure_auth", "want auto, yes or no, not %q", c.AllowInsecureAuth)
	}
	if !ListenerOff(c.LocalSubmit) {
		if c.LocalSubmitUser == "" {
			bad("local_submit_user", "required when local_submit is on")
		}
		if !strings.HasPrefix(c.LocalSubmit, "unix:") && !isLoopback(c.LocalSubmit) {
			bad("local_submit", "must be a unix socket or a loopback address: it accepts mail without a password")
		}
	}
	for _, p := range c.Peers {
		if err := checkHostPort(p, false); err != nil {
			bad("peer", "%v", err)
		}
	}
	if c.MaxOutbound < 0 {
		bad("max_outbound", "must not be negative")
	}
	for key, n := range map[string]int{
		"smtp_max_connections": c.SMTPMaxConnections, "imap_max_connections": c.IMAPMaxConnections,
		"password_hash_concurrency": c.PasswordHashConcurrency,
	} {
		if n < 0 {
			bad(key, "must not be negative (0 chooses)")
		}
	}
	if c.LocalSubmitMaxConnections < 1 {
		bad("local_submit_max_connections", "must be at least 1")
	}
	if c.MaxConnectionsPerIP < 1 {
		bad("max_connections_per_ip", "must be at least 1")
	}
	if c.LoginTimeout < time.Second {
		bad("login_timeout", "must be at least 1s, not %v", c.LoginTimeout)
	}
	if c.LoginDelay < 100*time.Millisecond {
		bad("login_delay", "must be at least 100ms, not %v", c.LoginDelay)
	}
	if c.LoginMaxDelay < c.LoginDelay {
		bad("login_max_delay", "must be at least login_delay (%v)", c.LoginDelay)
	}
	if c.LoginWindow < c.LoginMaxDelay {
		bad("login_window", "must be at least login_max_delay (%v)", c.LoginMaxDelay)
	}
	if c.LoginKnownFor < 0 {
		bad("login_known_for", "must not be negative")
	}
	if c.MaxInbound < 1 {
		bad("max_inbound", "must be at least 1")
	}
	if c.SOCKS5 != "" {
		if err := checkHostPort(c.SOCKS5, false); err != nil {
			bad("socks5", "%v", err)
		}
	}
	if (c.SOCKS5User != "" || c.SOCKS5Password != "") && c.SOCKS5 == "" {
		bad("socks5_user", "a SOCKS5 user or password needs socks5")
	}
	// RFC 1929: user name and password are 1…255 bytes each.
	if len(c.SOCKS5User) > 255 || len(c.SOCKS5Password) > 255 || (c.SOCKS5User == "") != (c.SOCKS5Password == "") {
		bad("socks5_password", "a SOCKS5 user and password are given together, up to 255 bytes each")
	}
	if c.PoWWorkers < 0 {
		bad("pow_workers", "must not be negative")
	}
	if c.PoWConcurrency < 1 || c.PoWConcurrency > 64 {
		bad("pow_concurrency", "must be between 1 and 64")
	}
	// docs/protocol.md §5.4: PyBitmessage clamps a message TTL to 1 h … 28 d.
	if c.MessageTTL < time.Hour || c.MessageTTL > 28*24*time.Hour {
		bad("message_ttl", "must be between 1h and 672h, not %v", c.MessageTTL)
	}
	if c.BroadcastTTL < time.Hour || c.BroadcastTTL > 28*24*time.Hour {
		bad("broadcast_ttl", "must be between 1h and 672h, not %v", c.BroadcastTTL)
	}
	if c.PubkeyTimeout <= 0 {
		bad("pubkey_timeout", "must be positive")
	}
	if c.AckTimeout < c.MessageTTL {
		bad("ack_timeout", "must be at least message_ttl (%v)", c.MessageTTL)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		bad("log_format", "want text or json, not %q", c.LogFormat)
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		bad("log_level", "%v", err)
	}
	return errors.Join(errs...)
}

// checkHostPort accepts host:port with a numeric port; an empty host (all
// interfaces) only when listening.
func checkHostPort(addr string, listen bool) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want host:port: %q", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 || (!listen && n == 0) {
		return fmt.Errorf("bad port in %q", addr)
	}
	if host == "" && !listen {
		return fmt.Errorf("missing host in %q", addr)
	}
	return nil
}

// validDomain accepts DNS names made of letters, digits and hyphens.
func validDomain(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// resolve fills the values whose default depends on other values, so every
// consumer reads concrete settings.
func (c *Config) resolve() {
	if c.DB == "" {
		c.DB = filepath.Join(c.Data, SQLiteFile)
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

// configField describes one key of Config.
type configField struct {
	key      string
	flag     string // "" when the key has no flag
	arg      string // placeholder of the flag's value
	help     string
	flagHelp string // one line for the flag's usage
	all      bool   // flag on every subcommand
	secret   string // "", "all" (hide the value) or "password" (hide a URL password)
	index    int
}

// Env returns the environment variable of the key.
func (f configField) Env() string { return "BMGATE_" + strings.ToUpper(f.key) }

var configFields = func() []configField {
	t := reflect.TypeFor[Config]()
	fields := make([]configField, 0, t.NumField())
	for i := range t.NumField() {
		sf := t.Field(i)
		f := configField{
			key:      sf.Tag.Get("key"),
			flag:     sf.Tag.Get("flag"),
			arg:      sf.Tag.Get("arg"),
			help:     sf.Tag.Get("help"),
			flagHelp: sf.Tag.Get("flaghelp"),
			all:      sf.Tag.Get("scope") == "all",
			secret:   sf.Tag.Get("secret"),
			index:    i,
		}
		if f.flag == "-" {
			f.flag = ""
		}
		if f.flagHelp == "" {
			f.flagHelp, _, _ = strings.Cut(f.help, ". ")
		}
		if f.arg == "" {
			switch {
			case sf.Type == durationType:
				f.arg = "DURATION"
			case sf.Type.Kind() == reflect.Int:
				f.arg = "N"
			}
		}
		fields = append(fields, f)
	}
	return fields
}()

func fieldByKey(key string) (configField, bool) {
	for _, f := range configFields {
		if f.key == key {
			return f, true
		}
	}
	return configField{}, false
}

func (c *Config) value(f configField) reflect.Value { return reflect.ValueOf(c).Elem().Field(f.index) }

var durationType = reflect.TypeFor[time.Duration]()

// setRaw sets a field from its values in one source. Lists take every value,
// each split on commas and blanks; other kinds take the last value.
func setRaw(v reflect.Value, raws []string) error {
	if v.Kind() == reflect.Slice {
		var list []string
		for _, raw := range raws {
			list = append(list, strings.FieldsFunc(raw, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })...)
		}
		v.Set(reflect.ValueOf(list))
		return nil
	}
	raw := raws[len(raws)-1]
	switch {
	case v.Type() == durationType:
		d, err := time.ParseDuration(raw)
		if err != nil {
			return fmt.Errorf("want a duration such as 96h or 30m, not %q", raw)
		}
		v.SetInt(int64(d))
	case v.Kind() == reflect.String:
		v.SetString(raw)
	case v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return fmt.Errorf("want true or false, not %q", raw)
		}
		v.SetBool(b)
	case v.Kind() == reflect.Int:
		n, err := strconv.Atoi(raw)
		if err != nil {
			return fmt.Errorf("want an integer, not %q", raw)
		}
		v.SetInt(int64(n))
	default:
		return fmt.Errorf("unsupported kind %v", v.Kind())
	}
	return nil
}

// formatValue is the inverse of setRaw (lists joined by commas).
func formatValue(v reflect.Value) string {
	switch {
	case v.Type() == durationType:
		return formatDuration(time.Duration(v.Int()))
	case v.Kind() == reflect.Slice:
		return strings.Join(v.Interface().([]string), ",")
	default:
		return fmt.Sprint(v.Interface())
	}
}

// formatDuration writes whole hours as "96h" rather than "96h0m0s".
func formatDuration(d time.Duration) string {
	if d != 0 && d%time.Hour == 0 {
		return fmt.Sprintf("%dh", d/time.Hour)
	}
	return d.String()
}

// configSource is the values one source (file, environment, flags) gives,
// by key, in order.
type configSource map[string][]string

func (c *Config) apply(src configSource, origin string) error {
	for _, f := range configFields {
		raws, ok := src[f.key]
		if !ok {
			continue
		}
		if err := setRaw(c.value(f), raws); err != nil {
			return fmt.Errorf("%s: %w", origin, &ConfigError{Key: f.key, Reason: err.Error()})
		}
	}
	return nil
}

// parseConfigFile reads the configuration file format: one "key = value" per
// line, blank lines and lines starting with # ignored, values optionally in
// double quotes (Go syntax), list keys repeated or comma separated.
func parseConfigFile(r io.Reader, name string) (configSource, error) {
	src := configSource{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		key, val, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("%s:%d: want key = value", name, n)
		}
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		if _, known := fieldByKey(key); !known {
			return nil, fmt.Errorf("%s:%d: unknown key %q", name, n, key)
		}
		if strings.HasPrefix(val, `"`) {
			uq, err := strconv.Unquote(val)
			if err != nil {
				return nil, fmt.Errorf("%s:%d: bad quoted value", name, n)
			}
			val = uq
		}
		src[key] = append(src[key], val)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return src, nil
}

// envSource collects the BMGATE_* variables that name a key.
func envSource(getenv func(string) string) configSource {
	src := configSource{}
	for _, f := range configFields {
		if v := getenv(f.Env()); v != "" {
			src[f.key] = []string{v}
		}
	}
	return src
}

// configFlags binds configuration flags to a subcommand's flag set and
// remembers which were given.
type configFlags struct {
	file string
	set  configSource
}

// flagValue is one configuration flag.
type flagValue struct {
	f   configField
	def string
	set configSource
}

func (v *flagValue) String() string {
	if v == nil {
		return ""
	}
	return v.def
}

func (v *flagValue) Set(s string) error {
	var scratch Config
	if strings.HasPrefix(v.f.flag, "no-") {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("want true or false")
		}
		s = strconv.FormatBool(!b)
	}
	if err := setRaw(scratch.value(v.f), []string{s}); err != nil {
		return err
	}
	v.set[v.f.key] = append(v.set[v.f.key], s)
	return nil
}

func (v *flagValue) IsBoolFlag() bool {
	return reflect.TypeFor[Config]().Field(v.f.index).Type.Kind() == reflect.Bool
}

// bindConfigFlags adds --config and the configuration flags (every one for
// serve, the "all" ones otherwise) to fs.
func bindConfigFlags(fs *flag.FlagSet, serve bool) *configFlags {
	cf := &configFlags{set: configSource{}}
	fs.StringVar(&cf.file, "config", "", "Configuration `FILE` (env BMGATE_CONFIG)")
	def := DefaultConfig()
	for _, f := range configFields {
		if f.flag == "" || !(serve || f.all) {
			continue
		}
		v := &flagValue{f: f, set: cf.set}
		if f.secret != "all" && !strings.HasPrefix(f.flag, "no-") {
			v.def = formatValue(def.value(f))
		}
		fs.Var(v, f.flag, strings.TrimSuffix(f.flagHelp, "."))
	}
	return cf
}

// load builds the effective configuration: defaults, then the file (from
// --config or BMGATE_CONFIG), then the environment, then the flags given.
// The result is resolved and validated.
func (cf *configFlags) load(getenv func(string) string) (Config, error) {
	cfg := DefaultConfig()
	file := cf.file
	if file == "" {
		file = getenv("BMGATE_CONFIG")
	}
	if file != "" {
		fh, err := os.Open(file)
		if err != nil {
			return Config{}, fmt.Errorf("open config: %w", err)
		}
		src, err := parseConfigFile(fh, file)
		fh.Close()
		if err != nil {
			return Config{}, err
		}
		if err := cfg.apply(src, file); err != nil {
			return Config{}, err
		}
	}
	if err := cfg.apply(envSource(getenv), "environment"); err != nil {
		return Config{}, err
	}
	if err := cfg.apply(cf.set, "flags"); err != nil {
		return Config{}, err
	}
	cfg.resolve()
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// WriteSample writes the sample configuration file: every key with its help
// text and its default, commented out.
func WriteSample(w io.Writer) error {
	def := DefaultConfig()
	var b strings.Builder
	b.WriteString("# bmgate configuration (generated by `bmgate config sample`; do not edit the sample by hand).\n")
	b.WriteString("#\n")
	b.WriteString("# Format: key = value, one per line; # starts a comment line; values may be\n")
	b.WriteString("# double-quoted. Precedence: built-in defaults < this file < environment\n")
	b.WriteString("# (BMGATE_<KEY>) < command-line flags. Durations are written like 96h or 30m.\n")
	b.WriteString("# Every line below is commented out and shows the built-in default.\n")
	for _, f := range configFields {
		b.WriteString("\n")
		for _, line := range wrap(f.help, 76) {
			b.WriteString("# " + line + "\n")
		}
		where := "env " + f.Env()
		if f.flag != "" {
			where += ", flag --" + f.flag
		}
		b.WriteString("# (" + where + ")\n")
		b.WriteString("#" + f.key + " = " + formatValue(def.value(f)) + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteEffective writes a configuration in the file format, secrets hidden.
func (c *Config) WriteEffective(w io.Writer) error {
	var b strings.Builder
	for _, f := range configFields {
		val := formatValue(c.value(f))
		switch {
		case f.secret == "all" && val != "":
			val = "(hidden)"
		case f.secret == "password":
			val = redactURL(val)
		}
		fmt.Fprintf(&b, "%s = %s\n", f.key, val)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// redactURL hides the password of a URL-shaped DSN.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	return u.Redacted()
}

// wrap splits text into lines of at most width runes, at spaces.
func wrap(text string, width int) []string {
	var lines []string
	var cur strings.Builder
	for _, w := range strings.Fields(text) {
		if cur.Len() > 0 && len([]rune(cur.String()))+1+len([]rune(w)) > width {
			lines = append(lines, cur.String())
			cur.Reset()
		}
		if cur.Len() > 0 {
			cur.WriteByte(' ')
		}
		cur.WriteString(w)
	}
	if cur.Len() > 0 {
		lines = append(lines, cur.String())
	}
	return lines
}

// decodeSecretKey parses the 64-hex-digit secret key.
func decodeSecretKey(s string) ([]byte, error) {
	k, err := hex.DecodeString(strings.TrimSpace(s))
	if err != nil || len(k) != secretKeyLen {
		return nil, errors.New("want 64 hex digits")
	}
	return k, nil
}
