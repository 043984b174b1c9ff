package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
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
		Objects:   ObjectCounters{Received: 10, Relayed: 20, Invalid: 3, ConnRenewals: 2},
		Messages:  MessageCounters{Received: 5, Sent: 6, Acks: 4, Reports: 1, Blocked: 8},
		Outbox:    map[string]int{"queued": 2, "doing_pow": 1, "acked": 7, "weird\"state": 1},
		PoW:       PoWStatus{InProgress: 1, Trials: 123456789, TrialsPerSecond: 1.5e6},
		PoWJobs: []PoWJobStatus{{ID: 1, Kind: "msg", State: "solving"}, {ID: 2, Kind: "ack", State: "pending"},
			{ID: 3, Kind: "msg", State: "pending"}},
		Sessions: SessionCounts{SMTP: 1, IMAP: 4},
		Inbound:  InboundStatus{Pending: 1200, Leased: 64, RecentWindow: 300, Rate: 4, CatchUpSeconds: 300, Processed: 77},
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

// scrape fetches /metrics and parses it with the Prometheus text parser.
func scrape(t *testing.T, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	code, ctype, body := get(t, h, "/metrics")
	if code != 200 || !strings.HasPrefix(ctype, "text/plain; version=0.0.4") {
		t.Fatalf("%d %s", code, ctype)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	return fams
}

// sampleValue is the value of the family's sample with exactly these
// labels (name=value pairs), or false.
func sampleValue(f *dto.MetricFamily, labels ...string) (float64, bool) {
	for _, m := range f.GetMetric() {
		if len(m.GetLabel())*2 != len(labels) {
			continue
		}
		match := true
		for i, l := range m.GetLabel() {
			if l.GetName() != labels[2*i] || l.GetValue() != labels[2*i+1] {
				match = false
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Untyped != nil:
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

// documentedMetrics are the metrics README.md lists, with their types.
var documentedMetrics = map[string]dto.MetricType{
	"bmgate_build_info":                      dto.MetricType_GAUGE,
	"bmgate_start_time_seconds":              dto.MetricType_GAUGE,
	"bmgate_peers":                           dto.MetricType_GAUGE,
	"bmgate_inventory_objects":               dto.MetricType_GAUGE,
	"bmgate_inventory_set_aside_objects":     dto.MetricType_GAUGE,
	"bmgate_inbound_pending_objects":         dto.MetricType_GAUGE,
	"bmgate_inbound_leased_objects":          dto.MetricType_GAUGE,
	"bmgate_inbound_rate_objects_per_second": dto.MetricType_GAUGE,
	"bmgate_inbound_catch_up_seconds":        dto.MetricType_GAUGE,
	"bmgate_inbound_objects_processed_total": dto.MetricType_COUNTER,
	"bmgate_store_up":                        dto.MetricType_GAUGE,
	"bmgate_objects_received_total":          dto.MetricType_COUNTER,
	"bmgate_objects_relayed_total":           dto.MetricType_COUNTER,
	"bmgate_objects_invalid_total":           dto.MetricType_COUNTER,
	"bmgate_connection_renewals_total":       dto.MetricType_COUNTER,
	"bmgate_messages_received_total":         dto.MetricType_COUNTER,
	"bmgate_messages_blocked_total":          dto.MetricType_COUNTER,
	"bmgate_messages_sent_total":             dto.MetricType_COUNTER,
	"bmgate_acks_total":                      dto.MetricType_COUNTER,
	"bmgate_reports_total":                   dto.MetricType_COUNTER,
	"bmgate_outbox_messages":                 dto.MetricType_GAUGE,
	"bmgate_pow_queue_jobs":                  dto.MetricType_GAUGE,
	"bmgate_pow_in_progress":                 dto.MetricType_GAUGE,
	"bmgate_pow_trials_total":                dto.MetricType_COUNTER,
	"bmgate_sessions":                        dto.MetricType_GAUGE,
	"bmgate_listener_connections":            dto.MetricType_GAUGE,
	"bmgate_listener_max_connections":        dto.MetricType_GAUGE,
	"bmgate_listener_refused_total":          dto.MetricType_COUNTER,
	"bmgate_listener_login_timeouts_total":   dto.MetricType_COUNTER,
	"bmgate_login_attempts_total":            dto.MetricType_COUNTER,
	"bmgate_login_waits_total":               dto.MetricType_COUNTER,
	"bmgate_login_guard_pruned_total":        dto.MetricType_COUNTER,
	"bmgate_password_hash_slots":             dto.MetricType_GAUGE,
	"bmgate_password_hashes_in_flight":       dto.MetricType_GAUGE,
	"bmgate_password_hashes_peak":            dto.MetricType_GAUGE,
	"bmgate_password_hashes_total":           dto.MetricType_COUNTER,
	"bmgate_password_hash_waits_total":       dto.MetricType_COUNTER,
	"bmgate_password_hash_refused_total":     dto.MetricType_COUNTER,
	"bmgate_imap_literal_refusals_total":     dto.MetricType_COUNTER,
	"bmgate_smtp_commands_total":             dto.MetricType_COUNTER,
	"bmgate_smtp_command_failures_total":     dto.MetricType_COUNTER,
	"bmgate_smtp_command_duration_seconds":   dto.MetricType_HISTOGRAM,
	"bmgate_imap_commands_total":             dto.MetricType_COUNTER,
	"bmgate_imap_command_failures_total":     dto.MetricType_COUNTER,
	"bmgate_imap_command_duration_seconds":   dto.MetricType_HISTOGRAM,
}

func TestAdminMetrics(t *testing.T) {
	m := newMetrics(func(context.Context) (Status, error) { return sampleStatus(), nil })
	m.SMTP.ObserveCommand("MAIL", time.Millisecond, nil)
	m.SMTP.ObserveCommand("RCPT", time.Millisecond, errors.New("no such user"))
	m.IMAP.ObserveCommand("FETCH", 2*time.Millisecond, nil)
	m.IMAP.ObserveCommand("XYZZY", time.Millisecond, nil) // counted as other
	h := (&Admin{Metrics: m}).Handler()
	fams := scrape(t, h)

	for name, typ := range documentedMetrics {
		f := fams[name]
		if f == nil {
			t.Errorf("missing metric %s", name)
			continue
		}
		if f.GetType() != typ {
			t.Errorf("%s: type %v, want %v", name, f.GetType(), typ)
		}
		if f.GetHelp() == "" {
			t.Errorf("%s: no HELP", name)
		}
	}
	for name, f := range fams {
		if !strings.HasPrefix(name, "bmgate_") {
			continue
		}
		if _, ok := documentedMetrics[name]; !ok {
			t.Errorf("metric %s is not documented", name)
		}
		if f.GetType() == dto.MetricType_COUNTER && !strings.HasSuffix(name, "_total") {
			t.Errorf("counter %s lacks _total", name)
		}
	}
	for _, name := range []string{"go_goroutines", "go_memstats_alloc_bytes", "process_start_time_seconds"} {
		if fams[name] == nil {
			t.Errorf("missing %s (Go and process collectors)", name)
		}
	}
	if fams["bmgate_pow_trials_per_second"] != nil {
		t.Error("bmgate_pow_trials_per_second is still exported")
	}

	for _, want := range []struct {
		name   string
		labels []string
		value  float64
	}{
		{"bmgate_build_info", []string{"network", "test", "version", "v1.2.3"}, 1},
		{"bmgate_start_time_seconds", nil, 1700000000.5},
		{"bmgate_peers", []string{"direction", "inbound"}, 1},
		{"bmgate_peers", []string{"direction", "outbound"}, 2},
		{"bmgate_inventory_objects", nil, 4242},
		{"bmgate_inventory_set_aside_objects", nil, 1},
		{"bmgate_inbound_pending_objects", nil, 1200},
		{"bmgate_inbound_leased_objects", nil, 64},
		{"bmgate_inbound_rate_objects_per_second", nil, 4},
		{"bmgate_inbound_catch_up_seconds", nil, 300},
		{"bmgate_inbound_objects_processed_total", nil, 77},
		{"bmgate_store_up", nil, 1},
		{"bmgate_objects_received_total", nil, 10},
		{"bmgate_objects_relayed_total", nil, 20},
		{"bmgate_objects_invalid_total", nil, 3},
		{"bmgate_connection_renewals_total", nil, 2},
		{"bmgate_messages_received_total", nil, 5},
		{"bmgate_messages_blocked_total", nil, 8},
		{"bmgate_messages_sent_total", nil, 6},
		{"bmgate_acks_total", nil, 4},
		{"bmgate_reports_total", nil, 1},
		{"bmgate_outbox_messages", []string{"state", "queued"}, 2},
		{"bmgate_outbox_messages", []string{"state", "awaiting_pubkey"}, 0},
		{"bmgate_outbox_messages", []string{"state", "doing_pow"}, 1},
		{"bmgate_outbox_messages", []string{"state", "acked"}, 7},
		{"bmgate_outbox_messages", []string{"state", "failed"}, 0},
		{"bmgate_outbox_messages", []string{"state", "weird\"state"}, 1},
		{"bmgate_pow_queue_jobs", []string{"state", "pending"}, 2},
		{"bmgate_pow_queue_jobs", []string{"state", "solving"}, 1},
		{"bmgate_pow_queue_jobs", []string{"state", "solved"}, 0},
		{"bmgate_pow_in_progress", nil, 1},
		{"bmgate_pow_trials_total", nil, 123456789},
		{"bmgate_sessions", []string{"protocol", "imap"}, 4},
		{"bmgate_sessions", []string{"protocol", "smtp"}, 1},
		{"bmgate_listener_connections", []string{"listener", "smtp"}, 3},
		{"bmgate_listener_max_connections", []string{"listener", "imap"}, 10000},
		{"bmgate_listener_refused_total", []string{"listener", "smtp", "reason", "cap"}, 7},
		{"bmgate_listener_refused_total", []string{"listener", "smtp", "reason", "per_ip"}, 2},
		{"bmgate_listener_login_timeouts_total", []string{"listener", "smtp"}, 1},
		{"bmgate_login_attempts_total", []string{"outcome", "failed", "protocol", "smtp"}, 12},
		{"bmgate_login_attempts_total", []string{"outcome", "locked", "protocol", "smtp"}, 40},
		{"bmgate_login_attempts_total", []string{"outcome", "busy", "protocol", "imap"}, 1},
		{"bmgate_login_attempts_total", []string{"outcome", "error", "protocol", "imap"}, 0},
		{"bmgate_login_waits_total", nil, 30},
		{"bmgate_login_guard_pruned_total", nil, 4},
		{"bmgate_password_hash_slots", nil, 4},
		{"bmgate_password_hashes_in_flight", nil, 2},
		{"bmgate_password_hashes_peak", nil, 4},
		{"bmgate_password_hashes_total", nil, 26},
		{"bmgate_password_hash_waits_total", nil, 9},
		{"bmgate_password_hash_refused_total", nil, 1},
		{"bmgate_imap_literal_refusals_total", nil, 3},
		{"bmgate_smtp_commands_total", []string{"command", "MAIL"}, 1},
		{"bmgate_smtp_commands_total", []string{"command", "DATA"}, 0},
		{"bmgate_smtp_command_failures_total", []string{"command", "RCPT"}, 1},
		{"bmgate_smtp_command_failures_total", []string{"command", "MAIL"}, 0},
		{"bmgate_imap_commands_total", []string{"command", "FETCH"}, 1},
		{"bmgate_imap_commands_total", []string{"command", "other"}, 1},
	} {
		f := fams[want.name]
		if f == nil {
			continue // reported above
		}
		got, ok := sampleValue(f, want.labels...)
		if !ok || got != want.value {
			t.Errorf("%s%v = %v (found %v), want %v", want.name, want.labels, got, ok, want.value)
		}
	}
	var hist *dto.Histogram
	for _, s := range fams["bmgate_imap_command_duration_seconds"].GetMetric() {
		if s.GetLabel()[0].GetValue() == "FETCH" {
			hist = s.GetHistogram()
		}
	}
	if hist.GetSampleCount() != 1 || hist.GetSampleSum() != 0.002 {
		t.Errorf("FETCH duration histogram: %v", hist)
	}
}

// TestAdminMetricsStoreDown: when the store's figures fail, /metrics
// still answers with the rest and bmgate_store_up 0; another failure of
// the status is an error of the scrape.
func TestAdminMetricsStoreDown(t *testing.T) {
	st := sampleStatus()
	h := (&Admin{Status: func(context.Context) (Status, error) {
		return st, fmt.Errorf("%w: database is locked", errStoreStatus)
	}}).Handler()
	fams := scrape(t, h)
	if v, ok := sampleValue(fams["bmgate_store_up"]); !ok || v != 0 {
		t.Errorf("bmgate_store_up = %v %v", v, ok)
	}
	if fams["bmgate_outbox_messages"] != nil || fams["bmgate_inventory_objects"] != nil {
		t.Error("store figures exported although the store failed")
	}
	if v, ok := sampleValue(fams["bmgate_objects_received_total"]); !ok || v != 10 {
		t.Errorf("bmgate_objects_received_total = %v %v", v, ok)
	}
	if fams["go_goroutines"] == nil {
		t.Error("Go collector missing")
	}

	failing := (&Admin{Status: func(context.Context) (Status, error) { return Status{}, errors.New("boom") }}).Handler()
	if fams := scrape(t, failing); fams["go_goroutines"] == nil || fams["bmgate_build_info"] != nil {
		t.Errorf("failing status: %v", fams)
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

// TestMetricsDocumented: README.md's table lists every metric /metrics
// exports, with its type.
func TestMetricsDocumented(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	types := map[dto.MetricType]string{dto.MetricType_GAUGE: "gauge", dto.MetricType_COUNTER: "counter", dto.MetricType_HISTOGRAM: "histogram"}
	row := regexp.MustCompile("(?m)^\\| `(bmgate_[a-z_]+)(\\{[a-z_,]*\\})?` \\| ([a-z]+) \\|")
	documented := map[string]string{}
	for _, m := range row.FindAllStringSubmatch(string(readme), -1) {
		documented[m[1]] = m[3]
	}
	for name, typ := range documentedMetrics {
		if documented[name] != types[typ] {
			t.Errorf("README.md: %s documented as %q, want %q", name, documented[name], types[typ])
		}
	}
	for name := range documented {
		if _, ok := documentedMetrics[name]; !ok {
			t.Errorf("README.md documents %s, which is not exported", name)
		}
	}
}
