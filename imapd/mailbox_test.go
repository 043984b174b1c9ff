package imapd

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/bmgate/bmgate/mailmap"
)

func listNames(t testing.TB, c *imapclient.Client, ref, pattern string, opts *imap.ListOptions) map[string]*imap.ListData {
	t.Helper()
	l, err := c.List(ref, pattern, opts).Collect()
	if err != nil {
		t.Fatalf("LIST %q %q: %v", ref, pattern, err)
	}
	out := make(map[string]*imap.ListData, len(l))
	for _, d := range l {
		out[d.Mailbox] = d
	}
	return out
}

func keys[M ~map[string]V, V any](m M) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestMailboxOperations(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := context.Background()
	c := e.login(nil)

	// LIST "" "" gives the delimiter.
	root, err := c.List("", "", nil).Collect()
	if err != nil || len(root) != 1 || root[0].Delim != '/' || root[0].Mailbox != "" {
		t.Fatalf(`LIST "" "" = %+v, %v`, root, err)
	}

	// CREATE makes the superiors too.
	if err := c.Create("Projects/2026/Q4", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	all := listNames(t, c, "", "*", nil)
	for _, n := range []string{"Projects", "Projects/2026", "Projects/2026/Q4"} {
		if all[n] == nil {
			t.Fatalf("LIST * lacks %s: %v", n, keys(all))
		}
	}
	if !slices.Contains(all["Projects"].Attrs, imap.MailboxAttrHasChildren) || !slices.Contains(all["Projects/2026/Q4"].Attrs, imap.MailboxAttrHasNoChildren) {
		t.Errorf("children attributes: %v / %v", all["Projects"].Attrs, all["Projects/2026/Q4"].Attrs)
	}
	if got := keys(listNames(t, c, "Projects/", "%", nil)); !slices.Equal(got, []string{"Projects/2026"}) {
		t.Errorf(`LIST "Projects/" "%%" = %v`, got)
	}
	if got := keys(listNames(t, c, "", "inbox", nil)); !slices.Equal(got, []string{"INBOX"}) {
		t.Errorf(`LIST "" "inbox" = %v`, got)
	}
	specials := listNames(t, c, "", "*", &imap.ListOptions{SelectSpecialUse: true})
	if got := keys(specials); !slices.Equal(got, []string{"Archive", "Drafts", "Junk", "Sent", "Trash"}) {
		t.Errorf("LIST (SPECIAL-USE) = %v", got)
	}

	// Non-ASCII names travel in modified UTF-7 (RFC 3501 §5.1.3).
	if err := c.Create("Grüße", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if got := keys(listNames(t, c, "", "Gr*", nil)); !slices.Equal(got, []string{"Grüße"}) {
		t.Errorf("LIST Gr* = %v", got)
	}
	if _, err := e.store.Mailbox(ctx, e.user.ID, "Grüße"); err != nil {
		t.Errorf("store name of a UTF-7 mailbox: %v", err)
	}
	if u := e.rawLogin().ok(`LIST "" "Gr*"`); len(u) != 1 || !strings.HasSuffix(u[0], ` "Gr&APwA3w-e"`) {
		t.Errorf("raw LIST of a non-ASCII name: %q", u)
	}

	wantCode(t, "CREATE an existing mailbox", c.Create("Projects", nil).Wait(), imap.ResponseCodeAlreadyExists)
	wantCode(t, "CREATE INBOX", c.Create("inbox", nil).Wait(), imap.ResponseCodeAlreadyExists)
	wantCode(t, "CREATE with a wildcard", c.Create("bad*name", nil).Wait(), imap.ResponseCodeCannot)
	wantCode(t, "CREATE with an empty level", c.Create("a//b", nil).Wait(), imap.ResponseCodeCannot)

	// RENAME moves the children; UIDVALIDITY stays.
	before, _ := e.store.Mailbox(ctx, e.user.ID, "Projects/2026")
	if err := c.Rename("Projects", "Work", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	after, err := e.store.Mailbox(ctx, e.user.ID, "Work/2026")
	if err != nil || after.UIDValidity != before.UIDValidity || after.ID != before.ID {
		t.Errorf("renamed child %+v (%v), before %+v", after, err, before)
	}
	wantCode(t, "RENAME onto an existing mailbox", c.Rename("Work", "Sent", nil).Wait(), imap.ResponseCodeAlreadyExists)
	wantCode(t, "RENAME a missing mailbox", c.Rename("Nope", "Nope2", nil).Wait(), imap.ResponseCodeNonExistent)
	wantCode(t, "RENAME under itself", c.Rename("Work", "Work/inner", nil).Wait(), imap.ResponseCodeCannot)

	// DELETE.
	wantCode(t, "DELETE with children", c.Delete("Work").Wait(), imap.ResponseCodeHasChildren)
	wantCode(t, "DELETE INBOX", c.Delete("INBOX").Wait(), imap.ResponseCodeCannot)
	wantCode(t, "DELETE Sent", c.Delete("Sent").Wait(), imap.ResponseCodeCannot)
	wantCode(t, "DELETE a missing mailbox", c.Delete("Nope").Wait(), imap.ResponseCodeNonExistent)
	for _, n := range []string{"Work/2026/Q4", "Work/2026", "Work"} {
		if err := c.Delete(n).Wait(); err != nil {
			t.Fatalf("DELETE %s: %v", n, err)
		}
	}

	// Subscriptions and LSUB.
	if err := c.Create("Lists", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Subscribe("Lists").Wait(); err != nil {
		t.Fatal(err)
	}
	subs := listNames(t, c, "", "*", &imap.ListOptions{SelectSubscribed: true})
	if subs["Lists"] == nil || !slices.Contains(subs["Lists"].Attrs, imap.MailboxAttrSubscribed) {
		t.Errorf("LIST (SUBSCRIBED) = %v", keys(subs))
	}
	if err := c.Unsubscribe("Lists").Wait(); err != nil {
		t.Fatal(err)
	}
	if subs := listNames(t, c, "", "*", &imap.ListOptions{SelectSubscribed: true}); subs["Lists"] != nil {
		t.Error("still subscribed after UNSUBSCRIBE")
	}
	wantCode(t, "SUBSCRIBE a missing mailbox", c.Subscribe("Nope").Wait(), imap.ResponseCodeNonExistent)

	// LSUB (IMAP4rev1, still sent by Thunderbird without LIST-EXTENDED).
	if err := c.Subscribe("Lists").Wait(); err != nil {
		t.Fatal(err)
	}
	r := e.rawLogin()
	lsub := r.ok(`LSUB "" "*"`)
	for _, want := range []string{`* LSUB (\HasNoChildren \Subscribed) "/" INBOX`, `* LSUB (\HasNoChildren \Subscribed \Sent) "/" "Sent"`,
		`* LSUB (\HasNoChildren \Subscribed) "/" "Lists"`} {
		if !slices.Contains(lsub, want) {
			t.Errorf("LSUB lacks %s: %q", want, lsub)
		}
	}
	if err := c.Unsubscribe("Lists").Wait(); err != nil {
		t.Fatal(err)
	}
	if lsub := r.ok(`LSUB "" "Lists"`); len(lsub) != 0 {
		t.Errorf("LSUB after UNSUBSCRIBE: %q", lsub)
	}

	// RECURSIVEMATCH: an unsubscribed parent of a subscribed child.
	if err := c.Create("Lists/go", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Subscribe("Lists/go").Wait(); err != nil {
		t.Fatal(err)
	}
	rm := listNames(t, c, "", "%", &imap.ListOptions{SelectSubscribed: true, SelectRecursiveMatch: true})
	if rm["Lists"] == nil || rm["Lists"].ChildInfo == nil || !rm["Lists"].ChildInfo.Subscribed || slices.Contains(rm["Lists"].Attrs, imap.MailboxAttrSubscribed) {
		t.Errorf("RECURSIVEMATCH Lists = %+v", rm["Lists"])
	}

	// LIST-STATUS.
	e.deliver("INBOX", mkMail("bob@example.test", "alice@example.test", "Counted", "x"))
	ls := listNames(t, c, "", "%", &imap.ListOptions{ReturnStatus: &imap.StatusOptions{NumMessages: true, NumUnseen: true, Size: true}})
	if st := ls["INBOX"].Status; st == nil || *st.NumMessages != 1 || *st.NumUnseen != 1 || *st.Size == 0 {
		t.Errorf("LIST-STATUS INBOX = %+v", st)
	}

	// Names that do not exist.
	wantCode(t, "SELECT a missing mailbox", func() error { _, err := c.Select("Nope", nil).Wait(); return err }(), imap.ResponseCodeNonExistent)
	wantCode(t, "STATUS a missing mailbox", func() error {
		_, err := c.Status("Nope", &imap.StatusOptions{NumMessages: true}).Wait()
		return err
	}(), imap.ResponseCodeNonExistent)
	msg := mkMail("a@example.test", "b@example.test", "x", "y")
	app := c.Append("Nope", int64(len(msg)), nil)
	app.Write([]byte(msg))
	app.Close()
	_, err = app.Wait()
	wantCode(t, "APPEND to a missing mailbox", err, imap.ResponseCodeTryCreate)
	if _, err := c.Select("inbox", nil).Wait(); err != nil {
		t.Fatalf("SELECT inbox (lower case): %v", err)
	}
	_, err = c.Copy(imap.SeqSetNum(1), "Nope").Wait()
	wantCode(t, "COPY to a missing mailbox", err, imap.ResponseCodeTryCreate)
	_, err = c.Move(imap.SeqSetNum(1), "Nope").Wait()
	wantCode(t, "MOVE to a missing mailbox", err, imap.ResponseCodeTryCreate)

	// RENAME INBOX moves its messages and leaves it empty (RFC 9051 §6.3.6).
	if err := c.Unselect().Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Rename("INBOX", "Old Inbox", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]uint32{"INBOX": 0, "Old Inbox": 1} {
		st, err := c.Status(name, &imap.StatusOptions{NumMessages: true}).Wait()
		if err != nil || *st.NumMessages != want {
			t.Errorf("after RENAME INBOX, %s has %v messages (%v), want %d", name, st, err, want)
		}
	}
}

// TestUIDsStable: UIDVALIDITY never changes for a mailbox, UIDs are never
// reused after expunge, and EXAMINE is read-only.
func TestUIDsStable(t *testing.T) {
	e := newEnv(t, Config{})
	c := e.login(nil)
	e.deliver("INBOX", mkMail("a@example.test", "b@example.test", "one", "1"))
	e.deliver("INBOX", mkMail("a@example.test", "b@example.test", "two", "2"))
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Store(imap.UIDSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.UIDExpunge(imap.UIDSetNum(1, 2)).Collect(); err != nil {
		t.Fatal(err)
	}
	e.deliver("INBOX", mkMail("a@example.test", "b@example.test", "three", "3"))
	c.Unselect().Wait()
	sel2, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sel2.UIDValidity != sel.UIDValidity || sel2.NumMessages != 2 || sel2.UIDNext != 4 {
		t.Errorf("reselect: %+v, first %+v", sel2, sel)
	}
	msgs, _ := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true}).Collect()
	if len(msgs) != 2 || msgs[0].UID != 1 || msgs[1].UID != 3 {
		t.Errorf("UIDs after expunge and delivery: %+v", msgs)
	}

	// EXAMINE: no \Seen side effect, no STORE, no MOVE; EXPUNGE is a no-op.
	if _, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{}}}).Collect(); err != nil {
		t.Fatal(err)
	}
	_, err = c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Collect()
	wantCode(t, "STORE in EXAMINE", err, imap.ResponseCodeCannot)
	_, err = c.Move(imap.SeqSetNum(1), "Trash").Wait()
	wantCode(t, "MOVE in EXAMINE", err, imap.ResponseCodeCannot)
	stored, _ := e.store.Messages(context.Background(), e.user.ID, e.inbox.ID)
	if len(stored) != 2 || len(stored[0].Flags) != 0 {
		t.Errorf("EXAMINE changed the mailbox: %+v", stored)
	}
}

// TestIdleViewCatchesUp: a folder selected again after a while unselected
// (its view kept idle, following nothing) shows what changed meanwhile:
// new, expunged and flagged messages; and a user's hub keeps at most
// idleViews idle views.
func TestIdleViewCatchesUp(t *testing.T) {
	e := newEnv(t, Config{})
	for i := range 3 {
		e.deliver("INBOX", mkMail("bob@example.test", "alice@example.test", fmt.Sprint("m", i), "x"))
	}
	r := e.rawLogin()
	r.ok("SELECT INBOX")
	r.ok("UNSELECT")
	ctx := context.Background()
	e.deliver("INBOX", mkMail("bob@example.test", "alice@example.test", "m3", "x"))
	if _, err := e.store.UpdateFlags(ctx, e.user.ID, e.inbox.ID, []uint32{1}, mailmap.FlagsAdd, []string{`\Flagged`}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.UpdateFlags(ctx, e.user.ID, e.inbox.ID, []uint32{2}, mailmap.FlagsAdd, []string{`\Deleted`}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Expunge(ctx, e.user.ID, e.inbox.ID, nil); err != nil {
		t.Fatal(err)
	}
	u := r.ok("SELECT INBOX")
	if !slices.Contains(u, "* 3 EXISTS") {
		t.Errorf("SELECT after changes: %q", u)
	}
	got := r.ok("UID FETCH 1:* (FLAGS)")
	want := []string{`* 1 FETCH (UID 1 FLAGS (\Flagged))`, `* 2 FETCH (UID 3 FLAGS ())`, `* 3 FETCH (UID 4 FLAGS ())`}
	if !slices.Equal(got, want) {
		t.Errorf("FETCH after changes:\n%q\nwant\n%q", got, want)
	}
	r.ok("UNSELECT")

	for i := range idleViews + 3 {
		name := fmt.Sprint("F", i)
		r.ok("CREATE %s", name)
		r.ok("SELECT %s", name)
		r.ok("UNSELECT")
	}
	e.srv.mu.Lock()
	h := e.srv.users[e.user.ID]
	e.srv.mu.Unlock()
	h.mu.Lock()
	n := len(h.views)
	h.mu.Unlock()
	if n != idleViews {
		t.Errorf("%d idle views kept, want %d", n, idleViews)
	}
}
