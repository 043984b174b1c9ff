package mailmap_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"net/mail"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/bmgate/bmgate/bmcore/identity"
	"github.com/bmgate/bmgate/gateway"
	"github.com/bmgate/bmgate/mailmap"
	"github.com/bmgate/bmgate/mailmap/storetest"
)

// chanPass is the test chans' passphrase: distinctive, so finding it in a
// dump means it leaked.
const chanPass = "Zq7 correct horse battery staple xk2"

// checkDump fails when the passphrase (or its hex) is anywhere in the
// database: every column of every row, the SQLite files, pg_dump's output.
func checkDump(t *testing.T, b backend, dsn, secret string) {
	t.Helper()
	ctx := context.Background()
	secrets := [][]byte{[]byte(secret), []byte(hex.EncodeToString([]byte(secret)))}
	check := func(where string, data []byte) {
		t.Helper()
		for _, s := range secrets {
			if bytes.Contains(data, s) {
				t.Errorf("the chan passphrase is in clear in %s", where)
			}
		}
	}
	db := b.raw(t, dsn)
	defer db.Close()
	tq := `SELECT name FROM sqlite_master WHERE type = 'table'`
	if b.name == "postgres" {
		tq = `SELECT tablename FROM pg_tables WHERE schemaname = 'public'`
	}
	var tables []string
	rows, err := db.QueryContext(ctx, tq)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, n)
	}
	rows.Close()
	if len(tables) < 10 {
		t.Fatalf("found only tables %v", tables)
	}
	for _, table := range tables {
		rows, err := db.QueryContext(ctx, `SELECT * FROM `+table)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			for i, v := range vals {
				switch v := v.(type) {
				case []byte:
					check(table+"."+cols[i], v)
				case string:
					check(table+"."+cols[i], []byte(v))
				}
			}
		}
		rows.Close()
	}
	if b.files != nil {
		for _, f := range b.files(dsn) {
			data, err := os.ReadFile(f)
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			check("the file "+f, data)
		}
	}
	if b.name == "postgres" {
		pgDump, err := exec.LookPath("pg_dump")
		if err != nil {
			t.Log("no pg_dump: checked the rows only")
			return
		}
		out, err := exec.CommandContext(ctx, pgDump, "--dbname="+dsn).Output()
		if err != nil {
			t.Logf("pg_dump failed (%v): checked the rows only", err)
			return
		}
		if !bytes.Contains(out, []byte("COPY public.identities")) {
			t.Fatalf("pg_dump output lacks the identities:\n%.2000s", out)
		}
		check("pg_dump's output", out)
	}
}

// TestChanPassphraseAtRest: a chan's passphrase is stored sealed only, and
// reads back.
func TestChanPassphraseAtRest(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			dsn := b.dsn(t)
			s := openDSN(t, dsn)
			u, err := s.CreateUser(ctx, "alice", "pw")
			if err != nil {
				t.Fatal(err)
			}
			ch, err := identity.Chan(chanPass)
			if err != nil {
				t.Fatal(err)
			}
			addr := ch.Address.String()
			in := mailmap.Identity{UserID: u.ID, Address: addr, Label: mailmap.DefaultChanName(addr), Kind: mailmap.KindChan,
				SigningKey: ch.Signing.Serialize(), EncryptionKey: ch.Encryption.Serialize(), ChanPassphrase: chanPass}
			if _, err := s.AddIdentity(ctx, in); err != nil {
				t.Fatal(err)
			}
			got, err := s.IdentityByAddress(ctx, addr)
			if err != nil || got.ChanPassphrase != chanPass || got.Label != "chan-"+addr[3:13] {
				t.Fatalf("chan reads back as %q %q, %v", got.Label, got.ChanPassphrase, err)
			}
			in.Kind, in.Address = mailmap.KindNormal, "BM-other"
			if _, err := s.AddIdentity(ctx, in); !errors.Is(err, mailmap.ErrInvalidName) {
				t.Fatalf("a personal address with a passphrase: %v, want ErrInvalidName", err)
			}
			checkDump(t, b, dsn, chanPass)
			s.Close()
			checkDump(t, b, dsn, chanPass)
		})
	}
}

