package imapd

import (
	"context"
	"errors"
	"log/slog"
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

// TestConnectionLog: every line of a connection carries its id, a
// server-side NO names the session with it, and control characters in a
// login name never reach the log raw.
func TestConnectionLog(t *testing.T) {
	st, u := openStore(t)
	fs := &failingStore{Store: st, fail: map[string]error{}}
	rh := newRecordHandler()
	e := serveStore(t, fs, u, Config{AllowInsecureAuth: true, Logger: slog.New(rh)}, false)
	r := e.raw()
	bad := "evil\r\n\x1b[2Juser\xff"
	if _, tagged := r.cmd("LOGIN {%d+}\r\n%s x", len(bad), bad); !strings.HasPrefix(tagged, "NO") {
		t.Fatalf("LOGIN as %q: %s", bad, tagged)
	}
	r.ok("LOGIN %s %q", testUser, testPass)
	fs.set("Mailboxes", errors.New("the store is broken"))
	_, tagged := r.cmd(`LIST "" "*"`)
	r.cmd("LOGOUT")

	recs := rh.records()
	if len(recs) == 0 {
		t.Fatal("nothing logged")
	}
	conn := recs[0].attrs["conn"]
	if len(conn) != 8 {
		t.Fatalf("first line %q has conn %q", recs[0].msg, conn)
	}
	var sawUser bool
	for _, rec := range recs {
		if rec.attrs["conn"] != conn {
			t.Errorf("line %q: conn %q, want %q", rec.msg, rec.attrs["conn"], conn)
		}
		for k, v := range rec.attrs {
			if strings.ContainsAny(v, "\r\n\x1b") || strings.Contains(v, "\xff") {
				t.Errorf("line %q: %s=%q is not clean", rec.msg, k, v)
			}
		}
		if rec.attrs["user"] == "evil\ufffd\ufffd\ufffd[2Juser\ufffd" {
			sawUser = true
		}
	}
	if !sawUser {
		t.Errorf("the refused login name is not in the log: %v", recs)
	}
	if !strings.HasPrefix(tagged, "NO [SERVERBUG]") || !strings.HasSuffix(tagged, "(session "+conn+")") {
		t.Errorf("LIST with a broken store: %q, want NO [SERVERBUG] naming session %s", tagged, conn)
	}
}
