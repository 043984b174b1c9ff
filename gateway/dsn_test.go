package gateway

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
)

var dsnNow = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

var originalMail = []byte("From: " + addrV4 + "@" + domain + "\r\n" +
	"To: " + addrV3 + "@" + domain + "\r\n" +
	"Subject: Lunch\r\n" +
	"Message-ID: <orig.42@bmgate.local>\r\n" +
	"\r\n" +
	"See you at noon.\r\n")

func baseReport() Report {
	return Report{
		Domain:            domain,
		To:                addrV4 + "@" + domain,
		OriginalMessageID: "orig.42@bmgate.local",
		OriginalSubject:   "Lunch",
		Original:          originalMail,
		Arrival:           dsnNow.Add(-time.Hour),
		Now:               dsnNow,
		Recipients: []ReportRecipient{{
			Final:       addrV3 + "@" + domain,
			Orig:        "bob@" + domain,
			Action:      ActionDelivered,
			Status:      StatusDelivered,
			When:        dsnNow.Add(-time.Minute),
			Attempts:    2,
			PoWDuration: 12500 * time.Millisecond,
		}},
	}
}

// report is a built report read back with go-message.
type report struct {
	h      mail.Header
	parts  []*message.Entity
	bodies []string
	// status groups of the message/delivery-status part
	groups []textproto.Header
}

func parseReport(t *testing.T, raw []byte) report {
	t.Helper()
	e, err := message.Read(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("report does not parse: %v", err)
	}
	r := report{h: mail.Header{Header: e.Header}}
	mt, params, err := e.Header.ContentType()
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("Content-Type %s %v %v", mt, params, err)
	}
	mr := e.MultipartReader()
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("part: %v", err)
		}
		b, err := io.ReadAll(p.Body)
		if err != nil {
			t.Fatalf("part body: %v", err)
		}
		r.parts = append(r.parts, p)
		r.bodies = append(r.bodies, string(b))
		if mt, _, _ := p.Header.ContentType(); mt == "message/delivery-status" {
			br := bufio.NewReader(bytes.NewReader(b))
			for {
				h, err := textproto.ReadHeader(br)
				if err != nil {
					t.Fatalf("delivery-status group: %v\n%s", err, b)
				}
				if h.Len() == 0 {
					break
				}
				r.groups = append(r.groups, h)
			}
		}
	}
	return r
}

