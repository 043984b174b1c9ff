package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
)

// runCLI runs one command line in-process.
func runCLI(t *testing.T, env map[string]string, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	c := &cli{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errOut, getenv: envMap(env)}
	code = run(context.Background(), c, args)
	return code, out.String(), errOut.String()
}

func TestCLIHelpAndUsage(t *testing.T) {
	for _, tc := range []struct {
		args       []string
		code       int
		out, inErr string
	}{
		{args: nil, code: 2, out: "Commands:"},
		{args: []string{"help"}, code: 0, out: "config sample"},
		{args: []string{"--help"}, code: 0, out: "Usage: bmgate COMMAND"},
		{args: []string{"help", "config", "show"}, code: 0, out: "--smtp ADDR"},
		{args: []string{"config", "show", "-h"}, code: 0, out: "Usage: bmgate config show"},
		{args: []string{"frobnicate"}, code: 2, inErr: `unknown command "frobnicate"`},
		{args: []string{"config"}, code: 2, inErr: "config sample"},
		{args: []string{"config", "sample", "extra"}, code: 2, inErr: "too many arguments"},
		{args: []string{"config", "show", "--nope"}, code: 2, inErr: "flag provided but not defined: -nope"},
		{args: []string{"config", "show", "--network", "moon"}, code: 1, inErr: `unknown network "moon"`},
	} {
		code, out, errOut := runCLI(t, nil, "", tc.args...)
		if code != tc.code || !strings.Contains(out, tc.out) || !strings.Contains(errOut, tc.inErr) {
			t.Errorf("%q: code %d, stdout %q, stderr %q; want code %d, stdout with %q, stderr with %q",
				tc.args, code, out, errOut, tc.code, tc.out, tc.inErr)
		}
	}
}

func TestCLIConfigShow(t *testing.T) {
	code, out, errOut := runCLI(t, map[string]string{"BMGATE_DOMAIN": "env.example"}, "",
		"config", "show", "--smtp", "127.0.0.1:2525", "--peer", "10.0.0.1:8444")
	if code != 0 {
		t.Fatalf("code %d: %s", code, errOut)
	}
	for _, want := range []string{"domain = env.example\n", "smtp = 127.0.0.1:2525\n", "peer = 10.0.0.1:8444\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
}

func TestParseFlagsInterspersed(t *testing.T) {
	cmd := &command{name: "x", args: "A B"}
	inv := newInvocation(&cli{getenv: envMap(nil)}, cmd, []string{"a", "--label", "L", "b", "--", "--c"})
	label := inv.fs.String("label", "", "")
	if err := inv.parseFlags(2, -1); err != nil {
		t.Fatal(err)
	}
	if *label != "L" || strings.Join(inv.args, "|") != "a|b|--c" {
		t.Errorf("label %q args %q", *label, inv.args)
	}
}

// codedError chooses its exit status, as sendmail's sysexits errors do.
type codedError struct{}

func (codedError) Error() string { return "temporary failure" }
func (codedError) ExitCode() int { return 75 }

func TestCLIExitCode(t *testing.T) {
	saved := commands
	t.Cleanup(func() { commands = saved })
	commands = append(commands[:len(commands):len(commands)], &command{
		name: "coded",
		run: func(context.Context, *invocation) error {
			return fmt.Errorf("queue: %w", codedError{})
		},
	})
	code, _, errOut := runCLI(t, nil, "", "coded")
	if code != 75 || errOut != "bmgate coded: queue: temporary failure\n" {
		t.Errorf("code %d, stderr %q", code, errOut)
	}
}
