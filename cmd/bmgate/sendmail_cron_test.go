package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/bmgate/bmgate/bmcore/address"
	"github.com/bmgate/bmgate/mailmap"
)

// The exact argument lists the two common crons run sendmail with.
var (
	debianCronArgs = []string{"-FCronDaemon", "-i", "-B8BITMIME", "-oem"} // + the MAILTO recipient
	cronieArgs     = []string{"-FCronDaemon", "-i", "-odi", "-oem", "-oi", "-t", "-f", "root"}
)

// Messages as the two crons write them (Debian cron: do_command.c;
// cronie: do_command.c, MAILFROM unset).
const (
	debianCronMsg = "From: root (Cron Daemon)\n" +
		"To: root\n" +
		"Subject: Cron <root@host> /usr/local/bin/backup\n" +
		"MIME-Version: 1.0\n" +
		"Content-Type: text/plain; charset=UTF-8\n" +
		"Content-Transfer-Encoding: 8bit\n" +
		"X-Cron-Env: <SHELL=/bin/sh>\n" +
		"X-Cron-Env: <HOME=/root>\n" +
		"X-Cron-Env: <LOGNAME=root>\n" +
		"\n" +
		"backup: 3 files copied\n"
	cronieMsg = "From: \"(Cron Daemon)\" <root>\n" +
		"To: root\n" +
		"Subject: Cron <root@host> /usr/local/bin/backup\n" +
		"MIME-Version: 1.0\n" +
		"Content-Type: text/plain; charset=UTF-8\n" +
		"Auto-Submitted: auto-generated\n" +
		"Precedence: bulk\n" +
		"X-Cron-Env: <LANG=C.UTF-8>\n" +
		"\n" +
		"backup: 3 files copied\n"
)

func TestSendmailArgs(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	bindConfigFlags(fs, false)
	for _, tc := range []struct {
		args []string
		want sendmailOpts
		err  string
	}{
		{args: append(slices.Clone(debianCronArgs), "root"), want: sendmailOpts{fullName: "CronDaemon", rcpts: []string{"root"}}},
		{args: cronieArgs, want: sendmailOpts{fullName: "CronDaemon", useHdrs: true, from: "root"}},
		{args: []string{"-ti", "-fBM-x@bmaddr.lan"}, want: sendmailOpts{useHdrs: true, from: "BM-x@bmaddr.lan"}},
		{args: []string{"-tif", "u", "a@b"}, want: sendmailOpts{useHdrs: true, from: "u", rcpts: []string{"a@b"}}},
		{args: []string{"-r", "u", "-N", "success,delay", "-R", "full", "-V", "env1", "a@b"},
			want: sendmailOpts{from: "u", notify: "success,delay", ret: "FULL", envID: "env1", rcpts: []string{"a@b"}}},
		{args: []string{"-bm", "-odb", "-oQ/tmp", "-X", "/tmp/log", "-L", "tag", "-h", "3", "-O", "A=B", "-v", "-8", "-Am", "a@b"},
			want: sendmailOpts{rcpts: []string{"a@b"}}},
		{args: []string{"a@b", "--db", "/x.db", "--network=test", "--", "-weird@b"},
			want: sendmailOpts{rcpts: []string{"a@b", "-weird@b"}, longFlags: []string{"--db", "/x.db", "--network=test"}}},
		{args: []string{"--help"}, want: sendmailOpts{help: true}},
		{args: []string{"-Z"}, err: "unknown option -Z"},
		{args: []string{"-f"}, err: "option -f needs a value"},
		{args: []string{"-bs"}, err: "only queues a message"},
		{args: []string{"-q"}, err: "only queues a message"},
		{args: []string{"-R", "some"}, err: "-R wants full or hdrs"},
		{args: []string{"--nope"}, err: "unknown option --nope"},
		{args: []string{"--db"}, err: "option --db needs a value"},
	} {
		got, err := parseSendmailArgs(tc.args, fs)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want %q", tc.args, err, tc.err)
			}
		case err != nil:
			t.Errorf("%q: %v", tc.args, err)
		case fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", tc.want):
			t.Errorf("%q:\n got %#v\nwant %#v", tc.args, got, tc.want)
		}
	}
}

