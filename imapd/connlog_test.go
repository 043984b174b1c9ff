package imapd

import (
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/bmgate/bmgate/mailmap/logsafe/logtest"
)

// TestConnectionLog: every line of a connection carries its id, a
// server-side NO names the session with it, and control characters in a
// login name never reach the log raw.
func TestConnectionLog(t *testing.T) {
	st, u := openStore(t)
	fs := &failingStore{Store: st, fail: map[string]error{}}
	rh := logtest.New()
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

	recs := rh.Records()
	if len(recs) == 0 {
		t.Fatal("nothing logged")
	}
	conn := recs[0].Attrs["conn"]
	if len(conn) != 8 {
		t.Fatalf("first line %q has conn %q", recs[0].Msg, conn)
	}
	var sawUser bool
	for _, rec := range recs {
		if rec.Attrs["conn"] != conn {
			t.Errorf("line %q: conn %q, want %q", rec.Msg, rec.Attrs["conn"], conn)
		}
		for k, v := range rec.Attrs {
			if strings.ContainsAny(v, "\r\n\x1b") || strings.Contains(v, "\xff") {
				t.Errorf("line %q: %s=%q is not clean", rec.Msg, k, v)
			}
		}
		if rec.Attrs["user"] == "evil\ufffd\ufffd\ufffd[2Juser\ufffd" {
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
