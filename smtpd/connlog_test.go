package smtpd

import (
	"context"
	"encoding/base64"
	"log/slog"
	"net"
	"net/textproto"
	"strings"
	"testing"

	"github.com/bmgate/bmgate/mailmap/logsafe/logtest"
)

// TestConnectionLog: every line of a session carries its connection id,
// the reply to DATA names the message with it, refusals name the session,
// and control characters from the client never reach the log raw.
func TestConnectionLog(t *testing.T) {
	rh := logtest.New()
	h := start(t, "plain", func(c *Config) {
		c.Logger = slog.New(rh)
		c.AllowInsecureAuth = true
	})
	nc, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	tp := textproto.NewConn(nc)
	cmd := func(code int, format string, args ...any) string {
		t.Helper()
		if err := tp.PrintfLine(format, args...); err != nil {
			t.Fatal(err)
		}
		_, msg, err := tp.ReadResponse(code)
		if err != nil {
			t.Fatalf("%q: %v", format, err)
		}
		return msg
	}
	if _, _, err := tp.ReadResponse(220); err != nil {
		t.Fatal(err)
	}
	cmd(250, "EHLO evil\rhost\x1b[2J.example")
	cmd(235, "AUTH PLAIN %s", base64.StdEncoding.EncodeToString([]byte("\x00"+alice.Name+"\x00"+alicePass)))
	cmd(250, "MAIL FROM:<%s@%s>", aliceBM, domain)
	cmd(250, "RCPT TO:<%s@%s>", bobBM, domain)
	cmd(354, "DATA")
	w := tp.DotWriter()
	if _, err := w.Write([]byte(testMessage(""))); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	_, queuedAs, err := tp.ReadResponse(250)
	if err != nil {
		t.Fatalf("DATA: %v", err)
	}
	cmd(250, "MAIL FROM:<%s@%s>", aliceBM, domain)
	refusal := cmd(550, "RCPT TO:<bad\xffname@example.org>")
	cmd(221, "QUIT")
	h.s.Shutdown(context.Background())

	recs := rh.Records()
	if len(recs) == 0 {
		t.Fatal("nothing logged")
	}
	conn := recs[0].Attrs["conn"]
	if len(conn) != 8 {
		t.Fatalf("first line %q has conn %q", recs[0].Msg, conn)
	}
	var accepted, refused, helo bool
	for _, r := range recs {
		if r.Attrs["conn"] != conn {
			t.Errorf("line %q: conn %q, want %q", r.Msg, r.Attrs["conn"], conn)
		}
		for k, v := range r.Attrs {
			if strings.ContainsAny(v, "\r\n\x1b\x7f") {
				t.Errorf("line %q: %s=%q carries a control character", r.Msg, k, v)
			}
		}
		switch r.Msg {
		case "message accepted":
			accepted = true
			if want := "OK: queued as " + r.Attrs["id"]; !strings.HasPrefix(r.Attrs["id"], conn+".") || !strings.HasSuffix(queuedAs, want) {
				t.Errorf("DATA reply %q, log line id %q", queuedAs, r.Attrs["id"])
			}
		case "recipient refused":
			refused = r.Attrs["rcpt"] == "bad\ufffdname@example.org"
		case "session started":
			helo = r.Attrs["helo"] == "evil\ufffdhost\ufffd[2J.example"
		}
	}
	if !accepted || !refused || !helo {
		t.Errorf("accepted %v, refused %v, helo %v in log: %v", accepted, refused, helo, recs)
	}
	if !strings.HasSuffix(refusal, "(session "+conn+")") {
		t.Errorf("refusal %q does not name session %s", refusal, conn)
	}
}
