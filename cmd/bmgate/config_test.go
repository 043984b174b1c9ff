package main

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// envMap is a getenv over a fixed map.
func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// loadWith parses args as the serve command would and loads the configuration.
func loadWith(t *testing.T, env map[string]string, args ...string) (Config, error) {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cf := bindConfigFlags(fs, true)
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	return cf.load(envMap(env))
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestConfigPrecedence(t *testing.T) {
	file := writeFile(t, "bmgate.conf", `
# comment
smtp = 127.0.0.1:2525
imap = 127.0.0.1:2143
domain = file.example
peer = 10.0.0.1:8444
peer = 10.0.0.2:8444
message_ttl = 48h
log_level = "debug"
`)
	env := map[string]string{
		"BMGATE_CONFIG":  file,
		"BMGATE_IMAP":    "127.0.0.1:3143",
		"BMGATE_DOMAIN":  "env.example",
		"BMGATE_NETWORK": "test",
		"BMGATE_PEER":    "10.0.0.3:8444, 10.0.0.4:8444",
	}
	cfg, err := loadWith(t, env, "--domain", "flag.example", "--peer", "10.0.0.5:8444", "--peer=10.0.0.6:8444", "--no-bootstrap")
	if err != nil {
		t.Fatal(err)
	}
	check := func(key string, got, want any) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %v, want %v", key, got, want)
		}
	}
	check("smtp (file over default)", cfg.SMTP, "127.0.0.1:2525")
	check("imap (env over file)", cfg.IMAP, "127.0.0.1:3143")
	check("domain (flag over env and file)", cfg.Domain, "flag.example")
	check("peer (flags replace env and file lists)", cfg.Peers, []string{"10.0.0.5:8444", "10.0.0.6:8444"})
	check("message_ttl (file)", cfg.MessageTTL, 48*time.Hour)
	check("log_level (quoted in file)", cfg.LogLevel, "debug")
	check("network (env)", cfg.Network, "test")
	check("bootstrap (--no-bootstrap)", cfg.Bootstrap, false)
	check("max_outbound (default)", cfg.MaxOutbound, 8)
	check("p2p (network default port)", cfg.P2P, ":18444")
	check("db (default in data dir)", cfg.DB, filepath.Join("bmgate-data", "bmgate.db"))

	// --config beats BMGATE_CONFIG, and env lists replace file lists.
	other := writeFile(t, "other.conf", "peer = 10.0.0.9:8444\nsmtp = off\n")
	cfg, err = loadWith(t, env, "--config", other)
	if err != nil {
		t.Fatal(err)
	}
	check("smtp (--config file)", cfg.SMTP, Off)
	check("peer (env over file)", cfg.Peers, []string{"10.0.0.3:8444", "10.0.0.4:8444"})
}