// cronSetup makes a user with one address and returns the environment and
// the address.
func cronSetup(t *testing.T) (map[string]string, string, mailmap.Store, mailmap.User) {
	t.Helper()
	env := testEnv(t)
	mustRun(t, env, "pw\n", "user", "add", "alice")
	addr := strings.TrimSpace(mustRun(t, env, "", "address", "new", "--user", "alice"))
	st := openTestStore(t, env)
	u, err := st.UserByName(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	return env, addr, st, u
}

func TestSendmailFromCron(t *testing.T) {
	env, addr, st, u := cronSetup(t)
	// Not configured: a clear refusal, exit 67 (EX_NOUSER).
	code, _, errOut := runCLI(t, env, debianCronMsg, append([]string{"sendmail"}, append(debianCronArgs, "root")...)...)
	if code != exNoUser || !strings.Contains(errOut, "root is not a Bitmessage identity") || !strings.Contains(errOut, "sendmail_identity = root:BM-") {
		t.Fatalf("unmapped root: exit %d, stderr %q", code, errOut)
	}
	env["BMGATE_SENDMAIL_IDENTITY"] = "root:" + addr
	env["LOGNAME"] = "nobody-in-particular"
	for _, tc := range []struct {
		name, msg string
		args      []string
	}{
		{"debian", debianCronMsg, append(slices.Clone(debianCronArgs), "root")},
		{"cronie", cronieMsg, cronieArgs},
	} {
		code, _, errOut := runCLI(t, env, tc.msg, append([]string{"sendmail"}, tc.args...)...)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", tc.name, code, errOut)
		}
		items, err := st.UserOutbox(context.Background(), u.ID)
		if err != nil {
			t.Fatal(err)
		}
		it := items[len(items)-1]
		if it.FromAddress != addr || it.ToAddress != addr || !strings.HasPrefix(it.Subject, "Cron <root@host>") {
			t.Errorf("%s: queued from %s to %s, subject %q", tc.name, it.FromAddress, it.ToAddress, it.Subject)
		}
		orig := string(it.Original)
		if !strings.Contains(orig, "From: \"Cron Daemon\" <"+addr+"@bmaddr.lan>\r\n") {
			t.Errorf("%s: From not rewritten to the identity:\n%s", tc.name, orig)
		}
		if it.MessageID == "" || !strings.HasSuffix(it.MessageID, "@bmaddr.lan") || !strings.Contains(orig, "Message-Id: <"+it.MessageID+">") {
			t.Errorf("%s: no Message-ID (outbox %q):\n%s", tc.name, it.MessageID, orig)
		}
		if !strings.Contains("\r\n"+orig, "\r\nDate: ") {
			t.Errorf("%s: no Date:\n%s", tc.name, orig)
		}
	}
	// A script without From, run by a mapped local user.
	env["LOGNAME"] = "root"
	mustRun(t, env, "Subject: no from\n\nbody\n", "sendmail", "root")
	// Bare BM- addresses get the domain; they are never local user names.
	mustRun(t, env, "Subject: bare\n\nbody\n", "sendmail", "-f", addr, addr)
	mustRun(t, env, "From: Me <"+addr+">\nSubject: bare\n\nbody\n", "sendmail", addr)
	// A Message-ID the script wrote is kept.
	mustRun(t, env, "From: root\nMessage-ID: <mine@example.org>\n\nbody\n", "sendmail", "-ti", "root")
	items, _ := st.UserOutbox(context.Background(), u.ID)
	if got := items[len(items)-1].MessageID; got != "mine@example.org" {
		t.Errorf("Message-ID %q, want the script's", got)
	}
}

