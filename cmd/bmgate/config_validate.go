package main

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/bmgate/bmgate/bmcore/params"
)

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
	if err := checkDB(c.DB); err != nil {
		bad("db", "%s", strings.TrimPrefix(err.Error(), "db: "))
	}
	if _, err := parseSendmailIdentities(c.SendmailIdentity); err != nil {
		var ce *ConfigError
		if errors.As(err, &ce) {
			errs = append(errs, ce)
		}
	}
	if _, err := parseFileMode(c.LocalSubmitMode); err != nil {
		bad("local_submit_mode", "%v", err)
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
	listener("api", c.API, false)
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
	if !ListenerOff(c.Autoconfig) {
		if _, _, err := endpoints(*c); err != nil {
			bad("autoconfig", "%v", err)
		}
	}
	if c.InboundWorkers < 0 || c.InboundWorkers > 1024 {
		bad("inbound_workers", "must be between 0 (one per CPU) and 1024")
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
	if c.MaxQueuedPoW < 0 {
		bad("max_queued_pow_per_user", "must not be negative (0 means no limit)")
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
