package smtpd

import (
	"context"
	"encoding/base64"
	"log/slog"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"testing"
)

// logRecord is one log line, its attributes (the logger's included) as
// text.
type logRecord struct {
	msg   string
	attrs map[string]string
}

// recordHandler keeps every record, so a test can look at attribute
// values before any handler quotes them.
type recordHandler struct {
	mu    *sync.Mutex
	recs  *[]logRecord
	attrs []slog.Attr
}

func newRecordHandler() *recordHandler {
	return &recordHandler{mu: new(sync.Mutex), recs: new([]logRecord)}
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	rec := logRecord{msg: r.Message, attrs: map[string]string{}}
	for _, a := range h.attrs {
		rec.attrs[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool { rec.attrs[a.Key] = a.Value.String(); return true })
	h.mu.Lock()
	defer h.mu.Unlock()
	*h.recs = append(*h.recs, rec)
	return nil
}

func (h *recordHandler) WithAttrs(as []slog.Attr) slog.Handler {
	h2 := *h
	h2.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	return &h2
}

func (h *recordHandler) WithGroup(string) slog.Handler { return h }

func (h *recordHandler) records() []logRecord {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]logRecord(nil), *h.recs...)
}

// TestConnectionLog: every line of a session carries its connection id,
// the reply to DATA names the message with it, refusals name the session,
// and control characters from the client never reach the log raw.
func TestConnectionLog(t *testing.T) {
	rh := newRecordHandler()
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

	recs := rh.records()
	if len(recs) == 0 {
		t.Fatal("nothing logged")
	}
	conn := recs[0].attrs["conn"]
	if len(conn) != 8 {
		t.Fatalf("first line %q has conn %q", recs[0].msg, conn)
	}
	var accepted, refused, helo bool
	for _, r := range recs {
		if r.attrs["conn"] != conn {
			t.Errorf("line %q: conn %q, want %q", r.msg, r.attrs["conn"], conn)
		}
		for k, v := range r.attrs {
			if strings.ContainsAny(v, "\r\n\x1b\x7f") {
				t.Errorf("line %q: %s=%q carries a control character", r.msg, k, v)
			}
		}
		switch r.msg {
		case "message accepted":
			accepted = true
			if want := "OK: queued as " + r.attrs["id"]; !strings.HasPrefix(r.attrs["id"], conn+".") || !strings.HasSuffix(queuedAs, want) {
				t.Errorf("DATA reply %q, log line id %q", queuedAs, r.attrs["id"])
			}
		case "recipient refused":
			refused = r.attrs["rcpt"] == "bad\ufffdname@example.org"
		case "session started":
			helo = r.attrs["helo"] == "evil\ufffdhost\ufffd[2J.example"
		}
	}
	if !accepted || !refused || !helo {
		t.Errorf("accepted %v, refused %v, helo %v in log: %v", accepted, refused, helo, recs)
	}
	if !strings.HasSuffix(refusal, "(session "+conn+")") {
		t.Errorf("refusal %q does not name session %s", refusal, conn)
	}
}
