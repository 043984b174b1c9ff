package mailmap

import (
	"slices"
	"strings"
	"testing"
)

func TestParseMessageID(t *testing.T) {
	cases := []struct{ raw, want string }{
		{"Message-ID: <a@b>\r\n\r\n", "a@b"},
		{"Message-ID : <spaced@name>\n\n", "spaced@name"},
		{"Subject: x\r\n\tfolded subject\r\nMessage-ID:\r\n <f@g>\r\n\r\n", "f@g"},
		{"Message-ID: <unterminated@x\r\n\r\n", "unterminated@x"},
		{"Message-ID: <>\r\n\r\n", ""},
		{"Message-ID: <a b@c>\r\n\r\n", "ab@c"},
		{"Message-ID: <\xff\x00ok@x>\r\n\r\n", "ok@x"},
		{"no header end Message-ID: <x@y>", ""},
		{"", ""},
		{"\r\nMessage-ID: <after@blank>\r\n", ""},
		{"Message-ID: <" + strings.Repeat("x", 2000) + ">\r\n\r\n", strings.Repeat("x", maxMessageID)},
	}
	for _, c := range cases {
		if got := parseMessageID([]byte(c.raw)); got != c.want {
			t.Errorf("parseMessageID(%.40q) = %.40q, want %.40q", c.raw, got, c.want)
		}
	}
}

// FuzzParseMessageID: messages come from strangers; the parser must never
// panic and must return storable text.
func FuzzParseMessageID(f *testing.F) {
	f.Add([]byte("Message-ID: <a@b>\r\n\r\nbody"))
	f.Add([]byte("message-id:\r\n <folded@x>\r\n\r\n"))
	f.Add([]byte("Message-ID: <\xff\xfe@x>"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		id := parseMessageID(raw)
		if !validText(id, maxMessageID) {
			t.Fatalf("parseMessageID returned unstorable %q", id)
		}
		if strings.ContainsAny(id, " \t\r\n") {
			t.Fatalf("parseMessageID kept whitespace: %q", id)
		}
		if cleanMessageID(id) != id {
			t.Fatalf("cleanMessageID is not idempotent on %q", id)
		}
	})
}

func TestCanonicalMailboxName(t *testing.T) {
	good := map[string]string{
		"INBOX": "INBOX", "inbox": "INBOX", "Inbox/Sub": "INBOX/Sub", "INBOXES": "INBOXES",
		"a/b/c": "a/b/c", "Sent Items": "Sent Items", "Ünïcødé": "Ünïcødé", "[Gmail]/All": "[Gmail]/All",
	}
	for in, want := range good {
		got, err := canonicalMailboxName(in)
		if err != nil || got != want {
			t.Errorf("canonicalMailboxName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "/", "a/", "/a", "a//b", "a*", "b%", "c\x7f", "d\r", "\xff", strings.Repeat("x", 513)} {
		if _, err := canonicalMailboxName(bad); err == nil {
			t.Errorf("canonicalMailboxName(%q) accepted", bad)
		}
	}
}

func TestFlags(t *testing.T) {
	got, err := normFlags([]string{`\SEEN`, `\Recent`, "$Junk", "$junk", `\draft`})
	if err != nil || !slices.Equal(got, []string{"$Junk", `\Draft`, `\Seen`}) {
		t.Fatalf("normFlags = %v, %v", got, err)
	}
	cur := []string{"$A", `\Seen`}
	if got := applyFlags(cur, FlagsAdd, []string{"$a", "$B"}); !slices.Equal(got, []string{"$A", "$B", `\Seen`}) {
		t.Errorf("add = %v", got)
	}
	if got := applyFlags(cur, FlagsRemove, []string{"$a"}); !slices.Equal(got, []string{`\Seen`}) {
		t.Errorf("remove = %v", got)
	}
	if got := applyFlags(cur, FlagsReplace, nil); len(got) != 0 {
		t.Errorf("replace = %v", got)
	}
	for _, bad := range []string{`\Custom`, "a b", "x]", `"q"`, "é", ""} {
		if _, err := normFlags([]string{bad}); err == nil {
			t.Errorf("normFlags(%q) accepted", bad)
		}
	}
}

func TestPasswordHash(t *testing.T) {
	h, err := hashPassword("secret")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("hash format %q", h)
	}
	if ok, rehash := verifyPassword(h, "secret"); !ok || rehash {
		t.Fatalf("verify = %v, %v", ok, rehash)
	}
	if ok, _ := verifyPassword(h, "Secret"); ok {
		t.Fatal("wrong password accepted")
	}
	h2, _ := hashPassword("secret")
	if h2 == h {
		t.Fatal("two hashes share a salt")
	}
	// Older parameters verify and ask for a re-hash; tampered ones fail.
	old := strings.Replace(h, "m=19456,t=2", "m=19456,t=1", 1)
	if ok, _ := verifyPassword(old, "secret"); ok {
		t.Fatal("hash verified under other parameters")
	}
	for _, bad := range []string{"", "plain", "$argon2i$v=19$m=1,t=1,p=1$AAAA$AAAA", strings.Replace(h, "m=19456", "m=999999999", 1),
		strings.Replace(h, "t=2", "t=0", 1)} {
		if ok, _ := verifyPassword(bad, "secret"); ok {
			t.Fatalf("verifyPassword(%q) accepted", bad)
		}
	}
}

func TestKeySealer(t *testing.T) {
	k, err := newKeySealer(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	plain := []byte("0123456789abcdef0123456789abcdef")
	sealed, err := k.seal(plain, "ctx-a")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := k.open(sealed, "ctx-a"); err != nil || string(got) != string(plain) {
		t.Fatalf("open = %q, %v", got, err)
	}
	if _, err := k.open(sealed, "ctx-b"); err == nil {
		t.Fatal("opened under another context")
	}
	sealed[len(sealed)-1] ^= 1
	if _, err := k.open(sealed, "ctx-a"); err == nil {
		t.Fatal("opened a damaged value")
	}
	if _, err := k.open(nil, "ctx-a"); err == nil {
		t.Fatal("opened nothing")
	}
	if _, err := newKeySealer(make([]byte, 31)); err == nil {
		t.Fatal("accepted a 31-byte key")
	}
}

func TestHubNeverBlocks(t *testing.T) {
	h := newHub()
	ch, cancel := h.subscribe(1)
	for i := range 3 * subBuffer {
		h.publish([]Change{{UserID: 1, MailboxID: 5, Kind: ChangeNew, UID: uint32(i + 1)}})
	}
	if len(ch) != subBuffer+1 {
		t.Fatalf("buffered %d changes", len(ch))
	}
	for i := range subBuffer {
		if c := <-ch; c.UID != uint32(i+1) {
			t.Fatalf("change %d = %+v", i, c)
		}
	}
	if c := <-ch; c != resync(1) {
		t.Fatalf("after overflow got %+v, want the resync notice", c)
	}
	// Drained: new changes flow, and a later overflow gets a new notice.
	for i := range subBuffer + 5 {
		h.publish([]Change{{UserID: 1, MailboxID: 5, Kind: ChangeFlags, UID: uint32(i + 1)}})
	}
	n := 0
	for len(ch) > 0 {
		c := <-ch
		n++
		if n == subBuffer+1 && c != resync(1) {
			t.Fatalf("second overflow ended with %+v", c)
		}
	}
	cancel()
	cancel()
	if _, ok := <-ch; ok {
		t.Fatal("channel open after cancel")
	}
	h.close()
	ch2, _ := h.subscribe(2)
	if _, ok := <-ch2; ok {
		t.Fatal("subscription after close is open")
	}
}
