package imapd

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/bmgate/bmgate/mailmap"
	"github.com/bmgate/bmgate/mailmap/storetest"
)

// updates records unilateral data a client receives.
type updates struct {
	mu       sync.Mutex
	exists   []uint32
	expunges []uint32
	fetches  []*imapclient.FetchMessageBuffer
	flags    [][]imap.Flag // FLAGS responses
	signal   chan struct{}
}

func newUpdates() *updates { return &updates{signal: make(chan struct{}, 100)} }

func (u *updates) handler() *imapclient.UnilateralDataHandler {
	note := func() {
		select {
		case u.signal <- struct{}{}:
		default:
		}
	}
	return &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			u.mu.Lock()
			if d.NumMessages != nil {
				u.exists = append(u.exists, *d.NumMessages)
			}
			if d.Flags != nil {
				u.flags = append(u.flags, d.Flags)
			}
			u.mu.Unlock()
			note()
		},
		Expunge: func(seq uint32) {
			u.mu.Lock()
			u.expunges = append(u.expunges, seq)
			u.mu.Unlock()
			note()
		},
		Fetch: func(msg *imapclient.FetchMessageData) {
			buf, err := msg.Collect()
			if err != nil {
				return
			}
			u.mu.Lock()
			u.fetches = append(u.fetches, buf)
			u.mu.Unlock()
			note()
		},
	}
}

// waitFor waits until cond holds (checked under the lock) or the deadline
// passes.
func (u *updates) waitFor(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for {
		u.mu.Lock()
		ok := cond()
		u.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-u.signal:
		case <-deadline.C:
			t.Fatalf("no %s within %v", what, within)
		}
	}
}

func (u *updates) lastExists() uint32 {
	if len(u.exists) == 0 {
		return 0
	}
	return u.exists[len(u.exists)-1]
}

// TestCapabilitiesHaveInterfaces guards the imapserver panic: advertising
// a capability whose session interface is missing kills every connection.
func TestCapabilitiesHaveInterfaces(t *testing.T) {
	var sess imapserver.Session = &session{}
	need := map[imap.Cap]func() bool{
		imap.CapIMAP4rev2:      func() bool { _, ok := sess.(imapserver.SessionIMAP4rev2); return ok },
		imap.CapNamespace:      func() bool { _, ok := sess.(imapserver.SessionNamespace); return ok },
		imap.CapMove:           func() bool { _, ok := sess.(imapserver.SessionMove); return ok },
		imap.CapUnauthenticate: func() bool { _, ok := sess.(imapserver.SessionUnauthenticate); return ok },
		imap.CapAppendLimit:    func() bool { _, ok := sess.(imapserver.SessionAppendLimit); return ok },
	}
	for c := range capabilities {
		if check, ok := need[c]; ok && !check() {
			t.Errorf("capability %s advertised but session lacks its interface", c)
		}
	}
	if _, ok := sess.(imapserver.SessionAppendLimit); !ok {
		t.Error("session must implement SessionAppendLimit (APPENDLIMIT)")
	}
}

// TestThunderbirdFirstSync runs the commands Thunderbird sends when it
// first syncs an account and checks the answers it relies on.
func TestThunderbirdFirstSync(t *testing.T) {
	thunderbirdFirstSync(t, newEnv(t, Config{}))
}

