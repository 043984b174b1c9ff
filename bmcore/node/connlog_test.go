package node

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bmgate/bmgate/bmcore/wire"
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

// TestConnectionLog: every line about a peer connection carries its
// connection id (one per connection), and a user agent with control
// characters does not reach the log raw.
func TestConnectionLog(t *testing.T) {
	rh := newRecordHandler()
	cfg := testConfig(t)
	cfg.Logger = slog.New(rh)
	n := startNode(t, cfg)
	var peers []*rawPeer
	for _, ua := range []string{"/evil\r\nlevel=ERROR msg=forged\x1b[2J:1.0/", "/bad\xffutf8/"} {
		r := dialRaw(t, addrOf(n))
		r.userAgent = ua
		r.handshake()
		peers = append(peers, r)
	}
	waitFor(t, 5*time.Second, "both established", func() bool { return n.Stats().PeersInbound == 2 })
	for _, r := range peers {
		r.send("bogus\x1bcmd", nil)
		r.send(wire.CmdPing, nil)
		r.next(5*time.Second, wire.CmdPong)
		r.conn.Close()
	}
	waitFor(t, 5*time.Second, "both gone", func() bool { return n.Stats().PeersInbound == 0 })

	ids := map[string]string{} // peer address → conn id
	uas := 0
	for _, rec := range rh.records() {
		for k, v := range rec.attrs {
			if strings.ContainsAny(v, "\r\n\x1b") || strings.Contains(v, "\xff") {
				t.Errorf("line %q: %s=%q is not clean", rec.msg, k, v)
			}
		}
		addr, ok := rec.attrs["peer"]
		if !ok {
			continue
		}
		conn := rec.attrs["conn"]
		if len(conn) != 8 {
			t.Errorf("line %q about %s: conn %q", rec.msg, addr, conn)
		}
		if have, ok := ids[addr]; ok && have != conn {
			t.Errorf("line %q about %s: conn %q, earlier lines %q", rec.msg, addr, conn, have)
		}
		ids[addr] = conn
		if ua, ok := rec.attrs["user_agent"]; ok && strings.Contains(ua, "\ufffd") {
			uas++
		}
	}
	if len(ids) != 2 || uas != 2 {
		t.Fatalf("conn ids by peer %v, cleaned user agents %d", ids, uas)
	}
	var distinct []string
	for _, id := range ids {
		distinct = append(distinct, id)
	}
	if distinct[0] == distinct[1] {
		t.Errorf("two connections share conn id %s", distinct[0])
	}
}
