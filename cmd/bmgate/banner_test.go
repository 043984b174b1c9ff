package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for the server's goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestServeBanner: the banner names the ports the listeners got (port 0
// configured), the implicit-TLS listeners when on, the local_submit socket
// (created with local_submit_mode), and the users' addresses.
func TestServeBanner(t *testing.T) {
	env := testEnv(t)
	sock := filepath.Join(t.TempDir(), "submit.sock")
	for k, v := range map[string]string{
		"BMGATE_SMTP": "127.0.0.1:0", "BMGATE_IMAP": "127.0.0.1:0", "BMGATE_SMTPS": "127.0.0.1:0", "BMGATE_IMAPS": "127.0.0.1:0",
		"BMGATE_P2P": "off", "BMGATE_BOOTSTRAP": "false", "BMGATE_MAX_OUTBOUND": "0", "BMGATE_HOSTNAME": "localhost",
		"BMGATE_LOCAL_SUBMIT": "unix:" + sock, "BMGATE_LOCAL_SUBMIT_USER": "alice", "BMGATE_LOCAL_SUBMIT_MODE": "0666",
	} {
		env[k] = v
	}
	mustRun(t, env, "pw\n", "user", "add", "alice")
	mustRun(t, env, "pw\n", "user", "add", "bob")
	addr := strings.TrimSpace(mustRun(t, env, "", "address", "new", "--user", "alice"))

	cfg, err := (&configFlags{set: configSource{}}).load(envMap(env))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	store, err := cfg.OpenStore(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := &server{cfg: cfg, log: slog.New(slog.DiscardHandler), store: store, started: time.Now()}
	if err := s.build(); err != nil {
		t.Fatal(err)
	}
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- s.run(ctx, &invocation{cli: &cli{stdin: strings.NewReader(""), stdout: out, stderr: out}})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		store.Close()
	})
	waitUntil(t, 20*time.Second, func() bool { return strings.Contains(out.String(), "    bob: ") })
	banner := out.String()
	for _, re := range []string{
		`bmgate \S+ is running on the test network`,
		`Incoming \(IMAP\):  server 127\.0\.0\.1, port [1-9][0-9]*, STARTTLS`,
		`Incoming \(IMAPS\): server 127\.0\.0\.1, port [1-9][0-9]*, SSL/TLS`,
		`Outgoing \(SMTP\):  server 127\.0\.0\.1, port [1-9][0-9]*, STARTTLS`,
		`Outgoing \(SMTPS\): server 127\.0\.0\.1, port [1-9][0-9]*, SSL/TLS`,
		`Local submission: unix:` + regexp.QuoteMeta(sock) + `, no password, sent as alice`,
		`alice: ` + regexp.QuoteMeta(addr) + `@bmaddr\.lan`,
		`bob: none yet`,
	} {
		if !regexp.MustCompile(re).MatchString(banner) {
			t.Errorf("banner lacks %s:\n%s", re, banner)
		}
	}
	if strings.Contains(banner, "port 0,") {
		t.Errorf("banner shows port 0:\n%s", banner)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o666 {
		t.Errorf("local_submit socket: %v, %v", fi.Mode(), err)
	}
}
