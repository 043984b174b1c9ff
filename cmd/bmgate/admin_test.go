package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"
)

func sampleStatus() Status {
	return Status{
		Version:   "v1.2.3",
		Network:   "test",
		StartedAt: time.Unix(1_700_000_000, 500_000_000).UTC(),
		Peers: []PeerStatus{
			{Addr: "127.0.0.1:18444", Inbound: true, UserAgent: "/PyBitmessage:0.6.3.2/", Since: time.Unix(1_700_000_100, 0).UTC()},
			{Addr: "127.0.0.1:18445", Since: time.Unix(1_700_000_200, 0).UTC()},
			{Addr: "127.0.0.1:18446", Since: time.Unix(1_700_000_300, 0).UTC()},
		},
		Inventory: 4242,
		Objects:   ObjectCounters{Received: 10, Relayed: 20, Invalid: 3},
		Outbox:    map[string]int{"queued": 2, "doing_pow": 1, "acked": 7, "weird\"state": 1},
		PoW:       PoWStatus{InProgress: 1, Trials: 123456789, TrialsPerSecond: 1.5e6},
		Sessions:  SessionCounts{SMTP: 1, IMAP: 4},
		SetAside: []SetAsideStatus{{Hash: strings.Repeat("ab", 32), Type: 2, Attempts: 5, Error: "deliver: disk full",
			Expires: time.Unix(1_700_100_000, 0).UTC()}},
		Listeners: []ListenerStatus{
			{Name: "smtp", Open: 3, Max: 5000, RefusedCap: 7, RefusedPerIP: 2, LoginTimeouts: 1},
			{Name: "imap", Open: 9, Max: 10000},
		},
		Logins: LoginStatus{Attempts: map[string]map[string]uint64{
			"smtp": {"ok": 5, "failed": 12, "locked": 40},
			"imap": {"ok": 8, "busy": 1},
		}, Waited: 30, Pruned: 4},
		PasswordHash:        PasswordHashStatus{Slots: 4, InFlight: 2, Peak: 4, Total: 26, Waited: 9, Refused: 1},
		IMAPLiteralRefusals: 3,
	}
}

func get(t *testing.T, h http.Handler, path string) (int, string, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, rec.Header().Get("Content-Type"), rec.Body.String()
}

func TestAdminHealthz(t *testing.T) {
	var healthErr error
	a := &Admin{Health: func(context.Context) error { return healthErr }}
	h := a.Handler()
	if code, _, body := get(t, h, "/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("healthy: %d %q", code, body)
	}
	healthErr = errors.New("database is locked: secret detail")
	code, _, body := get(t, h, "/healthz")
	if code != http.StatusServiceUnavailable || strings.Contains(body, "secret") {
		t.Errorf("unhealthy: %d %q", code, body)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/healthz", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /healthz: %d", rec.Code)
	}
}

func TestAdminStatusJSON(t *testing.T) {
	want := sampleStatus()
	h := (&Admin{Status: func(context.Context) (Status, error) { return want, nil }}).Handler()
	code, ctype, body := get(t, h, "/status")
	if code != 200 || ctype != "application/json" {
		t.Fatalf("%d %s", code, ctype)
	}
	var got Status
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if !got.StartedAt.Equal(want.StartedAt) || len(got.Peers) != 3 || got.Peers[0].UserAgent != want.Peers[0].UserAgent ||
		got.Outbox["acked"] != 7 || got.PoW != want.PoW || got.Sessions != want.Sessions || got.Objects != want.Objects ||
		len(got.SetAside) != 1 || got.SetAside[0].Hash != want.SetAside[0].Hash || got.SetAside[0].Error != want.SetAside[0].Error ||
		got.SetAside[0].Attempts != 5 || got.SetAside[0].Type != 2 || !got.SetAside[0].Expires.Equal(want.SetAside[0].Expires) {
		t.Errorf("round trip:\n%+v\nwant\n%+v", got, want)
	}

	failing := (&Admin{Status: func(context.Context) (Status, error) { return Status{}, errors.New("boom") }}).Handler()
	if code, _, body := get(t, failing, "/status"); code != http.StatusServiceUnavailable || strings.Contains(body, "boom") {
		t.Errorf("failing status: %d %q", code, body)
	}
}

