package main

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/bmgate/bmgate/bmcore/address"
)

// libpqKeywords are the connection parameters of libpq's key=value form
// (PostgreSQL manual, 34.1.2); one of them first marks a DSN as libpq's.
var libpqKeywords = []string{
	"host", "hostaddr", "port", "dbname", "user", "password", "passfile", "require_auth",
	"channel_binding", "connect_timeout", "client_encoding", "options", "application_name",
	"fallback_application_name", "keepalives", "keepalives_idle", "keepalives_interval",
	"keepalives_count", "tcp_user_timeout", "replication", "gssencmode", "sslmode", "requiressl",
	"sslnegotiation", "sslcompression", "sslcert", "sslkey", "sslpassword", "sslcertmode",
	"sslrootcert", "sslcrl", "sslcrldir", "sslsni", "requirepeer", "ssl_min_protocol_version",
	"ssl_max_protocol_version", "krbsrvname", "gsslib", "gssdelegation", "service",
	"target_session_attrs", "load_balance_hosts", "min_read_buffer_size",
}

var keyValueStart = regexp.MustCompile(`^\s*([A-Za-z_]+)\s*=`)

// isLibpqDSN reports whether dsn is written in libpq's key=value form
// (host=db dbname=bmgate password=…).
func isLibpqDSN(dsn string) bool {
	m := keyValueStart.FindStringSubmatch(dsn)
	return m != nil && slices.Contains(libpqKeywords, strings.ToLower(m[1]))
}

// errDSN marks a db value bmgate cannot read. Its messages never quote the
// value: it may hold a password.
var errDSN = errors.New("db")

// libpqToURL turns a libpq key=value DSN into the postgres:// URL the
// store opens: the user and password as the URL's user information (so
// logs and `config show` redact the password), every other parameter as a
// query parameter, which pgx reads as libpq does.
func libpqToURL(dsn string) (string, error) {
	q := url.Values{}
	var user, password string
	var hasUser, hasPassword bool
	s := dsn
	for {
		s = strings.TrimLeft(s, " \t\r\n")
		if s == "" {
			break
		}
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			return "", fmt.Errorf("%w: a key=value DSN wants key = value pairs separated by spaces", errDSN)
		}
		key := strings.ToLower(strings.TrimSpace(s[:eq]))
		if !keyValueStart.MatchString(s[:eq+1]) {
			return "", fmt.Errorf("%w: a key=value DSN wants key = value pairs separated by spaces", errDSN)
		}
		if !slices.Contains(libpqKeywords, key) {
			return "", fmt.Errorf("%w: unknown connection parameter %q in the key=value DSN", errDSN, key)
		}
		s = strings.TrimLeft(s[eq+1:], " \t")
		var val strings.Builder
		if strings.HasPrefix(s, "'") {
			s = s[1:]
			closed := false
			for len(s) > 0 {
				c := s[0]
				s = s[1:]
				if c == '\\' && len(s) > 0 {
					val.WriteByte(s[0])
					s = s[1:]
					continue
				}
				if c == '\'' {
					closed = true
					break
				}
				val.WriteByte(c)
			}
			if !closed {
				return "", fmt.Errorf("%w: unterminated quoted value of %s in the key=value DSN", errDSN, key)
			}
		} else {
			for len(s) > 0 && !strings.ContainsRune(" \t\r\n", rune(s[0])) {
				c := s[0]
				s = s[1:]
				if c == '\\' && len(s) > 0 {
					c = s[0]
					s = s[1:]
				}
				val.WriteByte(c)
			}
		}
		switch key {
		case "user":
			user, hasUser = val.String(), true
		case "password":
			password, hasPassword = val.String(), true
		default:
			q.Set(key, val.String())
		}
	}
	u := &url.URL{Scheme: "postgres", Path: "/", RawQuery: q.Encode()}
	switch {
	case hasPassword:
		u.User = url.UserPassword(user, password)
	case hasUser:
		u.User = url.User(user)
	}
	return u.String(), nil
}

// checkDB says what is wrong with a db value, without repeating it. A
// value that is not a postgres:// URL (libpq DSNs are turned into one by
// resolve) must look like a file path, or say sqlite: or file:.
func checkDB(dsn string) error {
	switch {
	case IsPostgres(dsn):
		if _, err := url.Parse(dsn); err != nil {
			return fmt.Errorf("%w: not a valid postgres:// URL", errDSN)
		}
		return nil
	case isLibpqDSN(dsn):
		_, err := libpqToURL(dsn)
		return err
	case strings.HasPrefix(dsn, "sqlite:"), strings.HasPrefix(dsn, "file:"):
		return nil
	case strings.Contains(dsn, "://"):
		scheme, _, _ := strings.Cut(dsn, "://")
		if len(scheme) > 20 {
			scheme = scheme[:20] + "…"
		}
		return fmt.Errorf("%w: unsupported URL scheme %q: want postgres:// (or postgresql://), a libpq key=value DSN, or an SQLite file path", errDSN, scheme)
	case strings.ContainsAny(dsn, "=\n"):
		return fmt.Errorf("%w: neither a postgres:// URL, a libpq key=value DSN (host=… dbname=…) nor an SQLite file path; "+
			"for a file whose name contains '=', write sqlite:PATH", errDSN)
	}
	return nil
}

// sqlitePath is the file of an SQLite DSN (a path or sqlite:PATH); ok is
// false for PostgreSQL and for file: URIs.
func sqlitePath(dsn string) (string, bool) {
	if IsPostgres(dsn) || strings.HasPrefix(dsn, "file:") || checkDB(dsn) != nil {
		return "", false
	}
	return strings.TrimPrefix(dsn, "sqlite:"), true
}

// parseSendmailIdentities reads sendmail_identity: NAME:BM-… (the address
// may carry @domain) per entry, into local user name → BM- address.
func parseSendmailIdentities(list []string) (map[string]string, error) {
	m := make(map[string]string, len(list))
	for _, e := range list {
		name, addr, ok := strings.Cut(e, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" || strings.ContainsAny(name, "@<>()\" ") {
			return nil, &ConfigError{Key: "sendmail_identity", Reason: fmt.Sprintf("want LOCALUSER:BM-…, not %q", e)}
		}
		addr, _, _ = strings.Cut(strings.TrimSpace(addr), "@")
		a, err := address.Decode(addr)
		if err != nil {
			return nil, &ConfigError{Key: "sendmail_identity", Reason: fmt.Sprintf("%s: %v", name, err)}
		}
		if prev, dup := m[name]; dup && prev != a.String() {
			return nil, &ConfigError{Key: "sendmail_identity", Reason: fmt.Sprintf("%s is mapped twice", name)}
		}
		m[name] = a.String()
	}
	return m, nil
}

// parseFileMode reads an octal permission such as 0660.
func parseFileMode(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 8, 32)
	if err != nil || n > 0o777 {
		return 0, fmt.Errorf("want an octal permission such as 0660, not %q", s)
	}
	return uint32(n), nil
}