func TestSendmailExitCodes(t *testing.T) {
	env, addr, _, _ := cronSetup(t)
	stranger := address.Address{Version: 4, Stream: 1, Ripe: [20]byte{1, 2, 3}}.String()
	msg := "From: " + addr + "@bmaddr.lan\nTo: " + addr + "@bmaddr.lan\nSubject: x\n\nbody\n"
	for _, tc := range []struct {
		name string
		env  map[string]string
		msg  string
		args []string
		code int
		want string
	}{
		{"usage", nil, msg, []string{"-Z"}, exUsage, "unknown option -Z"},
		{"no recipients", nil, msg, nil, exUsage, "no recipients"},
		{"bad header", nil, "To: <broken\n\nx\n", []string{"-t"}, exDataErr, "parse To header"},
		{"encrypted", nil, "From: " + addr + "@bmaddr.lan\nMIME-Version: 1.0\nContent-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=b\n\n--b\nContent-Type: application/pgp-encrypted\n\nVersion: 1\n--b\nContent-Type: application/octet-stream\n\nxx\n--b--\n",
			[]string{addr + "@bmaddr.lan"}, exDataErr, "encrypted mail"},
		{"unknown sender", nil, msg, []string{"-f", stranger + "@bmaddr.lan", "x@y"}, exNoUser, "not an identity"},
		{"relay", nil, msg, []string{"someone@example.org"}, exNoUser, "someone@example.org"},
		{"config", map[string]string{"BMGATE_SENDMAIL_IDENTITY": "root"}, msg, []string{"-t"}, exConfig, "sendmail_identity"},
		{"bad config file line", map[string]string{"BMGATE_CONFIG": writeFile(t, "bad.conf", "domain = x\nnonsense\n")}, msg, []string{"-t"}, exConfig, "bad.conf:2"},
	} {
		e := env
		if tc.env != nil {
			e = mergeEnv(env, tc.env)
		}
		code, _, errOut := runCLI(t, e, tc.msg, append([]string{"sendmail"}, tc.args...)...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("%s: exit %d, stderr %q; want %d and %q", tc.name, code, errOut, tc.code, tc.want)
		}
	}
}

func TestSendmailDisabledAndPostgresDSN(t *testing.T) {
	env, addr, _, _ := cronSetup(t)
	msg := "From: " + addr + "@bmaddr.lan\nSubject: x\n\nbody\n"
	mustRun(t, env, "", "user", "set", "alice", "disabled", "on")
	if code, _, errOut := runCLI(t, env, msg, "sendmail", addr+"@bmaddr.lan"); code != exUnavailable || !strings.Contains(errOut, "is disabled") {
		t.Errorf("disabled account: exit %d, stderr %q", code, errOut)
	}

	// A libpq key=value DSN opens PostgreSQL (it used to become an
	// SQLite file named after it, password included).
	u, err := url.Parse(testPostgres(t))
	if err != nil {
		t.Fatal(err)
	}
	pw, _ := u.User.Password()
	kv := fmt.Sprintf("host=%s port=%s dbname=%s user=%s password='%s' sslmode=disable",
		u.Hostname(), u.Port(), strings.TrimPrefix(u.Path, "/"), u.User.Username(), pw)
	// A role the server does not know: permission, not a temporary failure.
	bad := *u
	bad.User = url.UserPassword("no_such_role_bmgate", "x")
	benv := testEnv(t)
	benv["BMGATE_DB"] = bad.String()
	benv["BMGATE_SENDMAIL_IDENTITY"] = "root:" + addr
	if code, _, errOut := runCLI(t, benv, "Subject: x\n\nx\n", "sendmail", "-f", "root", "root"); code != exNoPerm {
		t.Errorf("unknown database role: exit %d (%s), want %d", code, errOut, exNoPerm)
	}

	penv := testEnv(t)
	penv["BMGATE_DB"] = kv
	mustRun(t, penv, "pw\n", "user", "add", "bob")
	if out := mustRun(t, penv, "", "user", "list"); !strings.Contains(out, "bob") {
		t.Errorf("user list on the key=value DSN: %q", out)
	}
	if ents, _ := os.ReadDir(penv["BMGATE_DATA"]); slices.ContainsFunc(ents, func(e os.DirEntry) bool { return strings.Contains(e.Name(), "host=") }) {
		t.Errorf("a file named after the DSN was created: %v", ents)
	}
}

func mergeEnv(a, b map[string]string) map[string]string {
	m := map[string]string{}
	for k, v := range a {
		m[k] = v
	}
	for k, v := range b {
		m[k] = v
	}
	return m
}

func TestLocalName(t *testing.T) {
	cfg := Config{Domain: "bm.example.org", Hostname: "bm.example.org"}
	hosts := localHostNames(cfg)
	for addr, want := range map[string]string{
		"root": "root", "root@localhost": "root", "backup@LOCALHOST": "backup",
		"root@bm.example.org": "", "BM-2cT@bm.example.org": "", "BM-2cT": "", "a@example.com": "", "": "", "a b": "",
	} {
		if got, _ := localName(addr, hosts); got != want {
			t.Errorf("localName(%q) = %q, want %q", addr, got, want)
		}
	}
}

