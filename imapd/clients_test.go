package imapd

import (
	"context"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bmgate/bmgate/mailmap"
)

// maildirFiles lists the message files of a local Maildir folder (cur and
// new), with their flag suffixes.
func maildirFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	for _, sub := range []string{"cur", "new"} {
		ents, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		for _, e := range ents {
			out = append(out, filepath.Join(dir, sub, e.Name()))
		}
	}
	slices.Sort(out)
	return out
}

func runTool(t *testing.T, timeout time.Duration, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestMbsync: isync's mbsync, a real Debian client, syncs an account over
// STARTTLS both ways: it pulls every folder with flags, pushes a message
// written locally (APPEND with APPENDUID), propagates a flag change and an
// expunge made on the server, and a second run is a no-op.
func TestMbsync(t *testing.T) {
	mbsync := needTool(t, "mbsync", "isync")
	serverTLS, _ := selfSignedTLS(t)
	st, u := openStore(t)
	e := serveStore(t, st, u, Config{TLSConfig: serverTLS}, false)
	ctx := context.Background()

	e.deliver("INBOX", mkMail("bob@example.test", "alice@example.test", "First", "one"), `\Seen`)
	e.deliver("INBOX", multipartMail)
	e.deliver("INBOX", mkMail("carol@example.test", "alice@example.test", "Third", "three"), `\Flagged`)
	e.deliver("Sent", mkMail("alice@example.test", "bob@example.test", "Reply", "sent"), `\Seen`)
	lists, err := st.CreateMailbox(ctx, u.ID, "Lists/go", "")
	if err != nil {
		t.Fatal(err)
	}
	e.deliver("Lists/go", mkMail("list@example.test", "alice@example.test", "Go 1.26 released", "news"))

	dir := t.TempDir()
	certFile := filepath.Join(dir, "cert.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: serverTLS.Certificates[0].Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(e.addr)
	local := filepath.Join(dir, "mail")
	cfg := filepath.Join(dir, "mbsyncrc")
	conf := fmt.Sprintf(`IMAPAccount imapd
Host %s
Port %s
User %s
Pass "%s"
SSLType STARTTLS
CertificateFile %s
AuthMechs PLAIN

IMAPStore remote
Account imapd

MaildirStore local
Path %s/
Inbox %s/INBOX
SubFolders Verbatim

Channel all
Far :remote:
Near :local:
Patterns *
Create Both
Expunge Both
SyncState *
Sync All
`, host, port, testUser, testPass, certFile, local, local)
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(local, 0o700); err != nil {
		t.Fatal(err)
	}
	sync := func() string { return runTool(t, time.Minute, mbsync, "-c", cfg, "-a") }

	t.Log(sync())
	inbox := maildirFiles(t, filepath.Join(local, "INBOX"))
	if len(inbox) != 3 {
		t.Fatalf("local INBOX has %d messages: %v", len(inbox), inbox)
	}
	var seen, flagged int
	for _, f := range inbox {
		_, info, _ := strings.Cut(filepath.Base(f), ":2,")
		if strings.Contains(info, "S") {
			seen++
		}
		if strings.Contains(info, "F") {
			flagged++
		}
	}
	if seen != 1 || flagged != 1 {
		t.Errorf("local flags: %d seen, %d flagged, want 1 and 1 (%v)", seen, flagged, inbox)
	}
	if got := maildirFiles(t, filepath.Join(local, "Lists", "go")); len(got) != 1 {
		t.Errorf("local Lists/go: %v", got)
	}
	if got := maildirFiles(t, filepath.Join(local, "Sent")); len(got) != 1 {
		t.Errorf("local Sent: %v", got)
	}
	b, _ := os.ReadFile(inbox[1])
	// mbsync stores with LF line ends and adds its X-TUID tracking header.
	local1 := regexp.MustCompile(`(?m)^X-TUID: .*\n`).ReplaceAllString(string(b), "")
	if local1 != strings.ReplaceAll(multipartMail, "\r\n", "\n") {
		t.Errorf("local copy of the multipart message differs:\n%q", b)
	}

	// Changes on both sides.
	if _, err := st.UpdateFlags(ctx, u.ID, e.inbox.ID, []uint32{2}, mailmap.FlagsAdd, []string{`\Answered`}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.UpdateFlags(ctx, u.ID, e.inbox.ID, []uint32{1}, mailmap.FlagsAdd, []string{`\Deleted`}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Expunge(ctx, u.ID, e.inbox.ID, nil); err != nil {
		t.Fatal(err)
	}
	pushed := "From: alice@example.test\nTo: list@example.test\nSubject: Written offline\nMessage-ID: <offline@example.test>\n\nhello from the laptop\n"
	if err := os.WriteFile(filepath.Join(local, "Lists", "go", "new", "1700000000.1_1.laptop"), []byte(pushed), 0o600); err != nil {
		t.Fatal(err)
	}

	t.Log(sync())
	msgs, err := st.Messages(ctx, u.ID, lists.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 2 || msgs[1].MessageID != "offline@example.test" {
		t.Fatalf("server Lists/go after push: %+v", msgs)
	}
	if raw, _ := st.MessageRaw(ctx, u.ID, lists.ID, msgs[1].UID); !strings.Contains(string(raw), "hello from the laptop") {
		t.Errorf("pushed message on the server: %q", raw)
	}
	inbox = maildirFiles(t, filepath.Join(local, "INBOX"))
	if len(inbox) != 2 {
		t.Errorf("server expunge not propagated: %v", inbox)
	}
	answered := 0
	for _, f := range inbox {
		if _, info, _ := strings.Cut(filepath.Base(f), ":2,"); strings.Contains(info, "R") {
			answered++
		}
	}
	if answered != 1 {
		t.Errorf("\\Answered not propagated: %v", inbox)
	}

	// Nothing left to do.
	out := sync()
	if strings.Contains(out, "Error") {
		t.Errorf("third sync: %s", out)
	}
	if got := maildirFiles(t, filepath.Join(local, "Lists", "go")); len(got) != 2 {
		t.Errorf("local Lists/go after the round trip: %v", got)
	}
}

// TestPythonImaplib: Python's imaplib, a strict second client, over
// STARTTLS with certificate verification.
func TestPythonImaplib(t *testing.T) {
	python := needTool(t, "python3", "python3")
	serverTLS, _ := selfSignedTLS(t)
	st, u := openStore(t)
	e := serveStore(t, st, u, Config{TLSConfig: serverTLS}, false)
	e.deliver("INBOX", multipartMail)
	e.deliver("INBOX", mkMail("bob@example.test", "alice@example.test", "Hello", "plain text"))

	dir := t.TempDir()
	certFile := filepath.Join(dir, "cert.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: serverTLS.Certificates[0].Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(e.addr)
	script := `
import imaplib, ssl, sys, email
host, port, user, pw, cafile = sys.argv[1:6]
ctx = ssl.create_default_context(cafile=cafile)
M = imaplib.IMAP4(host, int(port))
assert "STARTTLS" in M.capabilities and "LOGINDISABLED" in M.capabilities, M.capabilities
M.starttls(ssl_context=ctx)
typ, _ = M.login(user, pw)
assert typ == "OK"
typ, caps = M.capability()
for c in (b"IMAP4rev2", b"IDLE", b"UIDPLUS", b"MOVE", b"SPECIAL-USE", b"NAMESPACE"):
    assert c in caps[0], caps
typ, boxes = M.list()
names = [b.decode() for b in boxes]
assert any('\\Sent' in b and b.endswith(' "Sent"') for b in names), names
typ, data = M.select("INBOX")
assert data == [b"2"], data
typ, data = M.uid("SEARCH", None, "FROM", "bob")
assert data == [b"1 2"], data
typ, data = M.uid("FETCH", "1", "(RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODYSTRUCTURE)")
assert typ == "OK", data
typ, data = M.fetch("2", "(RFC822)")
msg = email.message_from_bytes(data[0][1])
assert msg["Subject"] == "Hello", msg["Subject"]
typ, data = M.fetch("2", "(FLAGS)")
assert b"\\Seen" in data[0], data
typ, data = M.uid("STORE", "1", "+FLAGS", "($Delivered)")
assert b"$Delivered" in data[0], data
typ, data = M.append("Drafts", "(\\Draft)", imaplib.Time2Internaldate(1795000000), b"Subject: draft\r\n\r\nbody\r\n")
assert typ == "OK" and b"APPENDUID" in data[0], data
typ, data = M.uid("MOVE", "2", "Trash")
assert typ == "OK", data
typ, data = M.status("Trash", "(MESSAGES UIDNEXT)")
assert b"MESSAGES 1" in data[0], data
typ, data = M.create("Archive/2026")
assert typ == "OK", data
typ, data = M.rename("Archive/2026", "Archive/old")
assert typ == "OK", data
typ, data = M.delete("Archive/old")
assert typ == "OK", data
typ, data = M.lsub()
assert any(b.endswith(b" INBOX") for b in data), data
M.close()
M.logout()
print("ok")
`
	out := runTool(t, time.Minute, python, "-c", script, host, port, testUser, testPass, certFile)
	if strings.TrimSpace(out) != "ok" {
		t.Fatalf("imaplib script: %s", out)
	}
	ctx := context.Background()
	drafts, _ := st.Mailbox(ctx, u.ID, "Drafts")
	if msgs, _ := st.Messages(ctx, u.ID, drafts.ID); len(msgs) != 1 || !slices.Contains(msgs[0].Flags, `\Draft`) {
		t.Errorf("Drafts after imaplib APPEND: %+v", msgs)
	}
	if msgs, _ := st.Messages(ctx, u.ID, e.inbox.ID); len(msgs) != 1 || !slices.Contains(msgs[0].Flags, "$Delivered") {
		t.Errorf("INBOX after imaplib: %+v", msgs)
	}
}