func TestConfigDefaults(t *testing.T) {
	cfg, err := loadWith(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.P2P != ":8444" || cfg.Network != "mainnet" || !cfg.Bootstrap || cfg.PoWWorkers < 1 || cfg.Hostname == "" {
		t.Errorf("defaults not resolved: %+v", cfg)
	}
	if cfg.SecretKeyFile != filepath.Join("bmgate-data", "secret.key") {
		t.Errorf("secret_key_file = %q", cfg.SecretKeyFile)
	}
	// An explicit value is kept, not resolved away.
	cfg, err = loadWith(t, map[string]string{"BMGATE_P2P": "off", "BMGATE_DB": "postgres://u:pw@db/bmgate"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.P2P != Off || cfg.DB != "postgres://u:pw@db/bmgate" {
		t.Errorf("p2p = %q, db = %q", cfg.P2P, cfg.DB)
	}
}

func TestConfigSourceErrors(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		env        map[string]string
		args       []string
		want       string
	}{
		{name: "unknown key", file: "smtp = 127.0.0.1:25\nsmpt = x\n", want: ":2: unknown key \"smpt\""},
		{name: "no equals", file: "smtp 127.0.0.1:25\n", want: ":1: want key = value"},
		{name: "bad quote", file: `domain = "x` + "\n", want: ":1: bad quoted value"},
		{name: "bad duration in file", file: "message_ttl = 4 days\n", want: "message_ttl"},
		{name: "bad int in env", env: map[string]string{"BMGATE_MAX_INBOUND": "many"}, want: "environment: config max_inbound: want an integer"},
		{name: "bad bool flag", args: []string{"--no-bootstrap=maybe"}, want: "no-bootstrap"},
		{name: "bad duration flag", args: []string{"--ack-timeout", "soon"}, want: "ack-timeout"},
		{name: "unknown flag", args: []string{"--smpt", "x"}, want: "smpt"},
		{name: "missing file", env: map[string]string{"BMGATE_CONFIG": "/nonexistent/bmgate.conf"}, want: "open config"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := tc.env
			if tc.file != "" {
				env = map[string]string{"BMGATE_CONFIG": writeFile(t, "c.conf", tc.file)}
			}
			_, err := loadWith(t, env, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	valid := DefaultConfig()
	valid.resolve()
	if err := valid.Validate(); err != nil {
		t.Fatalf("default config invalid: %v", err)
	}
	for _, tc := range []struct {
		name   string
		change func(*Config)
		keys   []string
	}{
		{"empty data", func(c *Config) { c.Data = "" }, []string{"data"}},
		{"network", func(c *Config) { c.Network = "testnet" }, []string{"network"}},
		{"domain", func(c *Config) { c.Domain = "bad_domain" }, []string{"domain"}},
		{"domain dot", func(c *Config) { c.Domain = "a..b" }, []string{"domain"}},
		{"smtp no port", func(c *Config) { c.SMTP = "127.0.0.1" }, []string{"smtp"}},
		{"imap bad port", func(c *Config) { c.IMAP = "127.0.0.1:99999" }, []string{"imap"}},
		{"admin", func(c *Config) { c.Admin = "localhost:http" }, []string{"admin"}},
		{"tls half", func(c *Config) { c.TLSCert = "/etc/cert.pem" }, []string{"tls_cert"}},
		{"insecure auth", func(c *Config) { c.AllowInsecureAuth = "sometimes" }, []string{"allow_insecure_auth"}},
		{"local submit without user", func(c *Config) { c.LocalSubmit = "unix:/run/bmgate/submit" }, []string{"local_submit_user"}},
		{"local submit public", func(c *Config) { c.LocalSubmit = "0.0.0.0:2525"; c.LocalSubmitUser = "alice" }, []string{"local_submit"}},
		{"local submit relative socket", func(c *Config) { c.LocalSubmit = "unix:submit.sock"; c.LocalSubmitUser = "alice" }, []string{"local_submit"}},
		{"peer without host", func(c *Config) { c.Peers = []string{":8444"} }, []string{"peer"}},
		{"peer port zero", func(c *Config) { c.Peers = []string{"10.0.0.1:0"} }, []string{"peer"}},
		{"socks5", func(c *Config) { c.SOCKS5 = "tor" }, []string{"socks5"}},
		{"negative counts", func(c *Config) { c.MaxInbound, c.MaxOutbound, c.PoWWorkers = 0, -1, -1 }, []string{"max_outbound", "max_inbound", "pow_workers"}},
		{"socks5 user without proxy", func(c *Config) { c.SOCKS5User, c.SOCKS5Password = "u", "p" }, []string{"socks5_user"}},
		{"socks5 user without password", func(c *Config) { c.SOCKS5, c.SOCKS5User = "127.0.0.1:9050", "u" }, []string{"socks5_password"}},
		{"broadcast ttl", func(c *Config) { c.BroadcastTTL = 0 }, []string{"broadcast_ttl"}},
		{"ttl short", func(c *Config) { c.MessageTTL = time.Minute }, []string{"message_ttl"}},
		{"ttl long", func(c *Config) { c.MessageTTL = 29 * 24 * time.Hour; c.AckTimeout = 60 * 24 * time.Hour }, []string{"message_ttl"}},
		{"pubkey timeout", func(c *Config) { c.PubkeyTimeout = 0 }, []string{"pubkey_timeout"}},
		{"ack timeout below ttl", func(c *Config) { c.AckTimeout = time.Hour }, []string{"ack_timeout"}},
		{"log", func(c *Config) { c.LogFormat = "xml"; c.LogLevel = "loud" }, []string{"log_format", "log_level"}},
		{"secret key", func(c *Config) { c.SecretKey = "abcd" }, []string{"secret_key"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := valid
			tc.change(&cfg)
			err := cfg.Validate()
			if err == nil {
				t.Fatal("Validate accepted it")
			}
			var keys []string
			for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
				var ce *ConfigError
				if !errors.As(e, &ce) {
					t.Fatalf("not a ConfigError: %v", e)
				}
				keys = append(keys, ce.Key)
			}
			if !slices.Equal(keys, tc.keys) {
				t.Errorf("errors for %v, want %v (%v)", keys, tc.keys, err)
			}
		})
	}
	// Accepted edge cases.
	cfg := valid
	cfg.SMTP, cfg.IMAP, cfg.P2P, cfg.Admin = "[::1]:1587", ":1143", Off, ""
	cfg.LocalSubmit, cfg.LocalSubmitUser = "unix:/run/bmgate/submit", "alice"
	cfg.SecretKey = strings.Repeat("ab", 32)
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate refused valid values: %v", err)
	}
}

func TestInsecureAuth(t *testing.T) {
	cfg := DefaultConfig()
	for addr, want := range map[string]bool{
		"127.0.0.1:1587": true, "[::1]:1143": true, "localhost:1143": true, "unix:/run/x": true,
		"0.0.0.0:1587": false, ":1587": false, "192.168.1.2:1143": false, "mail.example:1143": false,
	} {
		if got := cfg.InsecureAuth(addr); got != want {
			t.Errorf("auto: InsecureAuth(%q) = %v, want %v", addr, got, want)
		}
	}
	cfg.AllowInsecureAuth = "yes"
	if !cfg.InsecureAuth("0.0.0.0:1587") {
		t.Error("yes: refused a public listener")
	}
	cfg.AllowInsecureAuth = "no"
	if cfg.InsecureAuth("127.0.0.1:1587") {
		t.Error("no: allowed loopback")
	}
}

// TestSampleUpToDate fails when deploy/bmgate.conf.sample is not what
// `bmgate config sample` prints. Regenerate it with
//
//	go run ./cmd/bmgate config sample > deploy/bmgate.conf.sample
func TestSampleUpToDate(t *testing.T) {
	var b bytes.Buffer
	if err := WriteSample(&b); err != nil {
		t.Fatal(err)
	}
	committed, err := os.ReadFile("../../deploy/bmgate.conf.sample")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(committed, b.Bytes()) {
		t.Fatal("deploy/bmgate.conf.sample is stale: run go run ./cmd/bmgate config sample > deploy/bmgate.conf.sample")
	}
}

// TestSampleRoundTrip uncomments every setting of the sample and checks that
// reading it back gives the defaults: the file format can express them all.
func TestSampleRoundTrip(t *testing.T) {
	var b bytes.Buffer
	if err := WriteSample(&b); err != nil {
		t.Fatal(err)
	}
	var uncommented strings.Builder
	settings := 0
	for line := range strings.Lines(b.String()) {
		if k, _, ok := strings.Cut(strings.TrimPrefix(line, "#"), " = "); ok && !strings.Contains(k, " ") {
			line = strings.TrimPrefix(line, "#")
			settings++
		}
		uncommented.WriteString(line)
	}
	if settings != len(configFields) {
		t.Fatalf("sample has %d settings, Config has %d keys", settings, len(configFields))
	}
	src, err := parseConfigFile(strings.NewReader(uncommented.String()), "sample")
	if err != nil {
		t.Fatal(err)
	}
	var got Config
	if err := got.apply(src, "sample"); err != nil {
		t.Fatal(err)
	}
	if want := DefaultConfig(); !reflect.DeepEqual(got, want) {
		t.Errorf("sample read back:\n%+v\nwant\n%+v", got, want)
	}
}

func TestConfigFieldsComplete(t *testing.T) {
	seenKey, seenFlag := map[string]bool{}, map[string]bool{}
	for _, f := range configFields {
		if f.key == "" || f.help == "" {
			t.Errorf("field %d lacks key or help", f.index)
		}
		if seenKey[f.key] || f.flag != "" && seenFlag[f.flag] {
			t.Errorf("duplicate key or flag %q/%q", f.key, f.flag)
		}
		seenKey[f.key], seenFlag[f.flag] = true, true
		if f.flag != "" && f.arg == "" && reflect.TypeFor[Config]().Field(f.index).Type.Kind() != reflect.Bool {
			t.Errorf("flag --%s has no value placeholder (arg tag)", f.flag)
		}
	}
}

func TestWriteEffectiveHidesSecrets(t *testing.T) {
	cfg := DefaultConfig()
	cfg.SecretKey = strings.Repeat("ab", 32)
	cfg.DB = "postgres://bmgate:hunter2@db:5432/bmgate"
	var b bytes.Buffer
	if err := cfg.WriteEffective(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if strings.Contains(out, "hunter2") || strings.Contains(out, cfg.SecretKey) {
		t.Errorf("secrets shown:\n%s", out)
	}
	if !strings.Contains(out, "db = postgres://bmgate:xxxxx@db:5432/bmgate\n") || !strings.Contains(out, "secret_key = (hidden)\n") {
		t.Errorf("unexpected output:\n%s", out)
	}
}

func TestSecretKey(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.Data = filepath.Join(dir, "data")
	cfg.resolve()
	k1, err := cfg.LoadSecretKey()
	if err != nil {
		t.Fatal(err)
	}
	if len(k1) != secretKeyLen {
		t.Fatalf("key length %d", len(k1))
	}
	fi, err := os.Stat(cfg.SecretKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("secret.key mode %v, want 0600", fi.Mode().Perm())
	}
	k2, err := cfg.LoadSecretKey()
	if err != nil || !bytes.Equal(k1, k2) {
		t.Fatalf("second load: %x, %v; want %x", k2, err, k1)
	}
	// secret_key (BMGATE_SECRET_KEY) wins over the file.
	cfg.SecretKey = strings.Repeat("0f", 32)
	k3, err := cfg.LoadSecretKey()
	if err != nil || !bytes.Equal(k3, bytes.Repeat([]byte{0x0f}, 32)) {
		t.Fatalf("secret_key: %x, %v", k3, err)
	}
	// A damaged file is an error, never silently replaced.
	cfg.SecretKey = ""
	if err := os.WriteFile(cfg.SecretKeyFile, []byte("not hex\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := cfg.LoadSecretKey(); err == nil {
		t.Fatal("damaged secret.key accepted")
	}
}