func TestBuildReportDelivered(t *testing.T) {
	rp := baseReport()
	rp.EnvID = "env 1+2"
	rp.Ret = "FULL"
	raw, err := BuildReport(rp)
	if err != nil {
		t.Fatal(err)
	}
	r := parseReport(t, raw)
	if s, _ := r.h.Subject(); s != "Delivered: Lunch" {
		t.Errorf("Subject = %q", s)
	}
	from, _ := r.h.AddressList("From")
	if len(from) != 1 || from[0].Address != "mailer-daemon@"+domain || from[0].Name != "Mail Delivery System" {
		t.Errorf("From = %v", from)
	}
	if to, _ := r.h.AddressList("To"); len(to) != 1 || to[0].Address != addrV4+"@"+domain {
		t.Errorf("To = %v", to)
	}
	if irt, _ := r.h.MsgIDList("In-Reply-To"); len(irt) != 1 || irt[0] != "orig.42@bmgate.local" {
		t.Errorf("In-Reply-To = %v", irt)
	}
	if refs, _ := r.h.MsgIDList("References"); len(refs) != 1 || refs[0] != "orig.42@bmgate.local" {
		t.Errorf("References = %v", refs)
	}
	if id, err := r.h.MessageID(); err != nil || !ValidMsgID(id) || id == "orig.42@bmgate.local" {
		t.Errorf("Message-ID = %q, %v", id, err)
	}
	if r.h.Get("Auto-Submitted") != "auto-replied" {
		t.Error("no Auto-Submitted")
	}
	if d, err := r.h.Date(); err != nil || !d.Equal(dsnNow) {
		t.Errorf("Date = %v, %v", d, err)
	}
	if len(r.parts) != 3 {
		t.Fatalf("%d parts", len(r.parts))
	}
	for i, want := range []string{"text/plain", "message/delivery-status", "message/rfc822"} {
		if mt, _, _ := r.parts[i].Header.ContentType(); mt != want {
			t.Errorf("part %d is %s, want %s", i, mt, want)
		}
	}
	human := r.bodies[0]
	for _, s := range []string{`Your message "Lunch" to ` + addrV3 + "@" + domain, "was received by the recipient's node at Sun, 22 Nov 2026 11:59:00 +0000", "2 attempts", "proof of work took 13 s"} {
		if !strings.Contains(human, s) {
			t.Errorf("text part lacks %q:\n%s", s, human)
		}
	}
	if len(r.groups) != 2 {
		t.Fatalf("%d delivery-status groups", len(r.groups))
	}
	msgFields := map[string]string{
		"Reporting-MTA":        "dns; " + domain,
		"Original-Envelope-Id": "env+201+2B2",
		"Arrival-Date":         "Sun, 22 Nov 2026 11:00:00 +0000",
	}
	for k, v := range msgFields {
		if got := r.groups[0].Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	rcptFields := map[string]string{
		"Original-Recipient": "rfc822; bob@" + domain,
		"Final-Recipient":    "rfc822; " + addrV3 + "@" + domain,
		"Action":             "delivered",
		"Status":             "2.0.0",
		"Last-Attempt-Date":  "Sun, 22 Nov 2026 11:59:00 +0000",
		"Diagnostic-Code":    "",
		"Will-Retry-Until":   "",
	}
	for k, v := range rcptFields {
		if got := r.groups[1].Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if r.bodies[2] != string(originalMail) {
		t.Errorf("original = %q", r.bodies[2])
	}
}

func TestBuildReportDelayedAndFailed(t *testing.T) {
	rp := baseReport()
	rp.Ret = ""
	rp.EnvID = ""
	rp.Arrival = time.Time{}
	rp.Recipients = []ReportRecipient{
		{Final: addrV3 + "@" + domain, Action: ActionDelayed, Status: StatusAckPending, Diagnostic: "no ack after 2 sends",
			When: dsnNow, WillRetryUntil: dsnNow.Add(28 * 24 * time.Hour), Attempts: 2, PoWEstimate: 90 * time.Second},
		{Final: addrV2 + "@" + domain, Action: ActionFailed, Status: StatusPubkeyTimeout, Diagnostic: "getpubkey unanswered for 7 days",
			When: dsnNow, Attempts: 1},
		{Final: "broadcast@" + domain, Action: ActionRelayed, Status: StatusDelivered, When: dsnNow},
	}
	raw, err := BuildReport(rp)
	if err != nil {
		t.Fatal(err)
	}
	r := parseReport(t, raw)
	if s, _ := r.h.Subject(); s != "Undelivered: Lunch" {
		t.Errorf("Subject = %q", s)
	}
	if len(r.parts) != 3 {
		t.Fatalf("%d parts", len(r.parts))
	}
	if mt, _, _ := r.parts[2].Header.ContentType(); mt != "text/rfc822-headers" {
		t.Errorf("third part %s", mt)
	}
	if strings.Contains(r.bodies[2], "See you at noon") || !strings.Contains(r.bodies[2], "Subject: Lunch") {
		t.Errorf("headers part = %q", r.bodies[2])
	}
	if len(r.groups) != 4 {
		t.Fatalf("%d groups", len(r.groups))
	}
	if r.groups[0].Has("Original-Envelope-Id") || r.groups[0].Has("Arrival-Date") {
		t.Error("unset per-message fields written")
	}
	delayed, failed, relayed := r.groups[1], r.groups[2], r.groups[3]
	if delayed.Get("Action") != "delayed" || delayed.Get("Status") != "4.4.7" ||
		delayed.Get("Will-Retry-Until") != "Sun, 20 Dec 2026 12:00:00 +0000" ||
		delayed.Get("Diagnostic-Code") != "X-Bitmessage; no ack after 2 sends" || delayed.Has("Original-Recipient") {
		t.Errorf("delayed group wrong: %v", delayed.Map())
	}
	if failed.Get("Action") != "failed" || failed.Get("Status") != "5.4.4" || failed.Has("Will-Retry-Until") ||
		failed.Get("Diagnostic-Code") != "X-Bitmessage; getpubkey unanswered for 7 days" {
		t.Errorf("failed group wrong: %v", failed.Map())
	}
	if relayed.Get("Action") != "relayed" || relayed.Has("Diagnostic-Code") {
		t.Errorf("relayed group wrong: %v", relayed.Map())
	}
	human := r.bodies[0]
	for _, s := range []string{
		"has not been delivered yet. This server keeps trying until Sun, 20 Dec 2026 12:00:00 +0000",
		statusText[StatusAckPending],
		"could not be delivered.",
		"public key never arrived",
		"Technical detail: getpubkey unanswered for 7 days",
		"1 attempt.",
		"was published to the Bitmessage network",
		"Sending it again needs about 90 s of proof of work on this server.",
	} {
		if !strings.Contains(human, s) {
			t.Errorf("text part lacks %q:\n%s", s, human)
		}
	}
}

func TestBuildReportSubjects(t *testing.T) {
	for _, tc := range []struct {
		action        Action
		subject, want string
	}{
		{ActionDelayed, "Lunch", "Delayed: Lunch"},
		{ActionRelayed, "Lunch", "Sent: Lunch"},
		{ActionFailed, "", "Undelivered: (no subject)"},
		{ActionDelivered, "Grüße\r\nBcc: victim@x.org", "Delivered: Grüße  Bcc: victim@x.org"},
		{ActionDelivered, "=?utf-8?q?looks_encoded?=", "Delivered: =?utf-8?q?looks_encoded?="},
	} {
		rp := baseReport()
		rp.OriginalSubject = tc.subject
		rp.Recipients[0].Action = tc.action
		rp.Original = nil
		raw, err := BuildReport(rp)
		if err != nil {
			t.Fatal(err)
		}
		r := parseReport(t, raw)
		if s, err := r.h.Subject(); err != nil || s != tc.want {
			t.Errorf("Subject = %q, %v, want %q", s, err, tc.want)
		}
		if r.h.Has("Bcc") {
			t.Error("subject injected a header")
		}
		if len(r.parts) != 2 {
			t.Errorf("%d parts without an original", len(r.parts))
		}
		if !strings.Contains(r.bodies[0], oneLine(tc.subject)) {
			t.Errorf("text part lacks the subject")
		}
	}
}

func TestBuildReportHostileFields(t *testing.T) {
	rp := baseReport()
	rp.EnvID = "e\r\nX-Evil: 1"
	rp.OriginalMessageID = "x@y\r\nBcc: a@b"
	rp.Recipients[0].Orig = "bob@x\r\nAction: failed"
	rp.Recipients[0].Action = ActionFailed
	rp.Recipients[0].Status = StatusAckTimeout
	rp.Recipients[0].Diagnostic = "ünïcode\r\nStatus: 2.0.0" + strings.Repeat("x", 2000)
	raw, err := BuildReport(rp)
	if err != nil {
		t.Fatal(err)
	}
	r := parseReport(t, raw)
	if r.h.Has("In-Reply-To") || r.h.Has("Bcc") {
		t.Error("invalid original Message-ID written")
	}
	if len(r.groups) != 2 {
		t.Fatalf("%d groups: injected line breaks?", len(r.groups))
	}
	g := r.groups[1]
	if len(g.Values("Action")) != 1 || len(g.Values("Status")) != 1 || g.Get("Status") != "5.4.7" {
		t.Errorf("fields injected: %v", g.Map())
	}
	if d := g.Get("Diagnostic-Code"); !strings.HasPrefix(d, "X-Bitmessage; ?n?code  Status: 2.0.0") || len(d) > maxDiagnostic+20 {
		t.Errorf("Diagnostic-Code = %q", d)
	}
	if r.groups[0].Get("Original-Envelope-Id") != "e+20+20X-Evil:+201" {
		t.Errorf("Original-Envelope-Id = %q", r.groups[0].Get("Original-Envelope-Id"))
	}
}

func TestBuildReportErrors(t *testing.T) {
	mod := func(f func(*Report)) Report {
		rp := baseReport()
		f(&rp)
		return rp
	}
	for i, tc := range []struct {
		rp   Report
		want error
	}{
		{mod(func(r *Report) { r.Domain = "bad domain" }), ErrBadDomain},
		{mod(func(r *Report) { r.Recipients = nil }), ErrNoRecipients},
		{mod(func(r *Report) { r.Recipients[0].Final = "" }), ErrNoRecipients},
		{mod(func(r *Report) { r.Recipients[0].Action = "expanded" }), ErrBadAction},
		{mod(func(r *Report) { r.Recipients[0].Status = "2.0" }), ErrBadStatus},
		{mod(func(r *Report) { r.Recipients[0].Status = "3.0.0" }), ErrBadStatus},
	} {
		if _, err := BuildReport(tc.rp); !errors.Is(err, tc.want) {
			t.Errorf("case %d: %v, want %v", i, err, tc.want)
		}
	}
	if _, err := BuildReport(mod(func(r *Report) { r.To = "not an address" })); err == nil {
		t.Error("bad To accepted")
	}
}

func TestHeaderBlock(t *testing.T) {
	for in, want := range map[string]string{
		"A: 1\r\nB: 2\r\n\r\nbody\r\n": "A: 1\r\nB: 2\r\n\r\n",
		"A: 1\r\nB: 2":                 "A: 1\r\nB: 2\r\n",
		"":                             "\r\n",
	} {
		if got := string(headerBlock([]byte(in))); got != want {
			t.Errorf("headerBlock(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestStatusTexts(t *testing.T) {
	for _, s := range []DSNStatus{StatusDelivered, StatusPubkeyPending, StatusAckPending, StatusBadMailbox, StatusBadAddress,
		StatusBadSender, StatusTooLarge, StatusLocalError, StatusPubkeyTimeout, StatusAckTimeout, StatusContent, StatusDifficultyTooHigh} {
		if !validStatus(s) {
			t.Errorf("%s is not a valid status", s)
		}
		if s != StatusDelivered && statusText[s] == "" {
			t.Errorf("%s has no explanation", s)
		}
	}
	if explain("4.9.9") == explain("5.9.9") {
		t.Error("unknown statuses are not explained by class")
	}
}
