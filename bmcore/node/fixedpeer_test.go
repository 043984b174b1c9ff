package node

import (
	"log/slog"
	"net"
	"testing"
	"time"
)

// fixedFailures returns the "cannot reach fixed peer" records so far.
func fixedFailures(h *recordHandler) []map[string]string {
	var out []map[string]string
	for _, r := range h.records() {
		if r.msg == "cannot reach fixed peer" {
			out = append(out, r.attrs)
		}
	}
	return out
}

// TestFixedPeerDownAtStart: a --peer that is down when the node starts is
// logged as unreachable and redialled after 2 s, then 4 s, … (not after
// the 30 s backoff of known nodes), and connected once it is up.
func TestFixedPeerDownAtStart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now

	clock := newFakeClock(time.Now())
	h := newRecordHandler()
	cfg := testConfig(t)
	cfg.Peers = []string{addr}
	cfg.ListenAddr = ""
	cfg.RetryBackoff = 30 * time.Second // the default
	cfg.Now = clock.Now
	cfg.Logger = slog.New(h)
	n := startNode(t, cfg)

	waitFor(t, 10*time.Second, "the first failed dial to be logged", func() bool { return len(fixedFailures(h)) >= 1 })
	first := fixedFailures(h)[0]
	if first["addr"] != addr || first["retry_in"] != "2s" || first["failures"] != "1" || first["err"] == "" {
		t.Errorf("first failure logged as %v", first)
	}
	// Not before the wait is over…
	waitPasses(t, n, 3)
	if got := len(fixedFailures(h)); got != 1 {
		t.Fatalf("%d dials before the 2 s wait passed", got)
	}
	// …and right after it.
	clock.Advance(2 * time.Second)
	waitFor(t, 10*time.Second, "the second failed dial", func() bool { return len(fixedFailures(h)) >= 2 })
	if second := fixedFailures(h)[1]; second["retry_in"] != "4s" || second["failures"] != "2" {
		t.Errorf("second failure logged as %v", second)
	}

	// The peer comes up: the next retry connects.
	pcfg := testConfig(t)
	pcfg.ListenAddr = addr
	peer := startNode(t, pcfg)
	clock.Advance(4 * time.Second)
	waitFor(t, 10*time.Second, "the fixed peer to connect", func() bool { return establishedCount(n) == 1 && establishedCount(peer) == 1 })
}
