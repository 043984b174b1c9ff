package main

import (
	"context"
	"maps"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bmgate/bmgate/bmcore/address"
)

// TestNetworkRecorded: a database made on the test network is refused on
// mainnet (and the other way round), on both backends, with a message that
// says what to do; sendmail exits 78 (configuration) for it.
func TestNetworkRecorded(t *testing.T) {
	for name, mk := range backendEnvs(t) {
		t.Run(name, func(t *testing.T) {
			env := mk(t)
			mustRun(t, env, "pw\n", "user", "add", "alice")
			main := maps.Clone(env)
			main["BMGATE_NETWORK"] = "mainnet"
			mustFail(t, main, 1, "made for the test network, not mainnet; use --network test", "user", "list")
			main["BMGATE_SENDMAIL_IDENTITY"] = "root:" + address.Address{Version: 4, Stream: 1, Ripe: [20]byte{1}}.String()
			code, _, errOut := runCLI(t, main, "Subject: x\n\nx\n", "sendmail", "-f", "root", "root")
			if code != exConfig || !strings.Contains(errOut, "made for the test network") {
				t.Errorf("sendmail on the wrong network: exit %d, %q", code, errOut)
			}
			// The right network still opens it.
			if out := mustRun(t, env, "", "user", "list"); !strings.Contains(out, "alice") {
				t.Errorf("user list: %q", out)
			}
		})
	}
}

// TestUnknownEnvWarned: a BMGATE_* variable that names no setting (a typo)
// is warned about, not silently ignored; known ones and the test suite's
// are not.
func TestUnknownEnvWarned(t *testing.T) {
	env := testEnv(t)
	env["BMGATE_SMTP_PORT"] = "2525"
	var environ []string
	for k, v := range env {
		environ = append(environ, k+"="+v)
	}
	environ = append(environ, "BMGATE_TEST_PG=x", "BMGATE_CONFIG=", "PATH=/bin")
	var out, errOut strings.Builder
	c := &cli{stdin: strings.NewReader(""), stdout: &out, stderr: &errOut, getenv: envMap(env), environ: func() []string { return environ }}
	if code := run(context.Background(), c, []string{"config", "show"}); code != 0 {
		t.Fatalf("config show: exit %d: %s", code, errOut.String())
	}
	want := "bmgate: warning: BMGATE_SMTP_PORT is not a bmgate setting and is ignored (bmgate config sample lists them)\n"
	if errOut.String() != want {
		t.Errorf("stderr %q, want %q", errOut.String(), want)
	}
}

// TestConfigErrorsNameFileAndLine: a bad value in the configuration file
// is reported with the file and line; one set from the environment is not
// blamed on the file.
func TestConfigErrorsNameFileAndLine(t *testing.T) {
	file := writeFile(t, "bmgate.conf", "# comment\ndomain = example.org\n\nlogin_delay = soon\n")
	_, err := loadWith(t, map[string]string{"BMGATE_CONFIG": file})
	if err == nil || !strings.Contains(err.Error(), file+":4: config login_delay: want a duration") {
		t.Errorf("bad duration: %v", err)
	}
	file = writeFile(t, "bmgate.conf", "domain = example.org\nnetwork = moon\nsendmail_identity = root\n")
	_, err = loadWith(t, map[string]string{"BMGATE_CONFIG": file})
	if err == nil || !strings.Contains(err.Error(), file+`:2: config network: unknown network "moon"`) ||
		!strings.Contains(err.Error(), file+":3: config sendmail_identity") {
		t.Errorf("bad values: %v", err)
	}
	_, err = loadWith(t, map[string]string{"BMGATE_CONFIG": file, "BMGATE_NETWORK": "venus"})
	if err == nil || strings.Contains(err.Error(), file+":2") || !strings.Contains(err.Error(), `unknown network "venus"`) {
		t.Errorf("bad value from the environment: %v", err)
	}
}

// TestVersion: one version string for `bmgate version`, the peers' user
// agent and /status; a build stamped with -X main.version reports that.
func TestVersion(t *testing.T) {
	v := Version()
	if v == "" || v == "(devel)" {
		t.Fatalf("Version() = %q", v)
	}
	out := mustRun(t, nil, "", "version")
	if !strings.HasPrefix(out, "bmgate "+v+" (go") {
		t.Errorf("bmgate version printed %q, want it to start with bmgate %s", out, v)
	}
	if ua := userAgent(); ua != "/bmgate:"+v+"/" {
		t.Errorf("user agent %q", ua)
	}
	if testing.Short() {
		return
	}
	bin := filepath.Join(t.TempDir(), "bmgate")
	if out, err := exec.Command("go", "build", "-ldflags", "-X main.version=v9.8.7-test", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out2, err := exec.Command(bin, "version").Output()
	if err != nil || !strings.HasPrefix(string(out2), "bmgate v9.8.7-test (") {
		t.Errorf("stamped binary: %q, %v", out2, err)
	}
}