// sampleLine is one sample of the text exposition format:
// name{label="value",…} number.
var sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*",?)*\})? (-?[0-9.]+(e[+-]?[0-9]+)?|NaN|[+-]Inf)$`)

func TestAdminMetrics(t *testing.T) {
	h := (&Admin{Status: func(context.Context) (Status, error) { return sampleStatus(), nil }}).Handler()
	code, ctype, body := get(t, h, "/metrics")
	if code != 200 || !strings.HasPrefix(ctype, "text/plain; version=0.0.4") {
		t.Fatalf("%d %s", code, ctype)
	}
	typed := map[string]bool{}
	helped := map[string]bool{}
	samples := map[string]bool{}
	for line := range strings.Lines(body) {
		line = strings.TrimSuffix(line, "\n")
		switch {
		case strings.HasPrefix(line, "# HELP "):
			helped[strings.Fields(line)[2]] = true
		case strings.HasPrefix(line, "# TYPE "):
			f := strings.Fields(line)
			if len(f) != 4 || (f[3] != "gauge" && f[3] != "counter") {
				t.Errorf("bad TYPE line %q", line)
			}
			if !strings.HasSuffix(f[2], "_total") && f[3] == "counter" {
				t.Errorf("counter %s lacks _total", f[2])
			}
			typed[f[2]] = true
		default:
			m := sampleLine.FindStringSubmatch(line)
			if m == nil {
				t.Errorf("not a valid sample line: %q", line)
				continue
			}
			if !typed[m[1]] || !helped[m[1]] {
				t.Errorf("sample %q before its HELP/TYPE", line)
			}
			samples[line] = true
		}
	}
	for _, want := range []string{
		`bmgate_build_info{version="v1.2.3",network="test"} 1`,
		`bmgate_start_time_seconds 1700000000.5`,
		`bmgate_peers{direction="inbound"} 1`,
		`bmgate_peers{direction="outbound"} 2`,
		`bmgate_inventory_objects 4242`,
		`bmgate_inventory_set_aside_objects 1`,
		`bmgate_objects_received_total 10`,
		`bmgate_objects_relayed_total 20`,
		`bmgate_objects_invalid_total 3`,
		`bmgate_outbox_messages{state="queued"} 2`,
		`bmgate_outbox_messages{state="awaiting_pubkey"} 0`,
		`bmgate_outbox_messages{state="doing_pow"} 1`,
		`bmgate_outbox_messages{state="acked"} 7`,
		`bmgate_outbox_messages{state="failed"} 0`,
		`bmgate_outbox_messages{state="weird\"state"} 1`,
		`bmgate_pow_in_progress 1`,
		`bmgate_pow_trials_total 123456789`,
		`bmgate_pow_trials_per_second 1500000`,
		`bmgate_sessions{protocol="imap"} 4`,
		`bmgate_sessions{protocol="smtp"} 1`,
		`bmgate_listener_connections{listener="smtp"} 3`,
		`bmgate_listener_max_connections{listener="imap"} 10000`,
		`bmgate_listener_refused_total{listener="smtp",reason="cap"} 7`,
		`bmgate_listener_refused_total{listener="smtp",reason="per_ip"} 2`,
		`bmgate_listener_login_timeouts_total{listener="smtp"} 1`,
		`bmgate_login_attempts_total{protocol="smtp",outcome="failed"} 12`,
		`bmgate_login_attempts_total{protocol="smtp",outcome="locked"} 40`,
		`bmgate_login_attempts_total{protocol="imap",outcome="busy"} 1`,
		`bmgate_login_attempts_total{protocol="imap",outcome="error"} 0`,
		`bmgate_login_waits_total 30`,
		`bmgate_login_guard_pruned_total 4`,
		`bmgate_password_hash_slots 4`,
		`bmgate_password_hashes_in_flight 2`,
		`bmgate_password_hashes_peak 4`,
		`bmgate_password_hashes_total 26`,
		`bmgate_password_hash_waits_total 9`,
		`bmgate_password_hash_refused_total 1`,
		`bmgate_imap_literal_refusals_total 3`,
	} {
		if !samples[want] {
			t.Errorf("missing sample %s", want)
		}
	}
}

func TestAdminServeStops(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (&Admin{}).Serve(ctx, ln) }()
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + ln.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "ok\n" {
		t.Errorf("body %q", body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not stop")
	}
}
