package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bmgate/bmgate/bmcore/identity"
	"github.com/bmgate/bmgate/mailmap"
)

// The fixtures in testdata/pybitmessage were made by a real PyBitmessage
// 0.6.3.2 (see its README). Their addresses:
const (
	fxAlice = "BM-2cWbC36oewstAaFUGtmdJeAYfa9YrFLqSx"
	fxBob   = "BM-2cXhrDBBtAV63R4PQRxjzR5see1KzRi8Tz"
	fxDet   = "BM-2cUKQ63RcjSDLF2kvg8pfJJ4ZDQEH6NQHT"
	fxChan  = "BM-2cWTiU4zMfh9seRuFPMqvARHv9uSXYgr8z"
	fxNews  = "BM-2cWvyg8ES1D2ZU9b41mVx6psqnhbBg11y5" // subscribed, "Fixture News"
	fxCarol = "BM-2cThdqtbLtF8s4vdLozAFxyGpRjHMRjDsY" // address book, "Carol Friend"
	fxDave  = "BM-2cVEALbyj42ZoCX3fzYg33v7o6rRMYX5Z1" // deleted from keys.dat; a sent message to it awaits its ack
	fxAck   = "0000000201018e1544f38c332f11e055b50d268dac65f2d1e1a06e00b15c8719526c7d2a2904"
)