// TestChanSecretsMigration: chans joined before migration 0004 (label
// "[chan] <passphrase>", folder Chans/<passphrase>, posts whose To: names
// the passphrase) come out of Open with the passphrase sealed, named
// chan-<address>, their folders renamed with children and messages, their
// posts rewritten, and no trace of the passphrase in the database.
func TestChanSecretsMigration(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			dsn := b.dsn(t)
			old, err := mailmap.OpenAtVersion(ctx, dsn, mailmap.Options{SecretKey: testKey}, 3)
			if err != nil {
				t.Fatal(err)
			}
			defer old.Close()
			ch, err := identity.Chan(chanPass)
			if err != nil {
				t.Fatal(err)
			}
			addr := ch.Address.String()
			oldLabel, oldFolder := "[chan] "+chanPass, gateway.ChanFolder("[chan] "+chanPass, addr)
			newLabel := "chan-" + addr[3:13]
			newFolder := "Chans/" + newLabel
			const domain = "bmaddr.lan"
			post := func(i byte, label string) []byte {
				raw, err := gateway.BuildIncoming(gateway.Incoming{Domain: domain, From: "BM-2cTux3PGcZiHVtAtFJ9HnqQb4JV5tQ2uhv",
					To: addr, Subject: "post", Body: "hello chan\n", Date: time.Unix(1700000000, 0), InvHash: [32]byte{i},
					Kind: gateway.IncomingChan, ChanLabel: label})
				if err != nil {
					t.Fatal(err)
				}
				return raw
			}
			db := b.raw(t, dsn)
			type member struct {
				u                mailmap.User
				folder, inbox    mailmap.Mailbox
				folderUV, inboxV uint32
			}
			var members []member
			for _, name := range []string{"alice", "bob"} {
				u, err := old.CreateUser(ctx, name, "pw")
				if err != nil {
					t.Fatal(err)
				}
				// As bmgate chan join wrote it before 0004.
				sk, ek, err := mailmap.SealIdentityKeys(old, addr, ch.Signing.Serialize(), ch.Encryption.Serialize())
				if err != nil {
					t.Fatal(err)
				}
				if _, err := db.ExecContext(ctx, `INSERT INTO identities (user_id, address, label, kind, signing_key, encryption_key,
					publish_pubkey, nonce_trials_per_byte, extra_bytes, created_at) VALUES ($1, $2, $3, 'chan', $4, $5, FALSE, 1000, 1000, 1)`,
					u.ID, addr, oldLabel, sk, ek); err != nil {
					t.Fatal(err)
				}
				for _, f := range []string{oldFolder, oldFolder + "/kept"} {
					if _, err := old.CreateMailbox(ctx, u.ID, f, ""); err != nil {
						t.Fatal(err)
					}
					if err := old.SetSubscribed(ctx, u.ID, f, true); err != nil {
						t.Fatal(err)
					}
				}
				folder, err := old.Mailbox(ctx, u.ID, oldFolder)
				if err != nil {
					t.Fatal(err)
				}
				inbox, err := old.Mailbox(ctx, u.ID, "INBOX")
				if err != nil {
					t.Fatal(err)
				}
				for i := range byte(3) {
					if _, err := old.AppendMessage(ctx, u.ID, folder.ID, post(i, oldLabel), nil, time.Time{}); err != nil {
						t.Fatal(err)
					}
				}
				// One post deleted (its bytes in free space), one copied to INBOX.
				if _, err := old.UpdateFlags(ctx, u.ID, folder.ID, []uint32{3}, mailmap.FlagsAdd, []string{`\Deleted`}); err != nil {
					t.Fatal(err)
				}
				if _, err := old.Expunge(ctx, u.ID, folder.ID, nil); err != nil {
					t.Fatal(err)
				}
				if _, _, err := old.CopyMessages(ctx, u.ID, folder.ID, []uint32{1}, inbox.ID); err != nil {
					t.Fatal(err)
				}
				// A mail that merely names the address is not a post: untouched.
				if _, err := old.AppendMessage(ctx, u.ID, inbox.ID,
					[]byte("To: <"+addr+"@"+domain+">\r\nSubject: about\r\n\r\nthe chan "+addr+"@x\r\n"), nil, time.Time{}); err != nil {
					t.Fatal(err)
				}
				members = append(members, member{u: u, folder: folder, inbox: inbox, folderUV: folder.UIDValidity, inboxV: inbox.UIDValidity})
			}
			// Another old chan whose default name is taken by a folder: it gets a longer one.
			other, err := identity.Chan("second " + chanPass)
			if err != nil {
				t.Fatal(err)
			}
			otherAddr := other.Address.String()
			sk, ek, err := mailmap.SealIdentityKeys(old, otherAddr, other.Signing.Serialize(), other.Encryption.Serialize())
			if err != nil {
				t.Fatal(err)
			}
			alice := members[0].u
			if _, err := db.ExecContext(ctx, `INSERT INTO identities (user_id, address, label, kind, signing_key, encryption_key,
				publish_pubkey, nonce_trials_per_byte, extra_bytes, created_at) VALUES ($1, $2, $3, 'chan', $4, $5, FALSE, 1000, 1000, 1)`,
				alice.ID, otherAddr, "[chan] second "+chanPass, sk, ek); err != nil {
				t.Fatal(err)
			}
			if _, err := old.CreateMailbox(ctx, alice.ID, "Chans/"+mailmap.DefaultChanName(otherAddr), ""); err != nil {
				t.Fatal(err)
			}
			old.Close()
			db.Close()

			s := openDSN(t, dsn)
			for _, m := range members {
				ids, err := s.Identities(ctx, m.u.ID)
				if err != nil {
					t.Fatal(err)
				}
				if ids[0].Label != newLabel || ids[0].ChanPassphrase != chanPass {
					t.Errorf("%s's chan: label %q, passphrase %q", m.u.Name, ids[0].Label, ids[0].ChanPassphrase)
				}
				if m.u.Name == "alice" {
					if len(ids) != 2 || ids[1].Label != "chan-"+otherAddr[3:] || ids[1].ChanPassphrase != "second "+chanPass {
						t.Errorf("alice's second chan: %q %q", ids[1].Label, ids[1].ChanPassphrase)
					}
				}
				if got := gateway.ChanFolder(ids[0].Label, addr); got != newFolder {
					t.Errorf("the gateway files the chan in %s, the migration renamed it %s", got, newFolder)
				}
				if _, err := s.Mailbox(ctx, m.u.ID, oldFolder); !errors.Is(err, mailmap.ErrNotFound) {
					t.Errorf("old folder still there: %v", err)
				}
				for _, f := range []string{newFolder, newFolder + "/kept"} {
					mb, err := s.Mailbox(ctx, m.u.ID, f)
					if err != nil || !mb.Subscribed {
						t.Errorf("folder %s: %+v, %v", f, mb, err)
					}
				}
				folder, err := s.Mailbox(ctx, m.u.ID, newFolder)
				if err != nil {
					t.Fatal(err)
				}
				inbox, err := s.Mailbox(ctx, m.u.ID, "INBOX")
				if err != nil {
					t.Fatal(err)
				}
				// Same mailbox rows; the content changed, so UIDVALIDITY did.
				if folder.ID != m.folder.ID || folder.UIDValidity == m.folderUV || inbox.UIDValidity == m.inboxV {
					t.Errorf("folder %d→%d, uidvalidity %d→%d, INBOX %d→%d", m.folder.ID, folder.ID,
						m.folderUV, folder.UIDValidity, m.inboxV, inbox.UIDValidity)
				}
				msgs, err := s.Messages(ctx, m.u.ID, folder.ID)
				if err != nil || len(msgs) != 2 {
					t.Fatalf("%s's chan folder holds %d messages, %v", m.u.Name, len(msgs), err)
				}
				inboxMsgs, err := s.Messages(ctx, m.u.ID, inbox.ID)
				if err != nil || len(inboxMsgs) != 2 {
					t.Fatalf("%s's INBOX holds %d messages, %v", m.u.Name, len(inboxMsgs), err)
				}
				var sum int64
				for _, msg := range append(msgs, inboxMsgs...) {
					sum += msg.Size
					raw, err := s.MessageRaw(ctx, m.u.ID, msg.MailboxID, msg.UID)
					if err != nil {
						t.Fatal(err)
					}
					if int64(len(raw)) != msg.Size {
						t.Errorf("size %d, raw %d bytes", msg.Size, len(raw))
					}
					// The header index follows the rewrite.
					hs, err := s.MessageHeaders(ctx, m.u.ID, msg.MailboxID, []uint32{msg.UID}, mailmap.HeaderAll)
					if err != nil {
						t.Fatal(err)
					}
					if d := storetest.SameHeader(hs[msg.UID], mailmap.IndexHeader(raw)); d != "" {
						t.Errorf("header index of uid %d: %s", msg.UID, d)
					}
					parsed, err := mail.ReadMessage(bytes.NewReader(raw))
					if err != nil {
						t.Fatal(err)
					}
					to, err := parsed.Header.AddressList("To")
					if err != nil || len(to) != 1 || to[0].Address != addr+"@"+domain {
						t.Errorf("To: %v, %v", to, err)
					}
					if parsed.Header.Get("Subject") == "about" {
						if to[0].Name != "" || !strings.Contains(string(raw), "the chan "+addr) {
							t.Errorf("a mail that is no post was changed:\n%s", raw)
						}
						continue
					}
					// As the gateway files a post now.
					if want := post(0, newLabel); msg.UID == 1 && msg.MailboxID == folder.ID && !bytes.Equal(raw, want) {
						t.Errorf("rewritten post:\n%s\nwant:\n%s", raw, want)
					}
					if to[0].Name != newLabel {
						t.Errorf("To: display name %q, want %q", to[0].Name, newLabel)
					}
				}
				var used int64
				if err := b.raw(t, dsn).QueryRowContext(ctx, `SELECT used_bytes FROM users WHERE id = $1`, m.u.ID).Scan(&used); err != nil {
					t.Fatal(err)
				}
				if used != sum {
					t.Errorf("%s uses %d bytes, its messages %d", m.u.Name, used, sum)
				}
			}
			checkDump(t, b, dsn, chanPass)

			// Once only: opening again changes nothing.
			before, _ := s.Mailboxes(ctx, alice.ID)
			s.Close()
			s = openDSN(t, dsn)
			after, _ := s.Mailboxes(ctx, alice.ID)
			if len(before) != len(after) {
				t.Fatalf("mailboxes %d → %d", len(before), len(after))
			}
			for i := range before {
				if before[i] != after[i] {
					t.Errorf("second Open changed %+v → %+v", before[i], after[i])
				}
			}
			s.Close()
			checkDump(t, b, dsn, chanPass)
		})
	}
}

