package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestPoWQueueStatus: each job is shown with its state and expected
// remaining time; pending jobs wait for the work queued before them.
func TestPoWQueueStatus(t *testing.T) {
	jobs := []PoWJobStatus{
		{ID: 7, Kind: "msg", State: "solved", OutboxID: 3, Expected: 1000, Trials: 900},
		{ID: 8, Kind: "msg", State: "solving", OutboxID: 4, Expected: 1000, Trials: 400},
		{ID: 9, Kind: "pubkey", State: "pending", Expected: 2000},
		{ID: 10, Kind: "ack", State: "pending", OutboxID: 5, Expected: 1000},
	}
	estimatePoW(jobs, 100, 1) // 100 trials/s, one solver
	want := []time.Duration{0, 6 * time.Second, 20 * time.Second, 30 * time.Second}
	for i, j := range jobs {
		if j.Remaining != want[i] {
			t.Errorf("job %d remaining %v, want %v", j.ID, j.Remaining, want[i])
		}
	}
	var out bytes.Buffer
	printStatus(&out, Status{Network: "test", Outbox: map[string]int{"doing_pow": 3}, PoWJobs: jobs}, nil, time.Now())
	for _, line := range []string{
		"pow queue:  4 jobs",
		"job 7      msg       solved   outbox 3     900/1000 trials, publishing",
		"job 8      msg       solving  outbox 4     400/1000 trials, ~6s left",
		"job 9      pubkey    pending  -            0/2000 trials, ~20s left",
	} {
		if !strings.Contains(out.String(), line) {
			t.Errorf("status output lacks %q:\n%s", line, out.String())
		}
	}
	// The proof of work ahead, per user.
	out.Reset()
	printStatus(&out, Status{Network: "test", QueuedPoW: []QueuedPoWStatus{{User: "alice", Messages: 2, Estimate: 95 * time.Second}}}, nil, time.Now())
	for _, line := range []string{"pow ahead:  estimated on this machine, at an assumed rate", "alice                2 messages, ~1m35s"} {
		if !strings.Contains(out.String(), line) {
			t.Errorf("status output lacks %q:\n%s", line, out.String())
		}
	}
	// Without a measured rate nothing is guessed.
	unknown := []PoWJobStatus{{ID: 1, Kind: "msg", State: "pending", Expected: 10}}
	estimatePoW(unknown, 0, 1)
	if unknown[0].Remaining != 0 {
		t.Errorf("remaining without a rate = %v", unknown[0].Remaining)
	}
}
