package main

import (
	"maps"
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