// pybFixture copies the fixtures to a directory of the test's own.
func pybFixture(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"keys.dat", "messages.dat"} {
		data, err := os.ReadFile(filepath.Join("testdata", "pybitmessage", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// editKeys rewrites the copied keys.dat.
func editKeys(t *testing.T, dir string, edit func(string) string) {
	t.Helper()
	p := filepath.Join(dir, "keys.dat")
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	out := edit(string(data))
	if out == string(data) {
		t.Fatal("edit changed nothing")
	}
	if err := os.WriteFile(p, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
}

// keysValue returns an option of a section of a keys.dat text.
func keysValue(t *testing.T, keys, section, option string) string {
	t.Helper()
	secs, err := parseINI([]byte(keys))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secs {
		if s.name == section {
			if v, ok := s.get(option); ok {
				return v
			}
		}
	}
	t.Fatalf("no %s in [%s]", option, section)
	return ""
}

// folderMessages returns the raw messages of a folder, in UID order, with
// their metadata.
func folderMessages(t *testing.T, st mailmap.Store, userID int64, name string) ([]mailmap.Message, [][]byte) {
	t.Helper()
	ctx := context.Background()
	mb, err := st.Mailbox(ctx, userID, name)
	if err != nil {
		t.Fatalf("folder %s: %v", name, err)
	}
	msgs, err := st.Messages(ctx, userID, mb.ID)
	if err != nil {
		t.Fatal(err)
	}
	var raws [][]byte
	for _, m := range msgs {
		raw, err := st.MessageRaw(ctx, userID, mb.ID, m.UID)
		if err != nil {
			t.Fatal(err)
		}
		raws = append(raws, raw)
	}
	return msgs, raws
}

// parsed is a filed mail, decoded.
type parsed struct {
	subject, from, to, body string
	date                    time.Time
	seen                    bool
	flags                   []string
}

func parseMails(t *testing.T, msgs []mailmap.Message, raws [][]byte) []parsed {
	t.Helper()
	var out []parsed
	for i, raw := range raws {
		m, err := mail.ReadMessage(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("filed mail does not parse: %v\n%s", err, raw)
		}
		subj, err := new(mime.WordDecoder).DecodeHeader(m.Header.Get("Subject"))
		if err != nil {
			t.Fatal(err)
		}
		date, err := m.Header.Date()
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(m.Body)
		if err != nil {
			t.Fatal(err)
		}
		if cte := m.Header.Get("Content-Transfer-Encoding"); cte != "7bit" && cte != "8bit" {
			body = decodeCTE(t, cte, body)
		}
		out = append(out, parsed{subject: subj, from: m.Header.Get("From"), to: m.Header.Get("To"), body: string(body),
			date: date, seen: slices.Contains(msgs[i].Flags, `\Seen`), flags: msgs[i].Flags})
	}
	return out
}

func folderMails(t *testing.T, st mailmap.Store, userID int64, name string) []parsed {
	t.Helper()
	msgs, raws := folderMessages(t, st, userID, name)
	return parseMails(t, msgs, raws)
}

func find(t *testing.T, ms []parsed, subject string) parsed {
	t.Helper()
	for _, m := range ms {
		if m.subject == subject {
			return m
		}
	}
	t.Fatalf("no mail with subject %q in %+v", subject, ms)
	return parsed{}
}

// storeState is what an import writes, for "nothing written" checks.
func storeState(t *testing.T, st mailmap.Store, userID int64) string {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	ids, err := st.Identities(ctx, userID)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		b.WriteString("id " + id.Address + " " + id.Label + "\n")
	}
	cs, _ := st.Contacts(ctx, userID)
	for _, c := range cs {
		b.WriteString("contact " + c.Alias + "\n")
	}
	ss, _ := st.Subscriptions(ctx, userID)
	for _, s := range ss {
		b.WriteString("sub " + s.Address + "\n")
	}
	mbs, _ := st.Mailboxes(ctx, userID)
	for _, mb := range mbs {
		msgs, _ := st.Messages(ctx, userID, mb.ID)
		b.WriteString("folder " + mb.Name + " " + strings.Repeat("*", len(msgs)) + "\n")
	}
	out, _ := st.UserOutbox(ctx, userID)
	for _, it := range out {
		b.WriteString("outbox " + it.ToAddress + "\n")
	}
	mode, _ := st.ListMode(ctx, userID)
	b.WriteString("list mode " + string(mode) + "\n")
	ls, _ := st.ListEntries(ctx, userID)
	for _, e := range ls {
		fmt.Fprintf(&b, "list %s %s %q %v\n", e.Kind, e.Address, e.Label, e.Enabled)
	}
	return b.String()
}

func TestImportPyBitmessageFixture(t *testing.T) {
	for name, mk := range backendEnvs(t) {
		t.Run(name, func(t *testing.T) {
			env := mk(t)
			ctx := context.Background()
			dir := pybFixture(t)
			mustRun(t, env, "pw\n", "user", "add", "alice")
			st := openTestStore(t, env)
			u, err := st.UserByName(ctx, "alice")
			if err != nil {
				t.Fatal(err)
			}
			empty := storeState(t, st, u.ID)
			out := mustRun(t, env, "", "import", "pybitmessage", "--dry-run", "--user", "alice", dir)
			if !strings.Contains(out, "would import for alice: 4 identities") || !strings.Contains(out, "INBOX: 2") {
				t.Errorf("dry run summary:\n%s", out)
			}
			if got := storeState(t, st, u.ID); got != empty {
				t.Errorf("the dry run wrote:\n%s", got)
			}
			out = mustRun(t, env, "", "import", "pybitmessage", "--user", "alice", dir)
			for _, want := range []string{
				"4 identities (3 addresses, 1 chan), 0 already there",
				"INBOX: 2 new, 0 already there",
				"Sent: 4 new, 0 already there",
				"Trash: 1 new, 0 already there",
				"Chans/chan-2cWTiU4zMf: 1 new",
				"outbox (awaiting an ack): 1 new",
				"subscriptions: 2 new",
				"contacts: 2 new",
				"carol.friend@bmaddr.lan → " + fxCarol,
				"sender lists (blacklist mode): 1 new, 0 already there",
			} {
				if !strings.Contains(out, want) {
					t.Errorf("summary lacks %q:\n%s", want, out)
				}
			}
			keys, err := os.ReadFile(filepath.Join(dir, "keys.dat"))
			if err != nil {
				t.Fatal(err)
			}

			// Identities, their kinds, labels, difficulty and keys.
			ids, err := st.Identities(ctx, u.ID)
			if err != nil {
				t.Fatal(err)
			}
			byAddr := map[string]mailmap.Identity{}
			for _, id := range ids {
				byAddr[id.Address] = id
			}
			for addr, want := range map[string]struct {
				label string
				kind  mailmap.IdentityKind
			}{
				fxAlice: {"Alice", mailmap.KindNormal},
				fxBob:   {"Bob Ünïcode", mailmap.KindNormal},
				fxDet:   {"unused API address", mailmap.KindNormal},
				fxChan:  {"chan-2cWTiU4zMf", mailmap.KindChan},
			} {
				id, ok := byAddr[addr]
				if !ok {
					t.Errorf("%s not imported", addr)
					continue
				}
				if id.Label != want.label || id.Kind != want.kind || id.NonceTrialsPerByte != 1000 || id.ExtraBytes != 1000 {
					t.Errorf("%s: label %q kind %s difficulty %d/%d; want %q %s 1000/1000", addr, id.Label, id.Kind,
						id.NonceTrialsPerByte, id.ExtraBytes, want.label, want.kind)
				}
				if id.PublishPubkey != (want.kind == mailmap.KindNormal) {
					t.Errorf("%s: publish pubkey %v", addr, id.PublishPubkey)
				}
				if got := identity.EncodeWIF(id.SigningKey); got != keysValue(t, string(keys), addr, "privsigningkey") {
					t.Errorf("%s: signing key differs from keys.dat", addr)
				}
				if got := identity.EncodeWIF(id.EncryptionKey); got != keysValue(t, string(keys), addr, "privencryptionkey") {
					t.Errorf("%s: encryption key differs from keys.dat", addr)
				}
			}
			if len(ids) != 4 {
				t.Errorf("%d identities, want 4", len(ids))
			}
			if got := byAddr[fxChan].ChanPassphrase; got != "bmgate-fixture-chan" {
				t.Errorf("chan passphrase %q, want the one its PyBitmessage label named", got)
			}
			if got := byAddr[fxAlice].LastPubkeySent; !got.Equal(time.Unix(1796420599, 0)) {
				t.Errorf("alice's last pubkey time %v", got)
			}

			// Folders, messages, dates, read flags.
			counts := map[string]int{"INBOX": 2, "Sent": 4, "Trash": 1, "Drafts": 0, "Chans/chan-2cWTiU4zMf": 1, "Subscriptions/Fixture News": 0}
			for f, n := range counts {
				msgs, _ := folderMessages(t, st, u.ID, f)
				if len(msgs) != n {
					t.Errorf("%s: %d messages, want %d", f, len(msgs), n)
				}
			}
			inbox := folderMails(t, st, u.ID, "INBOX")
			hello := find(t, inbox, "Hello Bob")
			if !hello.seen || hello.body != "First message, from Alice to Bob.\r\nSecond line.\r\n" ||
				!hello.date.Equal(time.Unix(1796420612, 0)) || hello.from != "<"+fxAlice+"@bmaddr.lan>" || hello.to != "<"+fxBob+"@bmaddr.lan>" {
				t.Errorf("Hello Bob: %+v", hello)
			}
			gr := find(t, inbox, "Grüße zurück")
			if gr.seen || gr.body != "Antwort von Bob: ÄÖÜ ✓\r\n" || !gr.date.Equal(time.Unix(1796420613, 0)) {
				t.Errorf("Grüße zurück: %+v", gr)
			}
			post := find(t, folderMails(t, st, u.ID, "Chans/chan-2cWTiU4zMf"), "Chan post")
			if post.to != `"chan-2cWTiU4zMf" <`+fxChan+"@bmaddr.lan>" {
				t.Errorf("chan post To: %q", post.to)
			}
			trash := folderMails(t, st, u.ID, "Trash")
			if tr := find(t, trash, "To be trashed"); tr.body != "This one goes to the trash.\r\n" {
				t.Errorf("trash: %+v", tr)
			}
			sent := folderMails(t, st, u.ID, "Sent")
			if s := find(t, sent, "Awaiting an ack"); !s.seen || !s.date.Equal(time.Unix(1796420730, 0)) || s.to != "<"+fxDave+"@bmaddr.lan>" {
				t.Errorf("sent Awaiting an ack: %+v", s)
			}

			// The sent message awaiting its ack is in the outbox, state sent,
			// with PyBitmessage's ackdata.
			ack, _ := hex.DecodeString(fxAck)
			it, err := st.OutboxByAckData(ctx, ack)
			if err != nil {
				t.Fatalf("outbox row by ackdata: %v", err)
			}
			if it.State != mailmap.OutboxSent || it.FromAddress != fxAlice || it.ToAddress != fxDave || it.Kind != mailmap.OutboxMsg ||
				it.Subject != "Awaiting an ack" || it.TTL != 4*24*time.Hour || it.UserID != u.ID || it.MessageID == "" {
				t.Errorf("outbox row: %+v", it)
			}
			// Its Message-ID is its Sent copy's, so the ack marks that copy.
			if copies, err := st.FindByMessageID(ctx, u.ID, mailmap.SpecialSent, it.MessageID); err != nil || len(copies) != 1 {
				t.Errorf("Sent copy of the outbox row %q: %+v, %v", it.MessageID, copies, err)
			}

			// Subscriptions and contacts.
			subs, err := st.Subscriptions(ctx, u.ID)
			if err != nil || len(subs) != 2 || subs[1].Address != fxNews || subs[1].Label != "Fixture News" {
				t.Errorf("subscriptions: %+v, %v", subs, err)
			}
			if a, err := st.ResolveAlias(ctx, u.ID, "Carol.Friend@bmaddr.lan"); err != nil || a != fxCarol {
				t.Errorf("alias carol.friend: %q, %v", a, err)
			}
			if a, err := st.ResolveAlias(ctx, u.ID, "alice.self@bmaddr.lan"); err != nil || a != fxAlice {
				t.Errorf("alias alice.self: %q, %v", a, err)
			}

			// PyBitmessage's blacklist is alice's.
			const fxSpammer = "BM-2cVQaKae7QZbruNxdpJ4HV97kvXPBMhpPR"
			if ls, err := st.ListEntries(ctx, u.ID); err != nil || len(ls) != 1 || ls[0].Kind != mailmap.Blacklist ||
				ls[0].Address != fxSpammer || ls[0].Label != "Spammer" || !ls[0].Enabled {
				t.Errorf("imported sender lists: %+v, %v", ls, err)
			}
			if ok, _, err := st.SenderAllowed(ctx, u.ID, fxSpammer); err != nil || ok {
				t.Errorf("the imported blacklist lets its entry through: %v, %v", ok, err)
			}

			// Again: nothing changes.
			before := storeState(t, st, u.ID)
			out = mustRun(t, env, "", "import", "pybitmessage", "--user", "alice",
				filepath.Join(dir, "keys.dat"), filepath.Join(dir, "messages.dat"))
			for _, want := range []string{"0 identities (0 addresses, 0 chans), 4 already there", "INBOX: 0 new, 2 already there",
				"Sent: 0 new, 4 already there", "outbox (awaiting an ack): 0 new, 1 already there", "contacts: 0 new, 2 already there",
				"sender lists (blacklist mode): 0 new, 1 already there"} {
				if !strings.Contains(out, want) {
					t.Errorf("second import's summary lacks %q:\n%s", want, out)
				}
			}
			if after := storeState(t, st, u.ID); after != before {
				t.Errorf("second import changed the store:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}

// withDB edits the copied messages.dat with SQL.
func withDB(t *testing.T, dir string, stmts ...string) {
	t.Helper()
	db, err := sql.Open("sqlite", filepath.Join(dir, "messages.dat"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, s := range stmts {
		if _, err := db.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

func TestImportPyBitmessageBadInput(t *testing.T) {
	for name, mk := range backendEnvs(t) {
		t.Run(name, func(t *testing.T) {
			env := mk(t)
			ctx := context.Background()
			mustRun(t, env, "pw\n", "user", "add", "alice")
			mustRun(t, env, "pw\n", "user", "add", "bob")
			st := openTestStore(t, env)
			alice, err := st.UserByName(ctx, "alice")
			if err != nil {
				t.Fatal(err)
			}
			empty := storeState(t, st, alice.ID)

			fail := func(what, want string, args ...string) {
				t.Helper()
				mustFail(t, env, 1, want, append([]string{"import", "pybitmessage", "--user", "alice"}, args...)...)
				if got := storeState(t, st, alice.ID); got != empty {
					t.Errorf("%s: the failed import wrote:\n%s", what, got)
				}
			}
			fail("missing dir", "no such file", filepath.Join(t.TempDir(), "nothing"))
			fail("dir without keys.dat", "has no keys.dat", t.TempDir())
			dir := pybFixture(t)
			fail("missing messages.dat", "no such file", filepath.Join(dir, "keys.dat"), filepath.Join(dir, "none.dat"))

			// Not a database, and a damaged one.
			dir = pybFixture(t)
			os.WriteFile(filepath.Join(dir, "messages.dat"), []byte("this is not sqlite"), 0o600)
			fail("not a database", "is not an SQLite database", dir)
			dir = pybFixture(t)
			db, _ := os.ReadFile(filepath.Join(dir, "messages.dat"))
			for i := 4096; i < len(db); i++ { // every page after the first
				db[i] ^= 0x5a
			}
			os.WriteFile(filepath.Join(dir, "messages.dat"), db, 0o600)
			fail("damaged database", "messages.dat is damaged", dir)
			dir = pybFixture(t)
			withDB(t, dir, `DROP TABLE addressbook`)
			fail("no addressbook table", "table addressbook", dir)

			// A wrong WIF (checksum) and keys that give another address.
			dir = pybFixture(t)
			editKeys(t, dir, func(s string) string {
				return strings.Replace(s, "5HubBAxFGNKzJ5hM5629KEFmS8v6atZWM5FLNQW5SbSBw9rLGLm", "5HubBAxFGNKzJ5hM5629KEFmS8v6atZWM5FLNQW5SbSBw9rLGLn", 1)
			})
			fail("wrong WIF", "["+fxAlice+"]: privsigningkey", dir)
			dir = pybFixture(t)
			editKeys(t, dir, func(s string) string {
				return strings.Replace(s, "5HubBAxFGNKzJ5hM5629KEFmS8v6atZWM5FLNQW5SbSBw9rLGLm", "5KhYNjB1TJcUHAaPGRRTbZHEvs5kRjap89g5ybpVYdokJte6dAf", 1)
			})
			fail("address mismatch", "its private keys give the address", dir)
			dir = pybFixture(t)
			editKeys(t, dir, func(s string) string { return strings.Replace(s, "[bitmessagesettings]", "[settings]", 1) })
			fail("no settings", "no [bitmessagesettings]", dir)

			// A failure while writing (here: alice's quota) undoes the
			// whole import, identities included.
			if err := st.SetQuota(ctx, alice.ID, 2000); err != nil {
				t.Fatal(err)
			}
			fail("over quota", "over quota", pybFixture(t))
			if err := st.SetQuota(ctx, alice.ID, 0); err != nil {
				t.Fatal(err)
			}

			// An address another user owns: bob imports first. The chan may
			// be shared, the addresses not.
			mustRun(t, env, "", "import", "pybitmessage", "--user", "bob", filepath.Join(pybFixture(t), "keys.dat"))
			fail("owned by bob", fxAlice+` belongs to user "bob"`, pybFixture(t))
			chanOnly := filepath.Join(t.TempDir(), "keys.dat")
			keys, _ := os.ReadFile(filepath.Join(dir, "keys.dat"))
			i := strings.Index(string(keys), "["+fxChan+"]")
			os.WriteFile(chanOnly, []byte("[bitmessagesettings]\nsettingsversion = 10\n\n"+string(keys[i:])), 0o600)
			if out := mustRun(t, env, "", "import", "pybitmessage", "--user", "alice", chanOnly); !strings.Contains(out, "1 chan)") {
				t.Errorf("joining bob's chan: %s", out)
			}
		})
	}
}

func TestImportPyBitmessageKinds(t *testing.T) {
	env := testEnv(t)
	ctx := context.Background()
	mustRun(t, env, "pw\n", "user", "add", "alice")
	dir := pybFixture(t)
	// A mailing list, a disabled and a decoy address, difficulty of their
	// own, a chan renamed by its user (its label is no longer the
	// passphrase), a message not yet sent, and a received broadcast.
	editKeys(t, dir, func(s string) string {
		s = strings.Replace(s, "label = Bob Ünïcode\n", "label = Bob Ünïcode\nmailinglist = true\nmailinglistname = Bob's list\n", 1)
		s = strings.Replace(s, "label = unused API address\nenabled = true\ndecoy = false\nnoncetrialsperbyte = 1000\npayloadlengthextrabytes = 1000",
			"label = unused API address\nenabled = false\ndecoy = true\nnoncetrialsperbyte = 2000\npayloadlengthextrabytes = 3000", 1)
		s = strings.Replace(s, "blackwhitelist = black", "blackwhitelist = white", 1)
		return strings.Replace(s, "label = [chan] bmgate-fixture-chan", "label = Our chan", 1)
	})
	withDB(t, dir,
		`UPDATE sent SET status = 'awaitingpubkey', msgid = '' WHERE subject = 'Hello Bob'`,
		`INSERT INTO inbox VALUES (x'`+strings.Repeat("ab", 32)+`', '[Broadcast subscribers]', '`+fxNews+`', 'News!', '1796420000', 'Broadcast body', 'inbox', 2, 1, x'00')`)
	out := mustRun(t, env, "", "import", "pybitmessage", "--user", "alice", dir)
	for _, want := range []string{
		fxBob + ` is a PyBitmessage mailing list ("Bob's list"): it stays one`,
		fxDet + " is disabled in keys.dat",
		fxDet + " is a decoy in keys.dat",
		"chan " + fxChan + ": its label is not its passphrase",
		`sent message "Hello Bob" to ` + fxBob + " was not sent by PyBitmessage (status awaitingpubkey): filed in Drafts",
		"Subscriptions/Fixture News: 1 new",
		"PyBitmessage used its whitelist: so does bmgate for alice",
		"sender lists (whitelist mode): 1 new",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	st := openTestStore(t, env)
	u, _ := st.UserByName(ctx, "alice")
	if mode, err := st.ListMode(ctx, u.ID); err != nil || mode != mailmap.Whitelist {
		t.Errorf("list mode after importing a whitelist user: %q, %v", mode, err)
	}
	ids, _ := st.Identities(ctx, u.ID)
	for _, id := range ids {
		switch id.Address {
		case fxBob:
			if !id.MailingList || id.MailingListName != "Bob's list" {
				t.Errorf("mailing list not imported: %+v", id)
			}
		case fxDet:
			if id.NonceTrialsPerByte != 2000 || id.ExtraBytes != 3000 || id.Kind != mailmap.KindNormal {
				t.Errorf("det: %+v", id)
			}
		case fxChan:
			if id.Label != "Our chan" || id.ChanPassphrase != "" || id.Kind != mailmap.KindChan {
				t.Errorf("renamed chan: label %q passphrase %q kind %s", id.Label, id.ChanPassphrase, id.Kind)
			}
		}
	}
	drafts := folderMails(t, st, u.ID, "Drafts")
	if len(drafts) != 1 || drafts[0].subject != "Hello Bob" {
		t.Errorf("drafts: %+v", drafts)
	}
	news := folderMails(t, st, u.ID, "Subscriptions/Fixture News")
	if len(news) != 1 || news[0].to != "undisclosed-recipients:;" || !news[0].seen {
		t.Errorf("broadcast: %+v", news)
	}
	if msgs, _ := folderMessages(t, st, u.ID, "Chans/Our chan"); len(msgs) != 1 {
		t.Errorf("Chans/Our chan: %d messages", len(msgs))
	}

	// Another user who already has a chan named "Our chan": the imported
	// one gets a name of its own.
	mustRun(t, env, "pw\n", "user", "add", "bob")
	mustRun(t, env, "", "chan", "join", "--user", "bob", "--name", "Our chan", "another passphrase")
	chanOnly := filepath.Join(t.TempDir(), "keys.dat")
	keys, _ := os.ReadFile(filepath.Join(dir, "keys.dat"))
	os.WriteFile(chanOnly, []byte("[bitmessagesettings]\nsettingsversion = 10\n\n"+string(keys[strings.Index(string(keys), "["+fxChan+"]"):])), 0o600)
	out = mustRun(t, env, "", "import", "pybitmessage", "--user", "bob", chanOnly)
	if !strings.Contains(out, "named chan-2cWTiU4zMf, since another chan of bob is named \"Our chan\"") {
		t.Errorf("summary:\n%s", out)
	}
	bob, _ := st.UserByName(ctx, "bob")
	if _, err := st.Mailbox(ctx, bob.ID, "Chans/chan-2cWTiU4zMf"); err != nil {
		t.Errorf("bob's imported chan folder: %v", err)
	}
}

func TestExportKeysRoundTrip(t *testing.T) {
	for name, mk := range backendEnvs(t) {
		t.Run(name, func(t *testing.T) {
			env := mk(t)
			ctx := context.Background()
			mustRun(t, env, "pw\n", "user", "add", "alice")
			mustRun(t, env, "", "import", "pybitmessage", "--user", "alice", pybFixture(t))
			mustRun(t, env, "", "address", "new", "--user", "alice", "--label", "made by bmgate")
			mustRun(t, env, "", "address", "set", "--user", "alice", fxBob, "mailinglist", "on", "--name", "Bob's list")
			file := filepath.Join(t.TempDir(), "keys.dat")
			mustRun(t, env, "", "export", "keys.dat", "--user", "alice", "-o", file)
			fi, err := os.Stat(file)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("mode %v, want 0600", fi.Mode().Perm())
			}
			mustFail(t, env, 1, "file exists", "export", "keys.dat", "--user", "alice", "-o", file)
			data, _ := os.ReadFile(file)
			if stdout := mustRun(t, env, "", "export", "keys.dat", "--user", "alice"); len(stdout) != len(data) {
				t.Errorf("stdout export: %d bytes, file %d", len(stdout), len(data))
			}

			// As PyBitmessage reads it: ConfigParser sections and options.
			secs, err := parseINI(data)
			if err != nil {
				t.Fatal(err)
			}
			if secs[0].name != "bitmessagesettings" || secs[0].vals["settingsversion"] != "10" || secs[0].vals["port"] != "8444" {
				t.Errorf("settings section: %+v", secs[0])
			}
			fixture, _ := os.ReadFile(filepath.Join("testdata", "pybitmessage", "keys.dat"))
			st := openTestStore(t, env)
			alice, _ := st.UserByName(ctx, "alice")
			want, _ := st.Identities(ctx, alice.ID)
			if len(secs) != 1+len(want) || len(want) != 5 {
				t.Fatalf("%d sections for %d identities", len(secs), len(want))
			}
			for _, s := range secs[1:] {
				for _, k := range []string{"label", "enabled", "decoy", "noncetrialsperbyte", "payloadlengthextrabytes", "privsigningkey", "privencryptionkey"} {
					if _, ok := s.get(k); !ok {
						t.Errorf("[%s] has no %s", s.name, k)
					}
				}
				if (s.vals["mailinglist"] == "true") != (s.name == fxBob) || s.name == fxBob && s.vals["mailinglistname"] != "Bob's list" {
					t.Errorf("[%s] mailing list: %+v", s.name, s.vals)
				}
				if s.name == fxChan {
					if s.vals["chan"] != "true" || s.vals["label"] != "[chan] bmgate-fixture-chan" {
						t.Errorf("chan section: %+v", s.vals)
					}
					continue
				}
				if _, ok := s.get("lastpubkeysendtime"); !ok {
					t.Errorf("[%s] has no lastpubkeysendtime", s.name)
				}
				if strings.Contains(string(fixture), "["+s.name+"]") {
					for _, k := range []string{"label", "privsigningkey", "privencryptionkey", "noncetrialsperbyte", "lastpubkeysendtime"} {
						if got, w := s.vals[k], keysValue(t, string(fixture), s.name, k); got != w {
							t.Errorf("[%s] %s = %q, PyBitmessage had %q", s.name, k, got, w)
						}
					}
				}
			}

			// Into a second user on a fresh store: the same identities.
			env2 := mk(t)
			mustRun(t, env2, "pw\n", "user", "add", "carol")
			mustRun(t, env2, "", "import", "pybitmessage", "--user", "carol", file)
			st2 := openTestStore(t, env2)
			carol, _ := st2.UserByName(ctx, "carol")
			got, _ := st2.Identities(ctx, carol.ID)
			if len(got) != len(want) {
				t.Fatalf("%d identities after the round trip, want %d", len(got), len(want))
			}
			for i := range want {
				g, w := got[i], want[i]
				if g.Address != w.Address || g.Label != w.Label || g.Kind != w.Kind || !bytes.Equal(g.SigningKey, w.SigningKey) ||
					!bytes.Equal(g.EncryptionKey, w.EncryptionKey) || g.ChanPassphrase != w.ChanPassphrase ||
					g.NonceTrialsPerByte != w.NonceTrialsPerByte || g.ExtraBytes != w.ExtraBytes || g.PublishPubkey != w.PublishPubkey ||
					g.MailingList != w.MailingList || g.MailingListName != w.MailingListName {
					t.Errorf("round trip:\n got %+v\nwant %+v", g, w)
				}
			}
		})
	}
}

func TestParseINI(t *testing.T) {
	secs, err := parseINI([]byte("# comment\n[a]\nKey = v1 ; comment\nb: two;three\nc = first\n  second\n; x\nrem also a comment\nd = \"\"\n[a]\ne=5\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(secs) != 1 {
		t.Fatalf("%d sections", len(secs))
	}
	want := map[string]string{"key": "v1", "b": "two;three", "c": "first\nsecond", "d": "", "e": "5"}
	for k, v := range want {
		if got := secs[0].vals[k]; got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if _, err := parseINI([]byte("key = before any section\n")); err == nil {
		t.Error("an option before the first section was accepted")
	}
	if got := iniValue(" a\nb ; c "); got != "a b , c" {
		t.Errorf("iniValue: %q", got)
	}
}

// decodeCTE undoes a Content-Transfer-Encoding.
func decodeCTE(t *testing.T, cte string, body []byte) []byte {
	t.Helper()
	var r io.Reader
	switch strings.ToLower(cte) {
	case "quoted-printable":
		r = quotedprintable.NewReader(bytes.NewReader(body))
	case "base64":
		r = base64.NewDecoder(base64.StdEncoding, bytes.NewReader(bytes.ReplaceAll(bytes.ReplaceAll(body, []byte("\r"), nil), []byte("\n"), nil)))
	default:
		t.Fatalf("unknown transfer encoding %q", cte)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestAliasLocal(t *testing.T) {
	for in, want := range map[string]string{
		"Carol Friend":  "carol.friend",
		"Bob Ünïcode":   "bob.unicode",
		"  Zoë  O'Neil": "zoe.o.neil",
		"Straße 5":      "strasse.5",
		"BM-2cXY":       "contact.bm-2cxy",
		"broadcast":     "contact.broadcast",
		"日本":            "",
		"a_b-c":         "a_b-c",
	} {
		if got := aliasLocal(in); got != want {
			t.Errorf("aliasLocal(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestImportOddPath: a directory name with characters that mean something
// in an SQLite URI (?, #, %) is read as it is, and nothing is created.
func TestImportOddPath(t *testing.T) {
	env := testEnv(t)
	mustRun(t, env, "pw\n", "user", "add", "alice")
	parent := t.TempDir()
	dir := filepath.Join(parent, "py b#1?x%41")
	if err := os.Rename(pybFixture(t), dir); err != nil {
		t.Fatal(err)
	}
	out := mustRun(t, env, "", "import", "pybitmessage", "--dry-run", "--user", "alice", dir)
	if !strings.Contains(out, "INBOX: 2") {
		t.Errorf("summary:\n%s", out)
	}
	if ents, _ := os.ReadDir(parent); len(ents) != 1 {
		t.Errorf("%d entries next to the directory, want it alone", len(ents))
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Errorf("%d files in the directory, want keys.dat and messages.dat", len(ents))
	}
}

// FuzzParseKeysDat: a keys.dat from anywhere (a user moving in uploads
// theirs) never makes the parser panic; what it accepts has identities
// whose derived address is their section name.
func FuzzParseKeysDat(f *testing.F) {
	if data, err := os.ReadFile("testdata/pybitmessage/keys.dat"); err == nil {
		f.Add(data)
	}
	f.Add([]byte("[bitmessagesettings]\nsettingsversion = 10\n[BM-2cWzSnwjJ7yRP3nLEWUV5LisTZyREWSzUK]\nlabel = x\nprivsigningkey = 5K\n"))
	f.Add([]byte("key = before\n[a]\n  continued\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ids, _, _, err := parseKeysDat(data, 1000, 1000)
		if err != nil {
			return
		}
		for _, id := range ids {
			if !strings.HasPrefix(id.Address, "BM-") {
				t.Fatalf("accepted identity %+v", id)
			}
		}
	})
}
