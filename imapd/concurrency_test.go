package imapd

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// TestConcurrentSequenceNumbers: while mail arrives through the store and
// two sessions expunge and move messages, a third session that IDLEs and a
// fourth that polls end with exactly the store's messages, in UID order,
// and their EXISTS/EXPUNGE bookkeeping agrees with it.
func TestConcurrentSequenceNumbers(t *testing.T) {
	e := newEnv(t, Config{})
	for i := range 20 {
		e.deliver("INBOX", mkMail("a@example.test", "b@example.test", fmt.Sprintf("seed %d", i), "x"))
	}
	open := func() *imapclient.Client {
		c := e.login(nil)
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
		return c
	}
	idler, poller, expunger, mover := open(), open(), open(), open()
	idle, err := idler.Idle()
	if err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	errs := make(chan error, 100)
	wg.Add(4)
	go func() { // the gateway
		defer wg.Done()
		for i := range 30 {
			if _, err := e.store.AppendMessage(context.Background(), e.user.ID, e.inbox.ID,
				[]byte(mkMail("g@example.test", "alice@example.test", fmt.Sprintf("new %d", i), "y")), nil, time.Now()); err != nil {
				errs <- err
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		for range 10 {
			if _, err := expunger.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Collect(); err != nil {
				errs <- err
				return
			}
			if _, err := expunger.Expunge().Collect(); err != nil {
				errs <- err
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		for range 10 {
			if _, err := mover.Move(imap.SeqSetNum(2), "Trash").Wait(); err != nil {
				errs <- err
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		for range 20 {
			if _, err := poller.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Flags: true}).Collect(); err != nil {
				errs <- err
				return
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}

	stored, err := e.store.Messages(context.Background(), e.user.ID, e.inbox.ID)
	if err != nil {
		t.Fatal(err)
	}
	var want []imap.UID
	for _, m := range stored {
		want = append(want, imap.UID(m.UID))
	}
	// The expunger's and the mover's targets may coincide, so the exact
	// number removed varies; something was.
	if len(want) >= 50 {
		t.Fatalf("store has %d messages; nothing was removed", len(want))
	}
	for name, c := range map[string]*imapclient.Client{"idler": idler, "poller": poller, "expunger": expunger, "mover": mover} {
		if err := c.Noop().Wait(); err != nil {
			t.Fatal(err)
		}
		if n := c.Mailbox().NumMessages; n != uint32(len(want)) {
			t.Errorf("%s counts %d messages from EXISTS/EXPUNGE, store has %d", name, n, len(want))
		}
		msgs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true}).Collect()
		if err != nil {
			t.Fatal(err)
		}
		var got []imap.UID
		for i, m := range msgs {
			if m.SeqNum != uint32(i+1) {
				t.Errorf("%s: sequence number %d at position %d", name, m.SeqNum, i+1)
			}
			got = append(got, m.UID)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s sees UIDs %v, store has %v", name, got, want)
		}
	}
}
