package imapd

import (
	"bytes"
	"context"
	"slices"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/bmgate/bmgate/mailmap"
	"github.com/bmgate/bmgate/mailmap/storetest"
)

// TestPostgresTwoProcesses: two Store instances on one PostgreSQL database
// stand for two bmgate processes. A session IDLEs on a server over the
// first; mail delivered through the second, and a move made by a session
// of a server over the second, reach it through LISTEN/NOTIFY within a
// second (the poll backstop is switched off).
func TestPostgresTwoProcesses(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	ctx := context.Background()
	open := func() mailmap.Store {
		st, err := mailmap.Open(ctx, dsn, mailmap.Options{SecretKey: bytes.Repeat([]byte{7}, 32)})
		if err != nil {
			t.Fatalf("open postgres store: %v", err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	stA, stB := open(), open()
	u, err := stA.CreateUser(ctx, testUser, testPass)
	if err != nil {
		t.Fatal(err)
	}
	a := serveStore(t, stA, u, Config{AllowInsecureAuth: true, PollInterval: time.Hour}, false)
	b := serveStore(t, stB, u, Config{AllowInsecureAuth: true, PollInterval: time.Hour}, false)

	up := newUpdates()
	c := a.login(&imapclient.Options{UnilateralDataHandler: up.handler()})
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	b.deliver("INBOX", mkMail("bob@example.test", "alice@example.test", "Via the other process", "x"))
	b.deliver("INBOX", mkMail("bob@example.test", "alice@example.test", "Second", "y"))
	up.waitFor(t, time.Second, "EXISTS 2 from another process", func() bool { return up.lastExists() == 2 })

	if _, err := stB.UpdateFlags(ctx, u.ID, b.inbox.ID, []uint32{1}, mailmap.FlagsAdd, []string{"$Delivered"}); err != nil {
		t.Fatal(err)
	}
	up.waitFor(t, time.Second, "FETCH $Delivered from another process", func() bool {
		return slices.ContainsFunc(up.fetches, func(f *imapclient.FetchMessageBuffer) bool {
			return f.SeqNum == 1 && slices.Contains(f.Flags, "$Delivered")
		})
	})

	other := b.login(nil)
	if _, err := other.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Move(imap.SeqSetNum(1), "Trash").Wait(); err != nil {
		t.Fatal(err)
	}
	up.waitFor(t, time.Second, "EXPUNGE 1 from another process", func() bool { return slices.Equal(up.expunges, []uint32{1}) })
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true}).Collect()
	if err != nil || len(msgs) != 1 || msgs[0].UID != 2 {
		t.Errorf("after the move elsewhere: %+v %v", msgs, err)
	}
}
