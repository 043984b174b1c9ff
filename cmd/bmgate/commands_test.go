package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bmgate/bmgate/bmcore/address"
	"github.com/bmgate/bmgate/bmcore/identity"
	"github.com/bmgate/bmgate/bmcore/inventory"
	"github.com/bmgate/bmgate/bmcore/wire"
	"github.com/bmgate/bmgate/mailmap"
)

// testEnv is the environment of the in-process commands: a fresh SQLite
// data directory on the test network, no admin listener.
func testEnv(t *testing.T) map[string]string {
	return map[string]string{
		"BMGATE_DATA":    t.TempDir(),
		"BMGATE_NETWORK": "test",
		"BMGATE_ADMIN":   "off",
	}
}

// mustRun runs a command that must succeed and returns its standard output.
func mustRun(t *testing.T, env map[string]string, stdin string, args ...string) string {
	t.Helper()
	code, out, errOut := runCLI(t, env, stdin, args...)
	if code != 0 {
		t.Fatalf("bmgate %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	return out
}

// mustFail runs a command that must fail with the given exit status and a
// standard error containing want.
func mustFail(t *testing.T, env map[string]string, code int, want string, args ...string) {
	t.Helper()
	got, _, errOut := runCLI(t, env, "", args...)
	if got != code || !strings.Contains(errOut, want) {
		t.Errorf("bmgate %s: exit %d, stderr %q; want exit %d and %q", strings.Join(args, " "), got, errOut, code, want)
	}
}

// openTestStore opens the store the commands use, as serve would, while
// they keep using it (SQLite WAL: concurrent processes are fine).
func openTestStore(t *testing.T, env map[string]string) mailmap.Store {
	t.Helper()
	cfg, err := (&configFlags{set: configSource{}}).load(envMap(env))
	if err != nil {
		t.Fatal(err)
	}
	st, err := cfg.OpenStore(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestUserCommands(t *testing.T) {
	env := testEnv(t)
	ctx := context.Background()
	mustRun(t, env, "first pass\r\nignored second line\n", "user", "add", "alice")
	st := openTestStore(t, env)
	if _, err := st.Authenticate(ctx, "alice", "first pass"); err != nil {
		t.Fatalf("alice cannot log in with the stdin password: %v", err)
	}
	mustFail(t, env, 1, `user "alice" already exists`, "user", "add", "alice", "--password-file", writeFile(t, "pw", "x\n"))
	mustFail(t, env, 1, "empty password", "user", "add", "bob")
	mustFail(t, env, 2, "missing arguments", "user", "add")

	// Flags may follow the name; the file's first line is the password.
	mustRun(t, env, "", "user", "add", "bob", "--password-file", writeFile(t, "pw", "bob pass\nrest\n"))
	if _, err := st.Authenticate(ctx, "bob", "bob pass"); err != nil {
		t.Fatalf("bob: %v", err)
	}

	mustRun(t, env, "new pass\n", "user", "passwd", "alice")
	if _, err := st.Authenticate(ctx, "alice", "new pass"); err != nil {
		t.Fatalf("new password refused: %v", err)
	}
	if _, err := st.Authenticate(ctx, "alice", "first pass"); !errors.Is(err, mailmap.ErrAuthFailed) {
		t.Fatalf("old password: %v, want ErrAuthFailed", err)
	}
	mustFail(t, env, 1, `no user "carol"`, "user", "passwd", "carol")

	mustRun(t, env, "", "user", "set", "alice", "delivery-reports", "on")
	mustRun(t, env, "", "user", "set", "bob", "disabled", "on")
	u, err := st.UserByName(ctx, "alice")
	if err != nil || !u.DeliveryReports || u.Disabled {
		t.Fatalf("alice after set: %+v, %v", u, err)
	}
	if u, err := st.UserByName(ctx, "bob"); err != nil || !u.Disabled {
		t.Fatalf("bob after set: %+v, %v", u, err)
	}
	mustFail(t, env, 2, "on or off", "user", "set", "alice", "delivery-reports", "yes")
	mustFail(t, env, 2, "unknown setting", "user", "set", "alice", "colour", "on")

	list := mustRun(t, env, "", "user", "list")
	lines := strings.Split(strings.TrimSpace(list), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "alice\t0 addresses\tdelivery-reports on\tenabled\t") ||
		!strings.HasPrefix(lines[1], "bob\t0 addresses\tdelivery-reports off\tdisabled\t") {
		t.Errorf("user list:\n%s", list)
	}

	mustFail(t, env, 1, "not confirmed, nothing deleted", "user", "del", "bob")
	if code, _, errOut := runCLI(t, env, "alice\n", "user", "del", "bob"); code != 1 || !strings.Contains(errOut, "Type the user name to confirm") {
		t.Errorf("user del with the wrong name typed: exit %d, %q", code, errOut)
	}
	if _, err := st.UserByName(ctx, "bob"); err != nil {
		t.Fatalf("bob deleted without confirmation: %v", err)
	}
	mustRun(t, env, "bob\n", "user", "del", "bob")
	mustRun(t, env, "", "user", "add", "bob", "--password-file", writeFile(t, "pw2", "x\n"))
	mustRun(t, env, "", "user", "del", "--yes", "bob")
	if _, err := st.UserByName(ctx, "bob"); !errors.Is(err, mailmap.ErrNotFound) {
		t.Errorf("bob after del: %v", err)
	}
	mustFail(t, env, 1, `no user "bob"`, "user", "del", "bob")
}

func TestAddressCommands(t *testing.T) {
	env := testEnv(t)
	ctx := context.Background()
	mustRun(t, env, "pw\n", "user", "add", "alice")
	mustFail(t, env, 2, "--user is required", "address", "new")
	mustFail(t, env, 1, `no user "nobody"`, "address", "new", "--user", "nobody")

	bm := strings.TrimSpace(mustRun(t, env, "", "address", "new", "--user", "alice", "--label", "Work"))
	addr, err := address.Decode(bm)
	if err != nil || addr.Version != 4 || addr.Stream != 1 || addr.String() != bm {
		t.Fatalf("address new printed %q: %+v, %v", bm, addr, err)
	}
	second := strings.TrimSpace(mustRun(t, env, "", "address", "new", "--user", "alice"))
	if second == bm {
		t.Fatal("two address new gave the same address")
	}

	st := openTestStore(t, env)
	id, err := st.IdentityByAddress(ctx, bm)
	if err != nil {
		t.Fatal(err)
	}
	// The stored keys are the address's keys.
	rebuilt, err := identity.FromKeys(4, 1, id.SigningKey, id.EncryptionKey)
	if err != nil || rebuilt.Address != addr {
		t.Fatalf("stored keys give %v (%v), want %s", rebuilt.Address, err, bm)
	}
	if id.Kind != mailmap.KindNormal || id.Label != "Work" || !id.PublishPubkey ||
		id.NonceTrialsPerByte != 1 || id.ExtraBytes != 1 { // the test network's minimum
		t.Errorf("stored identity: %+v", id)
	}

	list := mustRun(t, env, "", "address", "list", "--user", "alice")
	if !strings.Contains(list, bm+"\t"+bm+"@bmaddr.lan\tnormal\tWork\tdifficulty 1 small 1\n") || !strings.Contains(list, second+"\t") {
		t.Errorf("address list:\n%s", list)
	}
	mustRun(t, env, "", "user", "add", "bob", "--password-file", writeFile(t, "pw", "x\n"))
	if out := mustRun(t, env, "", "address", "list", "--user", "bob"); out != "" {
		t.Errorf("bob sees addresses:\n%s", out)
	}
}

func TestChanAndSubscribe(t *testing.T) {
	env := testEnv(t)
	ctx := context.Background()
	mustRun(t, env, "pw\n", "user", "add", "alice")
	mustRun(t, env, "pw\n", "user", "add", "bob")

	// docs/protocol.md §7.6: the chan "general".
	const general = "BM-2cW67GEKkHGonXKZLCzouLLxnLym3azS8r"
	if got := strings.TrimSpace(mustRun(t, env, "", "chan", "join", "--user", "alice", "general")); got != general {
		t.Fatalf("chan join general = %s, want %s", got, general)
	}
	st := openTestStore(t, env)
	alice, err := st.UserByName(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	id, err := st.IdentityByAddress(ctx, general)
	if err != nil {
		t.Fatal(err)
	}
	// Named after its address, not its passphrase (a secret); the passphrase is kept, sealed.
	if id.UserID != alice.ID || id.Kind != mailmap.KindChan || id.Label != "chan-2cW67GEKkH" || id.PublishPubkey ||
		id.ChanPassphrase != "general" {
		t.Errorf("chan identity: %+v", id)
	}
	checkFolder(t, st, alice.ID, "Chans/chan-2cW67GEKkH")

	// Joining with an address checks it; the name must give that address.
	const bitmessage = "BM-2cWy7cvHoq3f1rYMerRJp8PT653jjSuEdY"
	mustFail(t, env, 1, "does not match", "chan", "join", "--user", "alice", "general", bitmessage)
	mustFail(t, env, 1, "checksum", "chan", "join", "--user", "alice", "general", "BM-2cW67GEKkHGonXKZLCzouLLxnLym3azS8R")
	if got := strings.TrimSpace(mustRun(t, env, "", "chan", "join", "bitmessage", bitmessage, "--user", "alice")); got != bitmessage {
		t.Fatalf("chan join bitmessage = %s", got)
	}
	mustFail(t, env, 1, "alice has already joined", "chan", "join", "--user", "alice", "general")
	// Another user of the same server may join the same chan.
	if got := strings.TrimSpace(mustRun(t, env, "", "chan", "join", "--user", "bob", "general")); got != general {
		t.Fatalf("bob's chan join general = %s, want %s", got, general)
	}
	if bobU, err := st.UserByName(ctx, "bob"); err != nil {
		t.Fatal(err)
	} else {
		checkFolder(t, st, bobU.ID, "Chans/chan-2cW67GEKkH")
	}

	mustRun(t, env, "", "subscribe", "--user", "bob", general, "--label", "General news")
	mustRun(t, env, "", "subscribe", "--user", "bob", bitmessage)
	mustFail(t, env, 1, "already follows", "subscribe", "--user", "bob", general)
	mustFail(t, env, 1, "case", "subscribe", "--user", "bob", strings.ToLower(general))
	bob, err := st.UserByName(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	subs, err := st.Subscriptions(ctx, bob.ID)
	if err != nil || len(subs) != 2 {
		t.Fatalf("subscriptions: %+v, %v", subs, err)
	}
	checkFolder(t, st, bob.ID, "Subscriptions/General news")
	checkFolder(t, st, bob.ID, "Subscriptions/"+bitmessage)
}

// checkFolder asserts that a folder and its parent exist and are subscribed.
func checkFolder(t *testing.T, st mailmap.Store, userID int64, name string) {
	t.Helper()
	for _, n := range []string{name, name[:strings.IndexByte(name, '/')]} {
		mb, err := st.Mailbox(context.Background(), userID, n)
		if err != nil {
			t.Errorf("folder %s: %v", n, err)
			continue
		}
		if !mb.Subscribed {
			t.Errorf("folder %s is not subscribed", n)
		}
	}
}

func TestStatusCommand(t *testing.T) {
	env := testEnv(t)
	out := mustRun(t, env, "", "status")
	for _, want := range []string{"server:     not running", "network:    test", "inventory:  0 objects", "outbox:     queued 0, awaiting_pubkey 0"} {
		if !strings.Contains(out, want) {
			t.Errorf("status without server lacks %q:\n%s", want, out)
		}
	}
	mustFail(t, env, 1, "admin listener is off", "healthcheck")

	// A running server's admin listener.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ownDB := mailmap.DatabaseID(openTestStore(t, env))
	if ownDB == "" {
		t.Fatal("the store has no database id")
	}
	var servedDB atomic.Value
	servedDB.Store("0123456789abcdef") // another instance's database
	a := &Admin{Status: func(context.Context) (Status, error) {
		s := sampleStatus()
		s.StartedAt = time.Now().Add(-time.Hour)
		s.InstanceID, s.DatabaseID = "other-instance", servedDB.Load().(string)
		return s, nil
	}}
	go func() { done <- a.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	env["BMGATE_ADMIN"] = ln.Addr().String()

	// Another instance on this admin port: its figures are left out.
	out = mustRun(t, env, "", "status")
	if !strings.Contains(out, "serves database 0123456789abcdef, not this one ("+ownDB+")") || !strings.Contains(out, "other-instance") ||
		strings.Contains(out, "peers:") || strings.Contains(out, "1500000") {
		t.Errorf("status blended another instance's figures:\n%s", out)
	}
	if js := mustRun(t, env, "", "status", "--json"); !strings.Contains(js, `"running": false`) {
		t.Errorf("status --json with another instance:\n%s", js)
	}

	servedDB.Store(ownDB)
	out = mustRun(t, env, "", "status")
	for _, want := range []string{
		"server:     running, version v1.2.3, up 1h0m",
		"peers:      3 (2 outbound, 1 inbound)",
		"127.0.0.1:18444", "/PyBitmessage:0.6.3.2/",
		"inventory:  0 objects", // from the database, not the server
		"pow:        1 in progress, 1500000 trials/s",
		"sessions:   1 SMTP, 4 IMAP",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	js := mustRun(t, env, "", "status", "--json")
	if !strings.Contains(js, `"running": true`) || !strings.Contains(js, `"trials_per_second": 1500000`) {
		t.Errorf("status --json:\n%s", js)
	}
	if out := mustRun(t, env, "", "healthcheck"); out != "ok\n" {
		t.Errorf("healthcheck: %q", out)
	}
}

// TestStatusSetAside: `bmgate status` lists the inbound objects the
// gateway set aside, with their hash, type, attempts and last error.
func TestStatusSetAside(t *testing.T) {
	env := testEnv(t)
	ctx := context.Background()
	st := openTestStore(t, env)
	now := time.Now()
	var objs []inventory.StoredObject
	for i := range byte(2) {
		raw := append([]byte{0, 0, 0, 0, 0, 0, 0, i}, bytes.Repeat([]byte{i + 1}, 60)...)
		o := inventory.StoredObject{Hash: wire.ComputeInvHash(raw), Type: wire.ObjectMsg + uint32(i), Version: 1, Stream: 1,
			Expires: now.Add(time.Hour), Raw: raw}
		if _, err := st.Put(ctx, o); err != nil {
			t.Fatal(err)
		}
		objs = append(objs, o)
	}
	out := mustRun(t, env, "", "status")
	if !strings.Contains(out, "set aside:  0 inbound objects") {
		t.Errorf("status without set-aside objects:\n%s", out)
	}
	// One object failed once (still retried), the other too often.
	if _, aside, err := st.ObjectFailed(ctx, objs[0].Hash, "transient", now, nil, 3); err != nil || aside {
		t.Fatalf("ObjectFailed = %v, %v", aside, err)
	}
	for i := range 3 {
		if _, _, err := st.ObjectFailed(ctx, objs[1].Hash, fmt.Sprintf("deliver: boom %d\nsecond line", i+1), now, nil, 3); err != nil {
			t.Fatal(err)
		}
	}
	out = mustRun(t, env, "", "status")
	want := fmt.Sprintf("  %s broadcast 3 attempts: deliver: boom 3 second line\n", objs[1].Hash)
	if !strings.Contains(out, "set aside:  1 inbound objects\n"+want) {
		t.Errorf("status lacks the set-aside object %q:\n%s", want, out)
	}
	if strings.Contains(out, objs[0].Hash.String()) {
		t.Errorf("status lists an object still being retried:\n%s", out)
	}
	js := mustRun(t, env, "", "status", "--json")
	var got struct {
		SetAside []SetAsideStatus `json:"set_aside"`
	}
	if err := json.Unmarshal([]byte(js), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.SetAside) != 1 || got.SetAside[0].Hash != objs[1].Hash.String() || got.SetAside[0].Type != wire.ObjectBroadcast ||
		got.SetAside[0].Attempts != 3 || got.SetAside[0].Error != "deliver: boom 3\nsecond line" {
		t.Errorf("status --json set_aside = %+v", got.SetAside)
	}

	// The operator fixed the cause: the object is tried again at once.
	mustFail(t, env, 2, "give one HASH or --all", "inbound", "retry")
	mustFail(t, env, 2, "not an inventory hash", "inbound", "retry", "abc")
	mustFail(t, env, 1, "no set-aside object", "inbound", "retry", objs[0].Hash.String())
	if out := mustRun(t, env, "", "inbound", "retry", objs[1].Hash.String()); out != "1 objects will be tried again\n" {
		t.Errorf("inbound retry: %q", out)
	}
	if aside, err := st.SetAsideObjects(ctx, 10); err != nil || len(aside) != 0 {
		t.Fatalf("set aside after retry: %+v, %v", aside, err)
	}
	pending, err := st.PendingObjects(ctx, now, 10)
	if err != nil || len(pending) != 2 {
		t.Fatalf("pending after retry = %d objects, %v; want both", len(pending), err)
	}
	if out := mustRun(t, env, "", "inbound", "retry", "--all"); out != "0 objects will be tried again\n" {
		t.Errorf("inbound retry --all with none set aside: %q", out)
	}
}

func TestAdminURL(t *testing.T) {
	for listen, want := range map[string]string{
		"127.0.0.1:8446": "http://127.0.0.1:8446/status",
		":8446":          "http://127.0.0.1:8446/status",
		"0.0.0.0:8446":   "http://127.0.0.1:8446/status",
		"[::]:8446":      "http://[::1]:8446/status",
		"[::1]:8446":     "http://[::1]:8446/status",
	} {
		if got, err := adminURL(listen, "/status"); err != nil || got != want {
			t.Errorf("adminURL(%q) = %q, %v; want %q", listen, got, err, want)
		}
	}
}

// TestBinary builds bmgate and drives it as a script would: user add with
// the password on standard input, address new, address list.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := bmgateBinary(t)
	data := filepath.Join(t.TempDir(), "data")
	run := func(stdin string, args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "BMGATE_ADMIN=off", "BMGATE_CONFIG=")
		cmd.Stdin = strings.NewReader(stdin)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("bmgate %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
		return string(out)
	}
	run("s3cret\n", "user", "add", "alice", "--data", data)
	bm := strings.TrimSpace(run("", "address", "new", "--data", data, "--user", "alice", "--label", "Home"))
	if _, err := address.Decode(bm); err != nil {
		t.Fatalf("address new printed %q: %v", bm, err)
	}
	list := run("", "address", "list", "--user", "alice", "--data", data, "--domain", "example.org")
	if list != bm+"\t"+bm+"@example.org\tnormal\tHome\tdifficulty 1 small 1\n" {
		t.Errorf("address list:\n%q", list)
	}
	fi, err := os.Stat(filepath.Join(data, "secret.key"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("secret.key: %v, %v", fi, err)
	}
	// The exit status says what went wrong.
	cmd := exec.Command(bin, "address", "new", "--data", data)
	cmd.Env = append(os.Environ(), "BMGATE_ADMIN=off")
	if err := cmd.Run(); err == nil || cmd.ProcessState.ExitCode() != 2 {
		t.Errorf("address new without --user: %v, want exit status 2", err)
	}
}

// TestStatusInbound: `bmgate status` shows the inbound backlog, the
// deployment's recent rate and the expected time to catch up, from the
// database, with or without a running server.
func TestStatusInbound(t *testing.T) {
	env := testEnv(t)
	ctx := context.Background()
	st := openTestStore(t, env)
	now := time.Now()
	out := mustRun(t, env, "", "status")
	if want := "inbound:    0 pending (0 being processed), 0.0 objects/s over the last 5m0s, caught up"; !strings.Contains(out, want) {
		t.Errorf("status lacks %q:\n%s", want, out)
	}
	var objs []inventory.StoredObject
	for i := range byte(3) {
		raw := append([]byte{0, 0, 0, 0, 0, 0, 0, i}, bytes.Repeat([]byte{i + 1}, 60)...)
		o := inventory.StoredObject{Hash: wire.ComputeInvHash(raw), Type: wire.ObjectMsg, Version: 1, Stream: 1,
			Expires: now.Add(time.Hour), Raw: raw}
		if _, err := st.Put(ctx, o); err != nil {
			t.Fatal(err)
		}
		objs = append(objs, o)
	}
	out = mustRun(t, env, "", "status")
	if want := "inbound:    3 pending (0 being processed), 0.0 objects/s over the last 5m0s, time to catch up unknown"; !strings.Contains(out, want) {
		t.Errorf("status lacks %q:\n%s", want, out)
	}
	if err := st.MarkProcessed(ctx, objs[0].Hash, "", now); err != nil {
		t.Fatal(err)
	}
	// One object in five minutes: the two left take ten.
	out = mustRun(t, env, "", "status")
	if want := "inbound:    2 pending (0 being processed), 0.0 objects/s over the last 5m0s, caught up in ~10m0s"; !strings.Contains(out, want) {
		t.Errorf("status lacks %q:\n%s", want, out)
	}
	js := mustRun(t, env, "", "status", "--json")
	if !strings.Contains(js, `"pending": 2`) || !strings.Contains(js, `"catch_up_s": 600`) {
		t.Errorf("status --json lacks the inbound backlog:\n%s", js)
	}
}

// TestQuotaAndAliases: quotas are set and shown by the user commands;
// aliases are added, listed, resolved for their user only, and removed.
func TestQuotaAndAliases(t *testing.T) {
	env := testEnv(t)
	mustRun(t, env, "pw\npw\n", "user", "add", "alice")
	mustRun(t, env, "pw\npw\n", "user", "add", "bob")
	if out := mustRun(t, env, "", "user", "list"); !strings.Contains(out, "quota none, 0B used") {
		t.Errorf("user list before a quota:\n%s", out)
	}
	mustRun(t, env, "", "user", "set", "alice", "quota", "100M")
	if out := mustRun(t, env, "", "user", "list"); !strings.Contains(out, "alice\t0 addresses\tdelivery-reports off\tenabled\tquota 100M, 0B used") {
		t.Errorf("user list after quota 100M:\n%s", out)
	}
	st := openTestStore(t, env)
	u, err := st.UserByName(context.Background(), "alice")
	if err != nil || u.QuotaBytes != 100<<20 {
		t.Fatalf("alice's quota = %d, %v", u.QuotaBytes, err)
	}
	mustFail(t, env, 2, "not a size", "user", "set", "alice", "quota", "lots")
	mustRun(t, env, "", "user", "set", "alice", "quota", "none")
	if u, _ := st.UserByName(context.Background(), "alice"); u.QuotaBytes != 0 {
		t.Fatalf("quota after none = %d", u.QuotaBytes)
	}
	for in, want := range map[string]int64{"512": 512, "512K": 512 << 10, "2g": 2 << 30, "1.5G": -1, "1TB": 1 << 40, "-1": -1} {
		got, err := parseSize(in)
		if want < 0 && err == nil || want >= 0 && (err != nil || got != want) {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}

	const bobAddr = "BM-2cTux3PGRqHTEH6wyUP2sWeT4LrsGgy63z"
	mustRun(t, env, "", "alias", "add", "--user", "alice", "Bob", bobAddr)
	mustFail(t, env, 1, "already has the alias", "alias", "add", "--user", "alice", "bob@bmaddr.lan", bobAddr)
	mustFail(t, env, 2, "not at elsewhere.example", "alias", "add", "--user", "alice", "bob@elsewhere.example", bobAddr)
	mustFail(t, env, 1, "checksum", "alias", "add", "--user", "alice", "carol", "BM-2cTux3PGRqHTEH6wyUP2sWeT4LrsGgy63Z")
	if out := mustRun(t, env, "", "alias", "list", "--user", "alice"); out != "bob@bmaddr.lan\t"+bobAddr+"\n" {
		t.Errorf("alias list = %q", out)
	}
	if out := mustRun(t, env, "", "alias", "list", "--user", "bob"); out != "" {
		t.Errorf("bob sees aliases: %q", out)
	}
	if addr, err := st.ResolveAlias(context.Background(), u.ID, "bob@bmaddr.lan"); err != nil || addr != bobAddr {
		t.Errorf("ResolveAlias = %q, %v", addr, err)
	}
	mustRun(t, env, "", "alias", "del", "--user", "alice", "bob")
	mustFail(t, env, 1, "has no alias", "alias", "del", "--user", "alice", "bob")
}
