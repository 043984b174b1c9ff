package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/bmgate/bmgate/mailmap"
	"github.com/bmgate/bmgate/mailmap/loginguard"
)

// TestLoginGuardCommands: what a running server's guard counted is listed
// by `login-guard list` and lifted by `login-guard clear`.
func TestLoginGuardCommands(t *testing.T) {
	env := testEnv(t)
	ctx := context.Background()
	mustRun(t, env, "secret\n", "user", "add", "alice")
	st := openTestStore(t, env)
	g := loginguard.New(loginguard.Config{Store: st, BaseDelay: time.Hour, MaxWait: time.Millisecond})
	login := func(ip, name, pw string) error {
		_, err := g.Login(ctx, "smtp", ip, name, func(ctx context.Context) (mailmap.User, error) { return st.Authenticate(ctx, name, pw) })
		return err
	}
	if err := login("2001:db8:7:7::1", "alice", "secret"); err != nil {
		t.Fatal(err)
	}
	if err := login("192.0.2.1", "Alice", "guess"); !errors.Is(err, mailmap.ErrAuthFailed) {
		t.Fatal(err)
	}
	if err := login("192.0.2.2", "alice", "secret"); !errors.Is(err, loginguard.ErrLocked) {
		t.Fatalf("alice from a new address while locked: %v", err)
	}

	list := mustRun(t, env, "", "login-guard", "list")
	for _, want := range []string{"ip\t192.0.2.1\t1 failures\tlast ", "user\talice\t1 failures\tlast ", "locked until "} {
		if !strings.Contains(list, want) {
			t.Errorf("list lacks %q:\n%s", want, list)
		}
	}
	if strings.Contains(list, "known") {
		t.Errorf("list shows known addresses without --known:\n%s", list)
	}
	if known := mustRun(t, env, "", "login-guard", "list", "--known"); !strings.Contains(known, "known\talice from 2001:db8:7:7::/64\t0 failures") {
		t.Errorf("list --known:\n%s", known)
	}

	mustFail(t, env, 2, "give --ip, --user or both, or --all", "login-guard", "clear")
	mustFail(t, env, 2, "give --ip, --user or both, or --all", "login-guard", "clear", "--all", "--user", "alice")
	if out := mustRun(t, env, "", "login-guard", "clear", "--user", "ALICE"); !strings.HasPrefix(out, "cleared 1 entries") {
		t.Errorf("clear --user: %q", out)
	}
	if err := login("192.0.2.2", "alice", "secret"); err != nil {
		t.Fatalf("alice after clear --user: %v", err)
	}
	if list := mustRun(t, env, "", "login-guard", "list"); strings.Contains(list, "user\talice") || !strings.Contains(list, "ip\t192.0.2.1") {
		t.Errorf("list after clear --user:\n%s", list)
	}
	mustRun(t, env, "", "login-guard", "clear", "--ip", "192.0.2.1")
	if list := mustRun(t, env, "", "login-guard", "list"); list != "" {
		t.Errorf("list after clearing everything:\n%s", list)
	}
}