func TestSendmailStoreExitCodes(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code int
	}{
		{fmt.Errorf("read secret key: %w", &fs.PathError{Op: "open", Path: "/d/secret.key", Err: syscall.EACCES}), exNoPerm},
		{fmt.Errorf("open database: %w", mailmap.ErrSecretKey), exConfig},
		{fmt.Errorf("x: %w", errSecretKeyMissing), exConfig},
		{errors.New("connect postgres: connection refused"), exTempFail},
	} {
		if got := storeExitCode(tc.err); got != tc.code {
			t.Errorf("%v: exit %d, want %d", tc.err, got, tc.code)
		}
	}
}

func TestLocalSubmitSocket(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "submit.sock")

	// Mode and group as configured.
	ln, err := listenUnix(path, 0o660, fmt.Sprint(os.Getgid()))
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o660 || fi.Mode().Type() != os.ModeSocket {
		t.Errorf("socket mode %v, want 0660 socket", fi.Mode())
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Gid) != os.Getgid() {
		t.Errorf("socket group %d, want %d", st.Gid, os.Getgid())
	}
	// A live socket is not taken over.
	if _, err := listenUnix(path, 0o660, ""); err == nil || !strings.Contains(err.Error(), "another process is listening") {
		t.Errorf("second listener on a live socket: %v", err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	// A stale socket is replaced.
	ln, err = listenUnix(path, 0o666, "")
	if err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	ln.Close()

	// A file that is not a socket is refused and kept.
	file := filepath.Join(dir, "important")
	if err := os.WriteFile(file, []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = listenUnix(file, 0o660, "")
	if err == nil || !strings.Contains(err.Error(), "is not a socket") {
		t.Errorf("listen over a regular file: %v", err)
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "data" {
		t.Errorf("the regular file was touched: %q %v", b, err)
	}
	if _, err := listenUnix(filepath.Join(dir, "s2"), 0o660, "no-such-group-bmgate"); err == nil || !strings.Contains(err.Error(), "no such group") {
		t.Errorf("unknown group: %v", err)
	}
}

func TestDBValues(t *testing.T) {
	const pw = "s3cr3t-pa55"
	for _, tc := range []struct {
		db, want, err string
	}{
		{db: "host=db.internal port=5433 dbname=bmgate user=bm password=" + pw + " sslmode=require",
			want: "postgres://bm:" + pw + "@/?dbname=bmgate&host=db.internal&port=5433&sslmode=require"},
		{db: "host=/var/run/postgresql dbname='my db' password='" + pw, err: "unterminated"},
		{db: `password='a\'b c' host=h`, want: "postgres://:a%27b%20c@/?host=h"},
		{db: "dbname=x bogus=" + pw, err: "unknown connection parameter"},
		{db: "/var/lib/bmgate/bmgate.db", want: "/var/lib/bmgate/bmgate.db"},
		{db: "sqlite:/tmp/a=b.db", want: "sqlite:/tmp/a=b.db"},
		{db: "mysql://u:" + pw + "@h/db", err: `unsupported URL scheme "mysql"`},
		{db: "hots=db password=" + pw, err: "neither a postgres:// URL"},
	} {
		cfg, err := loadWith(t, map[string]string{"BMGATE_DB": tc.db})
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want %q", tc.db, err, tc.err)
			}
			if err != nil && strings.Contains(err.Error(), pw) {
				t.Errorf("%q: error repeats the password: %v", tc.db, err)
			}
		case err != nil:
			t.Errorf("%q: %v", tc.db, err)
		case cfg.DB != tc.want:
			t.Errorf("%q: db %q, want %q", tc.db, cfg.DB, tc.want)
		}
		if strings.Contains(redactURL(tc.db), pw) {
			t.Errorf("redactURL(%q) shows the password", tc.db)
		}
	}
}

func TestSQLiteFileMode(t *testing.T) {
	env := testEnv(t)
	mustRun(t, env, "pw\n", "user", "add", "alice")
	for _, name := range []string{"bmgate.db", "secret.key"} {
		fi, err := os.Stat(filepath.Join(env["BMGATE_DATA"], name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", name, fi.Mode().Perm())
		}
	}
}
