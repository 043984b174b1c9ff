package gateway

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"

	"github.com/bmgate/bmgate/mailmap"
)

// TestChanPostsNamedNotByPassphrase: a chan joined as bmgate chan join does
// now (named chan-<address>, passphrase sealed) gets its posts in
// Chans/<name>, with the name, never the passphrase, in the To: header.
func TestChanPostsNamedNotByPassphrase(t *testing.T) {
	onBackends(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		const pass = "gateway Zq7 secret passphrase"
		e := newInboundEnv(t, dsn, nil)
		alice := e.user("alice")
		ch := chanIdentity(t, pass)
		name := mailmap.DefaultChanName(ch.Address.String())
		if _, err := e.store.AddIdentity(ctx, mailmap.Identity{UserID: alice.ID, Address: ch.Address.String(), Label: name,
			Kind: mailmap.KindChan, SigningKey: ch.Signing.Serialize(), EncryptionKey: ch.Encryption.Serialize(),
			ChanPassphrase: pass, NonceTrialsPerByte: 1, ExtraBytes: 1}); err != nil {
			t.Fatal(err)
		}
		folder := ChanFolder(name, ch.Address.String())
		if folder != "Chans/"+name {
			t.Fatalf("folder %s", folder)
		}
		post := e.msgTo(randomIdentity(t), ch, "hello")
		e.once()
		if n := e.copies(alice, folder, post.Hash); n != 1 {
			t.Fatalf("%d copies in %s", n, folder)
		}
		checkChanFolder(t, e.store, alice, folder, name, pass, 1)
	})
}

// TestChanPostsAfterMigration: a chan joined before migration 0004 (label
// "[chan] <passphrase>") is renamed at Open; the posts filed before are in
// the renamed folder, and new ones go there too.
func TestChanPostsAfterMigration(t *testing.T) {
	onBackends(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		const pass = "gateway Zq7 old passphrase"
		e := newInboundEnv(t, dsn, nil)
		bob, carol := e.user("bob"), e.user("carol")
		ch := chanIdentity(t, pass)
		oldFolder := e.joinChan(bob, ch, pass) // the label old releases wrote
		e.joinChan(carol, ch, pass)
		sender := randomIdentity(t)
		before := e.msgTo(sender, ch, "before")
		e.once()
		if n := e.copies(bob, oldFolder, before.Hash); n != 1 {
			t.Fatalf("%d copies in %s", n, oldFolder)
		}
		// What migration 0004 leaves for Open when old chans exist.
		driver := "sqlite"
		if strings.HasPrefix(dsn, "postgres") {
			driver = "pgx"
		}
		db, err := sql.Open(driver, dsn)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, `INSERT INTO settings (name, value) VALUES ('chan_secrets_pending', $1)`, []byte{1}); err != nil {
			t.Fatal(err)
		}
		db.Close()
		e.store.Close()

		e = newInboundEnv(t, dsn, nil)
		name := mailmap.DefaultChanName(ch.Address.String())
		folder := ChanFolder(name, ch.Address.String())
		for _, u := range []mailmap.User{bob, carol} {
			if _, err := e.store.Mailbox(ctx, u.ID, oldFolder); !errors.Is(err, mailmap.ErrNotFound) {
				t.Errorf("%s still has %s: %v", u.Name, oldFolder, err)
			}
		}
		after := e.msgTo(sender, ch, "after")
		e.once()
		for _, u := range []mailmap.User{bob, carol} {
			for _, h := range [][32]byte{before.Hash, after.Hash} {
				if n := e.copies(u, folder, h); n != 1 {
					t.Errorf("%s: %d copies of a post in %s", u.Name, n, folder)
				}
			}
			checkChanFolder(t, e.store, u, folder, name, pass, 2)
		}
	})
}

// checkChanFolder: the folder holds n posts, each To: the chan under its
// name, none with the passphrase.
func checkChanFolder(t *testing.T, st mailmap.Store, u mailmap.User, folder, name, pass string, n int) {
	t.Helper()
	ctx := context.Background()
	mb, err := st.Mailbox(ctx, u.ID, folder)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := st.Messages(ctx, u.ID, mb.ID)
	if err != nil || len(msgs) != n {
		t.Fatalf("%s: %d messages in %s, %v", u.Name, len(msgs), folder, err)
	}
	for _, m := range msgs {
		raw, err := st.MessageRaw(ctx, u.ID, mb.ID, m.UID)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(raw, []byte(pass)) {
			t.Errorf("a post names the passphrase:\n%s", raw)
		}
		if to := header(raw, "To"); !strings.HasPrefix(to, `"`+name+`" <`) {
			t.Errorf("To: %s", to)
		}
	}
	mbs, err := st.Mailboxes(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mbs {
		if strings.Contains(m.Name, pass) {
			t.Errorf("folder %s", m.Name)
		}
	}
}