// TestThunderbirdFirstSyncPostgres runs the same over the PostgreSQL store.
func TestThunderbirdFirstSyncPostgres(t *testing.T) {
	st, err := mailmap.Open(context.Background(), storetest.PostgresDSN(t), mailmap.Options{SecretKey: bytes.Repeat([]byte{7}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	u, err := st.CreateUser(context.Background(), testUser, testPass)
	if err != nil {
		t.Fatal(err)
	}
	thunderbirdFirstSync(t, serveStore(t, st, u, Config{AllowInsecureAuth: true}, false))
}

func thunderbirdFirstSync(t *testing.T, e *testEnv) {
	ctx := context.Background()
	e.deliver("INBOX", mkMail("bob@example.test", "alice@example.test", "Hello one", "first body"))
	e.deliver("INBOX", multipartMail, `\Seen`)

	up := newUpdates()
	c := e.dial(&imapclient.Options{UnilateralDataHandler: up.handler()})

	caps, err := c.Capability().Wait()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []imap.Cap{imap.CapIMAP4rev1, imap.CapIMAP4rev2, "AUTH=PLAIN", imap.CapSASLIR} {
		if !caps.Has(want) {
			t.Errorf("pre-login CAPABILITY lacks %s: %v", want, caps)
		}
	}
	if err := c.Login(testUser, testPass).Wait(); err != nil {
		t.Fatal(err)
	}
	caps, err = c.Capability().Wait()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []imap.Cap{imap.CapIdle, imap.CapUIDPlus, imap.CapMove, imap.CapNamespace, imap.CapSpecialUse,
		imap.CapListExtended, imap.CapListStatus, imap.CapESearch, imap.CapStatusSize, imap.CapUnselect,
		"APPENDLIMIT=10485760", imap.CapChildren, imap.CapLiteralPlus, imap.CapSearchRes, imap.CapBinary} {
		if !caps.Has(want) {
			t.Errorf("CAPABILITY lacks %s", want)
		}
	}

	ns, err := c.Namespace().Wait()
	if err != nil {
		t.Fatal(err)
	}
	if len(ns.Personal) != 1 || ns.Personal[0].Prefix != "" || ns.Personal[0].Delim != '/' || ns.Other != nil || ns.Shared != nil {
		t.Errorf("NAMESPACE = %+v", ns)
	}

	// Thunderbird with LIST-EXTENDED: LIST (SUBSCRIBED) "" "*" RETURN (SPECIAL-USE).
	list, err := c.List("", "*", &imap.ListOptions{SelectSubscribed: true, ReturnSpecialUse: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]imap.MailboxAttr{}
	for _, l := range list {
		got[l.Mailbox] = l.Attrs
		if l.Delim != '/' {
			t.Errorf("%s: delimiter %q", l.Mailbox, l.Delim)
		}
	}
	for name, use := range map[string]imap.MailboxAttr{"INBOX": "", "Sent": imap.MailboxAttrSent, "Drafts": imap.MailboxAttrDrafts,
		"Trash": imap.MailboxAttrTrash, "Junk": imap.MailboxAttrJunk, "Archive": imap.MailboxAttrArchive} {
		attrs, ok := got[name]
		if !ok {
			t.Errorf("LIST (SUBSCRIBED) lacks %s: %v", name, got)
			continue
		}
		if !slices.Contains(attrs, imap.MailboxAttrSubscribed) {
			t.Errorf("%s lacks \\Subscribed: %v", name, attrs)
		}
		if use != "" && !slices.Contains(attrs, use) {
			t.Errorf("%s lacks %s: %v", name, use, attrs)
		}
	}
	// Special-use attributes are in a plain LIST too.
	plain, err := c.List("", "%", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range plain {
		if l.Mailbox == "Sent" && !slices.Contains(l.Attrs, imap.MailboxAttrSent) {
			t.Errorf("plain LIST: Sent lacks \\Sent: %v", l.Attrs)
		}
		if l.Mailbox == "INBOX" && !slices.Contains(l.Attrs, imap.MailboxAttrHasNoChildren) {
			t.Errorf("plain LIST: INBOX lacks \\HasNoChildren: %v", l.Attrs)
		}
	}

	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sel.NumMessages != 2 || sel.UIDValidity != e.inbox.UIDValidity || sel.UIDNext != 3 {
		t.Errorf("SELECT: %d messages, UIDVALIDITY %d (store %d), UIDNEXT %d", sel.NumMessages, sel.UIDValidity, e.inbox.UIDValidity, sel.UIDNext)
	}
	if !slices.Contains(sel.PermanentFlags, imap.FlagWildcard) || !slices.Contains(sel.PermanentFlags, imap.FlagSeen) {
		t.Errorf("PERMANENTFLAGS %v lacks \\* or \\Seen", sel.PermanentFlags)
	}

	// UID FETCH 1:* (FLAGS)
	msgs, err := c.Fetch(imap.UIDSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Flags: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 2 || msgs[0].UID != 1 || msgs[1].UID != 2 || msgs[0].SeqNum != 1 || msgs[1].SeqNum != 2 {
		t.Fatalf("UID FETCH 1:* = %+v", msgs)
	}
	if len(msgs[0].Flags) != 0 || !slices.Equal(msgs[1].Flags, []imap.Flag{imap.FlagSeen}) {
		t.Errorf("flags %v, %v", msgs[0].Flags, msgs[1].Flags)
	}

	// Thunderbird's header fetch.
	hdrSection := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, Peek: true,
		HeaderFields: []string{"From", "To", "Cc", "Bcc", "Subject", "Date", "Message-ID", "Priority", "X-Priority", "References", "Newsgroups", "In-Reply-To", "Content-Type", "Reply-To"}}
	hdrs, err := c.Fetch(imap.UIDSetNum(1, 2), &imap.FetchOptions{UID: true, RFC822Size: true, Flags: true, BodySection: []*imap.FetchItemBodySection{hdrSection}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := e.store.Messages(ctx, e.user.ID, e.inbox.ID)
	for i, m := range hdrs {
		if m.RFC822Size != stored[i].Size {
			t.Errorf("uid %d: RFC822.SIZE %d, stored %d", m.UID, m.RFC822Size, stored[i].Size)
		}
		h := string(m.FindBodySection(hdrSection))
		if !strings.Contains(h, "Subject: ") || strings.Contains(h, "MIME-Version") || !strings.HasSuffix(h, "\r\n\r\n") {
			t.Errorf("uid %d: header fields section %q", m.UID, h)
		}
	}
	if len(hdrs[0].Flags) != 0 {
		t.Errorf("BODY.PEEK set flags: %v", hdrs[0].Flags)
	}

	// Opening the message: BODY[] without PEEK returns the stored bytes and
	// sets \Seen, reported in the same FETCH.
	raw, _ := e.store.MessageRaw(ctx, e.user.ID, e.inbox.ID, 1)
	full := &imap.FetchItemBodySection{}
	body, err := c.Fetch(imap.UIDSetNum(1), &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{full}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(body) != 1 || string(body[0].FindBodySection(full)) != string(raw) {
		t.Fatalf("BODY[] = %+v", body)
	}
	if !slices.Contains(body[0].Flags, imap.FlagSeen) {
		t.Errorf("BODY[] did not report \\Seen: %v", body[0].Flags)
	}

	// IDLE; the gateway delivers through the store.
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	e.deliver("INBOX", mkMail("dave@example.test", "alice@example.test", "While idle", "new"))
	up.waitFor(t, time.Second, "EXISTS 3 during IDLE", func() bool { return up.lastExists() == 3 })
	t.Logf("IDLE saw the delivery after %v", time.Since(start))
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}

	// Thunderbird files its Sent copy with APPEND.
	sentMsg := mkMail("alice@example.test", "bob@example.test", "Sent copy", "sent body")
	date := time.Date(2026, 11, 22, 9, 15, 0, 0, time.FixedZone("", 3600))
	app := c.Append("Sent", int64(len(sentMsg)), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagSeen}, Time: date})
	if _, err := app.Write([]byte(sentMsg)); err != nil {
		t.Fatal(err)
	}
	if err := app.Close(); err != nil {
		t.Fatal(err)
	}
	ad, err := app.Wait()
	if err != nil {
		t.Fatal(err)
	}
	sentBox, _ := e.store.Mailbox(ctx, e.user.ID, "Sent")
	if ad.UIDValidity != sentBox.UIDValidity || ad.UID != 1 {
		t.Errorf("APPENDUID %d %d, want %d 1", ad.UIDValidity, ad.UID, sentBox.UIDValidity)
	}
	sentMsgs, _ := e.store.Messages(ctx, e.user.ID, sentBox.ID)
	if len(sentMsgs) != 1 || !slices.Equal(sentMsgs[0].Flags, []string{`\Seen`}) || !sentMsgs[0].InternalDate.Equal(date) {
		t.Errorf("stored Sent copy %+v", sentMsgs)
	}

	// STORE +FLAGS (\Seen) on the new message.
	st, err := c.Store(imap.UIDSetNum(3), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagSeen}}, nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 1 || st[0].UID != 3 || !slices.Contains(st[0].Flags, imap.FlagSeen) {
		t.Errorf("UID STORE answer %+v", st)
	}

	// Delete = MOVE to Trash.
	mv, err := c.Move(imap.UIDSetNum(1), "Trash").Wait()
	if err != nil {
		t.Fatal(err)
	}
	trash, _ := e.store.Mailbox(ctx, e.user.ID, "Trash")
	if mv.UIDValidity != trash.UIDValidity || mv.SourceUIDs.String() != "1" || mv.DestUIDs.String() != "1" {
		t.Errorf("MOVE COPYUID %d %v %v", mv.UIDValidity, mv.SourceUIDs, mv.DestUIDs)
	}
	up.waitFor(t, time.Second, "EXPUNGE 1 after MOVE", func() bool { return slices.Equal(up.expunges, []uint32{1}) })

	// Compact: \Deleted + EXPUNGE on what is now sequence number 1 (UID 2).
	if _, err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	gone, err := c.Expunge().Collect()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(gone, []uint32{1}) {
		t.Errorf("EXPUNGE = %v", gone)
	}
	left, err := c.Fetch(imap.UIDSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Flags: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 1 || left[0].UID != 3 || left[0].SeqNum != 1 {
		t.Errorf("left after expunge: %+v", left)
	}
	stat, err := c.Status("Trash", &imap.StatusOptions{NumMessages: true, UIDNext: true, UIDValidity: true, NumUnseen: true, Size: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if *stat.NumMessages != 1 || stat.UIDNext != 2 || stat.UIDValidity != trash.UIDValidity || *stat.NumUnseen != 0 || *stat.Size != int64(len(raw)) {
		t.Errorf("STATUS Trash = %+v", stat)
	}
	if err := c.Logout().Wait(); err != nil {
		t.Fatal(err)
	}
}

// TestSecondSessionSeesChanges: what one session does, another session of
// the same user sees, with sequence numbers that match its own view.
func TestSecondSessionSeesChanges(t *testing.T) {
	e := newEnv(t, Config{})
	for i := range 5 {
		e.deliver("INBOX", mkMail("bob@example.test", "alice@example.test", "Message "+string(rune('A'+i)), "x"))
	}
	upA := newUpdates()
	a := e.login(&imapclient.Options{UnilateralDataHandler: upA.handler()})
	b := e.login(nil)
	for _, c := range []*imapclient.Client{a, b} {
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
	}

	// B flags message 2 and expunges message 4, then appends one.
	if _, err := b.Store(imap.SeqSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Store(imap.SeqSetNum(4), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Expunge().Collect(); err != nil {
		t.Fatal(err)
	}
	newMsg := mkMail("alice@example.test", "alice@example.test", "From B", "b")
	app := b.Append("INBOX", int64(len(newMsg)), nil)
	app.Write([]byte(newMsg))
	app.Close()
	if _, err := app.Wait(); err != nil {
		t.Fatal(err)
	}

	// A learns about all of it on its next command.
	if err := a.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	// imapclient may run the FETCH handler in a goroutine of its own, so
	// wait for each update rather than for the NOOP.
	upA.waitFor(t, time.Second, "EXPUNGE 4, EXISTS 5 and FETCH 2 (\\Flagged) in A", func() bool {
		return slices.Equal(upA.expunges, []uint32{4}) && upA.lastExists() == 5 &&
			slices.ContainsFunc(upA.fetches, func(f *imapclient.FetchMessageBuffer) bool {
				return f.SeqNum == 2 && slices.Contains(f.Flags, imap.FlagFlagged)
			})
	})

	// A's view and the store agree, sequence number by sequence number.
	msgs, err := a.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Flags: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var uids []imap.UID
	for i, m := range msgs {
		if m.SeqNum != uint32(i+1) {
			t.Errorf("seq %d at position %d", m.SeqNum, i)
		}
		uids = append(uids, m.UID)
	}
	if want := []imap.UID{1, 2, 3, 5, 6}; !slices.Equal(uids, want) {
		t.Errorf("A sees UIDs %v, want %v", uids, want)
	}
}

// TestIdleAnnouncesStoreDelivery: a message the gateway delivers through
// the store while a session IDLEs is announced within a second; so is a
// keyword the gateway sets ($Delivered), and an expunge by another session.
func TestIdleAnnouncesStoreDelivery(t *testing.T) {
	e := newEnv(t, Config{PollInterval: time.Hour}) // only the notifier may do it
	sent, _ := e.store.Mailbox(context.Background(), e.user.ID, "Sent")
	e.deliver("Sent", mkMail("alice@example.test", "bob@example.test", "Outgoing", "x"), `\Seen`)
	up := newUpdates()
	c := e.login(&imapclient.Options{UnilateralDataHandler: up.handler()})
	if _, err := c.Select("Sent", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()

	e.deliver("Sent", mkMail("alice@example.test", "carol@example.test", "Second", "y"))
	up.waitFor(t, time.Second, "EXISTS for a store delivery", func() bool { return up.lastExists() == 2 })

	if _, err := e.store.UpdateFlags(context.Background(), e.user.ID, sent.ID, []uint32{1}, mailmap.FlagsAdd, []string{"$Delivered"}); err != nil {
		t.Fatal(err)
	}
	up.waitFor(t, time.Second, "FETCH FLAGS with $Delivered", func() bool {
		for _, f := range up.fetches {
			if f.SeqNum == 1 && slices.Contains(f.Flags, "$Delivered") && slices.Contains(f.Flags, imap.FlagSeen) {
				return true
			}
		}
		return false
	})
	up.mu.Lock()
	newKeyword := len(up.flags) > 0 && slices.Contains(up.flags[len(up.flags)-1], "$Delivered")
	up.mu.Unlock()
	if !newKeyword {
		t.Error("no FLAGS update listing the new keyword $Delivered")
	}

	other := e.login(nil)
	if _, err := other.Select("Sent", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Move(imap.SeqSetNum(1), "Trash").Wait(); err != nil {
		t.Fatal(err)
	}
	up.waitFor(t, time.Second, "EXPUNGE 1 from another session", func() bool { return slices.Equal(up.expunges, []uint32{1}) })
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
}

// TestPollBackstop: with notifications lost (a store whose Subscribe never
// delivers), the modseq poll still brings changes to an IDLE session.
func TestPollBackstop(t *testing.T) {
	st, u := openStore(t)
	e := serveStore(t, deafStore{st}, u, Config{AllowInsecureAuth: true, PollInterval: 50 * time.Millisecond}, false)
	up := newUpdates()
	c := e.login(&imapclient.Options{UnilateralDataHandler: up.handler()})
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	e.deliver("INBOX", mkMail("bob@example.test", "alice@example.test", "Polled", "x"))
	up.waitFor(t, 2*time.Second, "EXISTS from the poll backstop", func() bool { return up.lastExists() == 1 })
	if _, err := st.UpdateFlags(context.Background(), u.ID, e.inbox.ID, []uint32{1}, mailmap.FlagsAdd, []string{`\Answered`}); err != nil {
		t.Fatal(err)
	}
	up.waitFor(t, 2*time.Second, "FETCH from the poll backstop", func() bool {
		return len(up.fetches) > 0 && slices.Contains(up.fetches[len(up.fetches)-1].Flags, imap.FlagAnswered)
	})
	idle.Close()
	idle.Wait()
}

// deafStore is the real store with change notices switched off.
type deafStore struct{ mailmap.Store }

func (deafStore) Subscribe(int64) (<-chan mailmap.Change, func()) { return nil, func() {} }

// TestPipelining: Apple Mail sends several commands without waiting; the
// answers come back complete and in order (responses are coalesced until
// the server reads again).
func TestPipelining(t *testing.T) {
	e := newEnv(t, Config{})
	for i := range 3 {
		e.deliver("INBOX", mkMail("a@example.test", "b@example.test", fmt.Sprintf("pipelined %d", i), "x"))
	}
	r := e.raw()
	batch := fmt.Sprintf("P1 LOGIN %s %q\r\nP2 SELECT INBOX\r\nP3 UID FETCH 1:* (FLAGS)\r\nP4 UID STORE 2 +FLAGS (\\Seen)\r\nP5 NOOP\r\n", testUser, testPass)
	if _, err := r.conn.Write([]byte(batch)); err != nil {
		t.Fatal(err)
	}
	var tagged []string
	for len(tagged) < 5 {
		l := r.line()
		if strings.HasPrefix(l, "P") {
			tagged = append(tagged, l[:2]+" "+strings.Fields(l)[1])
		}
	}
	if want := []string{"P1 OK", "P2 OK", "P3 OK", "P4 OK", "P5 OK"}; !slices.Equal(tagged, want) {
		t.Errorf("pipelined answers %v, want %v", tagged, want)
	}
}