// TestChanSecretsMigrationEmpty: without chans nothing is pending, and the
// step leaves no settings row behind.
func TestChanSecretsMigrationEmpty(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			dsn := b.dsn(t)
			openDSN(t, dsn).Close()
			var n int
			if err := b.raw(t, dsn).QueryRow(`SELECT COUNT(*) FROM settings WHERE name LIKE 'chan%'`).Scan(&n); err != nil || n != 0 {
				t.Fatalf("pending rows %d, %v", n, err)
			}
		})
	}
}

// TestChanFolderCopy: the migration's frozen copy of the folder naming
// agrees with the gateway's.
func TestChanFolderCopy(t *testing.T) {
	for _, label := range []string{"[chan] general", "general", "chan-2cW67GEKkH", "[chan]", "", " a/b*c%d\te\x7f ",
		"[chan] Grüße", strings.Repeat("x", 300), "[chan]   spaced  "} {
		if got, want := mailmap.ChanFolder(label, "BM-addr"), gateway.ChanFolder(label, "BM-addr"); got != want {
			t.Errorf("label %q: migration %q, gateway %q", label, got, want)
		}
	}
}

// TestHoldsSealedKeys: a missing database holds nothing (and is not
// created); a database with the key check does.
func TestHoldsSealedKeys(t *testing.T) {
	ctx := context.Background()
	path := sqlitePath(t)
	if got, err := mailmap.HoldsSealedKeys(ctx, path); got || err != nil {
		t.Fatalf("missing database: %v, %v", got, err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the probe created the database: %v", err)
	}
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			dsn := b.dsn(t)
			if got, err := mailmap.HoldsSealedKeys(ctx, dsn); got || err != nil {
				t.Fatalf("empty database: %v, %v", got, err)
			}
			openDSN(t, dsn).Close()
			if got, err := mailmap.HoldsSealedKeys(ctx, dsn); !got || err != nil {
				t.Fatalf("opened database: %v, %v", got, err)
			}
			// Without the key check, an identity is enough — and Open with
			// another key refuses to adopt the database.
			db := b.raw(t, dsn)
			s := openDSN(t, dsn)
			u, err := s.CreateUser(ctx, "alice", "pw")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.AddIdentity(ctx, mailmap.Identity{UserID: u.ID, Address: "BM-x", SigningKey: make([]byte, 32),
				EncryptionKey: make([]byte, 32)}); err != nil {
				t.Fatal(err)
			}
			s.Close()
			if _, err := db.Exec(`DELETE FROM settings WHERE name = 'key_check'`); err != nil {
				t.Fatal(err)
			}
			if got, err := mailmap.HoldsSealedKeys(ctx, dsn); !got || err != nil {
				t.Fatalf("database with an identity: %v, %v", got, err)
			}
			if _, err := mailmap.Open(ctx, dsn, mailmap.Options{SecretKey: bytes.Repeat([]byte{7}, 32)}); !errors.Is(err, mailmap.ErrSecretKey) {
				t.Fatalf("Open with another key and no key check: %v, want ErrSecretKey", err)
			}
			var n int
			if err := db.QueryRow(`SELECT COUNT(*) FROM settings WHERE name = 'key_check'`).Scan(&n); err != nil || n != 0 {
				t.Fatalf("the refused Open left a key check: %d, %v", n, err)
			}
		})
	}
}
