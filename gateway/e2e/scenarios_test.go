package e2e_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-smtp"

	"github.com/bmgate/bmgate/gateway"
	"github.com/bmgate/bmgate/mailmap"
	"github.com/bmgate/bmgate/mailmap/storetest"
)

const wait = 20 * time.Second

func TestSendReplyAndAck(t *testing.T) {
	a := newSite(t, "a", nil)
	b := newSite(t, "b", nil, a)
	alice, aliceBM := a.user("alice")
	bob, bobBM := b.user("bob")

	msgID, err := a.send("alice", aliceBM, []string{mailOf(bobBM)}, "Hello Bob", "Grüße über Bitmessage.", "", sendOpts{})
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	// Thunderbird files its own Sent copy by APPEND after the SMTP transaction.
	sent, err := a.store.MailboxBySpecialUse(context.Background(), alice.ID, mailmap.SpecialSent)
	if err != nil {
		t.Fatal(err)
	}
	copyRaw := []byte("From: " + mailOf(aliceBM) + "\r\nTo: " + mailOf(bobBM) + "\r\nSubject: Hello Bob\r\nMessage-ID: <" + msgID + ">\r\n\r\nGrüße über Bitmessage.\r\n")
	if _, err := a.store.AppendMessage(context.Background(), alice.ID, sent.ID, copyRaw, []string{`\Seen`}, time.Now()); err != nil {
		t.Fatal(err)
	}

	raw := b.waitMail(bob, "INBOX", wait, hasSubject("Hello Bob"))
	if got := header(raw, "From"); !strings.Contains(got, aliceBM+"@"+testDomain) {
		t.Errorf("From = %q, want %s", got, mailOf(aliceBM))
	}
	if got := header(raw, "To"); !strings.Contains(got, bobBM+"@"+testDomain) {
		t.Errorf("To = %q", got)
	}
	// A Message-ID alone does not make it encoding 3 (notbit reads only 2):
	// Bob's side names it by its inventory hash.
	theirID := header(raw, "X-Bitmessage-Inventory") + "@" + testDomain
	if got := header(raw, "Message-Id"); got != "<"+theirID+">" {
		t.Errorf("Message-ID = %q, want <%s> (encoding 2)", got, theirID)
	}
	if body := bodyOf(t, raw); !strings.Contains(body, "Grüße über Bitmessage.") {
		t.Errorf("body = %q", body)
	}
	items := a.waitOutbox(alice, mailmap.OutboxAcked, wait)
	if items[0].Attempts != 1 {
		t.Errorf("attempts = %d, want 1", items[0].Attempts)
	}
	if st := a.gw.Stats(); st.Acks != 1 || st.MessagesOut < 1 || st.PoWTrials == 0 || len(st.PoWJobs) != 0 {
		t.Errorf("sender stats after the ack: %+v", st)
	}
	if st := b.gw.Stats(); st.MessagesIn != 1 {
		t.Errorf("recipient stats: %+v", st)
	}
	// The Sent copy gets $Delivered once the ack is back.
	deadline := time.Now().Add(wait)
	for {
		msgs, err := a.store.FindByMessageID(context.Background(), alice.ID, mailmap.SpecialSent, msgID)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) == 1 && hasFlagTest(msgs[0].Flags, gateway.DeliveredKeyword) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Sent copy never got %s: %+v", gateway.DeliveredKeyword, msgs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// No report was asked for: none arrives.
	a.waitSettled(alice, wait)
	if n := a.count(alice, "INBOX", isReport); n != 0 {
		t.Errorf("%d unasked delivery reports", n)
	}

	// Bob replies to the id his client saw; the reply threads under
	// Alice's message on her side.
	_, err = b.send("bob", bobBM, []string{mailOf(aliceBM)}, "Re: Hello Bob", "Thanks!",
		"In-Reply-To: <"+theirID+">\r\nReferences: <"+theirID+">\r\n", sendOpts{})
	if err != nil {
		t.Fatalf("reply: %v", err)
	}
	reply := a.waitMail(alice, "INBOX", wait, hasSubject("Re: Hello Bob"))
	if got := header(reply, "In-Reply-To"); got != "<"+msgID+">" {
		t.Errorf("In-Reply-To = %q, want <%s>", got, msgID)
	}
	if got := header(reply, "References"); !strings.Contains(got, msgID) {
		t.Errorf("References = %q", got)
	}
	b.waitOutbox(bob, mailmap.OutboxAcked, wait)
}

func hasFlagTest(flags []string, f string) bool {
	for _, x := range flags {
		if x == f {
			return true
		}
	}
	return false
}

func isReport(raw []byte) bool {
	return strings.Contains(header(raw, "Content-Type"), "multipart/report")
}

func TestChanPostAcrossGateways(t *testing.T) {
	a := newSite(t, "a", nil)
	b := newSite(t, "b", nil, a)
	alice, _ := a.user("alice")
	carol, _ := b.user("carol")
	chanA := a.joinChan(alice, "bmgate e2e")
	chanB := b.joinChan(carol, "bmgate e2e")
	erin, _ := b.user("erin") // a second member of the chan on the same server
	b.joinChan(erin, "bmgate e2e")
	if chanA != chanB {
		t.Fatalf("chan addresses differ: %s vs %s", chanA, chanB)
	}
	if _, err := a.send("alice", chanA, []string{mailOf(chanA)}, "Chan hello", "to everyone in the chan", "", sendOpts{}); err != nil {
		t.Fatalf("send to chan: %v", err)
	}
	folder := gateway.ChanFolder("[chan] bmgate e2e", chanA)
	raw := b.waitMail(carol, folder, wait, hasSubject("Chan hello"))
	if got := header(raw, "From"); !strings.Contains(got, chanA) {
		t.Errorf("From = %q, want the chan address", got)
	}
	a.waitMail(alice, folder, wait, hasSubject("Chan hello"))
	b.waitMail(erin, folder, wait, hasSubject("Chan hello"))
	// Folders the gateway creates are subscribed, or Thunderbird hides them.
	for _, name := range []string{gateway.ChanFolderPrefix, folder} {
		mb, err := b.store.Mailbox(context.Background(), carol.ID, name)
		if err != nil || !mb.Subscribed {
			t.Errorf("folder %s: %+v, %v; want it subscribed", name, mb, err)
		}
	}
	// Chans have no acks: the row ends as sent, never acked.
	a.waitOutbox(alice, mailmap.OutboxSent, wait)
}

func TestBroadcastToSubscriber(t *testing.T) {
	a := newSite(t, "a", nil)
	b := newSite(t, "b", nil, a)
	alice, aliceBM := a.user("alice")
	dave, _ := b.user("dave")
	if _, err := b.store.AddSubscription(context.Background(), mailmap.Subscription{UserID: dave.ID, Address: aliceBM, Label: "Alice's news"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.send("alice", aliceBM, []string{gateway.BroadcastLocalPart + "@" + testDomain}, "News", "broadcast body", "",
		sendOpts{notify: []smtp.DSNNotify{smtp.DSNNotifySuccess}}); err != nil {
		t.Fatalf("broadcast: %v", err)
	}
	raw := b.waitMail(dave, gateway.SubscriptionFolder("Alice's news", aliceBM), wait, hasSubject("News"))
	if !strings.Contains(bodyOf(t, raw), "broadcast body") {
		t.Errorf("broadcast body missing")
	}
	// SUCCESS on a broadcast gives "relayed", never a false "delivered".
	rep := a.waitMail(alice, "INBOX", wait, isReport)
	if fields := dsnFields(t, rep); fields["Action"] != "relayed" {
		t.Errorf("Action = %q, want relayed", fields["Action"])
	}
}

func TestRestartDuringSend(t *testing.T) {
	a := newSite(t, "a", nil)
	b := newSite(t, "b", nil, a)
	alice, aliceBM := a.user("alice")
	bob, bobBM := b.user("bob")
	b.stop() // bob's gateway is offline before his pubkey ever went out

	if _, err := a.send("alice", aliceBM, []string{mailOf(bobBM)}, "Across a restart", "still arrives", "",
		sendOpts{notify: []smtp.DSNNotify{smtp.DSNNotifySuccess}}); err != nil {
		t.Fatalf("send: %v", err)
	}
	a.waitOutbox(alice, mailmap.OutboxAwaitingPubkey, wait)
	a.restart()
	b.peers = []string{a.p2pAddr}
	b.start()
	b.waitMail(bob, "INBOX", wait, hasSubject("Across a restart"))
	a.waitOutbox(alice, mailmap.OutboxAcked, wait)
	// The report asked for before the restart still comes, exactly once.
	a.waitMail(alice, "INBOX", wait, isReport)
	a.waitSettled(alice, wait)
	if n := a.count(alice, "INBOX", isReport); n != 1 {
		t.Errorf("%d reports, want 1", n)
	}
}

// otherLastChar changes an address's last character, so its checksum fails
// (replacing it with a fixed one left the address valid when it already
// ended in that character: one run in 58).
func otherLastChar(bm string) string {
	last := byte('x')
	if bm[len(bm)-1] == last {
		last = 'y'
	}
	return bm[:len(bm)-1] + string(last)
}

func TestSubmissionRefusals(t *testing.T) {
	a := newSite(t, "a", nil)
	alice, aliceBM := a.user("alice")
	_, malloryBM := a.user("mallory")
	_, bobBM := newSite(t, "b", nil).user("bob")

	cases := []struct {
		name, from string
		to         []string
		headers    string
		want       string
	}{
		{"someone else's identity", malloryBM, []string{mailOf(bobBM)}, "", "550"},
		{"outside the domain", aliceBM, []string{"someone@example.org"}, "", "550"},
		{"case-mangled address", aliceBM, []string{strings.ToLower(bobBM) + "@" + testDomain}, "", "550"},
		{"bad checksum", aliceBM, []string{otherLastChar(bobBM) + "@" + testDomain}, "", "550"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := a.send("alice", tc.from, tc.to, "refused", "body", tc.headers, sendOpts{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %s", err, tc.want)
			}
		})
	}
	// Attachments travel now (TestAttachmentsAcrossGateways); encrypted
	// MIME still cannot.
	t.Run("encrypted", func(t *testing.T) {
		c, err := smtp.Dial(a.smtpAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Auth(plainAuth("alice", "pw-alice")); err != nil {
			t.Fatal(err)
		}
		msg := "From: " + mailOf(aliceBM) + "\r\nTo: " + mailOf(bobBM) + "\r\nSubject: enc\r\nMIME-Version: 1.0\r\n" +
			"Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=XX\r\n\r\n" +
			"--XX\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n--XX--\r\n"
		err = c.SendMail(mailOf(aliceBM), []string{mailOf(bobBM)}, strings.NewReader(msg))
		if err == nil || !strings.Contains(err.Error(), "554") || !strings.Contains(strings.ToLower(err.Error()), "encrypt") {
			t.Fatalf("encrypted mail accepted or unclear refusal: %v", err)
		}
	})
	t.Run("no auth", func(t *testing.T) {
		c, err := smtp.Dial(a.smtpAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Mail(mailOf(aliceBM), nil); err == nil {
			t.Fatal("MAIL accepted without AUTH")
		}
	})
	items, err := a.store.UserOutbox(context.Background(), alice.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 0 {
		t.Fatalf("refused mail left %d outbox rows", len(items))
	}
}

// dsnFields parses a delivery report and returns the per-recipient fields
// of its message/delivery-status part merged with the per-message ones.
func dsnFields(t *testing.T, raw []byte) map[string]string {
	t.Helper()
	r, err := mail.CreateReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("parse report: %v", err)
	}
	ct, params, _ := r.Header.ContentType()
	if ct != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("Content-Type = %s %v", ct, params)
	}
	fields := map[string]string{}
	var parts []string
	for {
		p, err := r.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("report part: %v", err)
		}
		pct, _, _ := p.Header.(interface {
			ContentType() (string, map[string]string, error)
		}).ContentType()
		parts = append(parts, pct)
		b, _ := io.ReadAll(p.Body)
		if pct == "message/delivery-status" {
			for _, line := range strings.Split(string(b), "\n") {
				k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
				if ok {
					fields[k] = strings.TrimSpace(v)
				}
			}
		}
		if pct == "text/rfc822-headers" || pct == "message/rfc822" {
			fields["_returned"] = string(b)
		}
	}
	fields["_parts"] = strings.Join(parts, ",")
	return fields
}

func TestDSNSuccessAndThreading(t *testing.T) {
	a := newSite(t, "a", nil)
	b := newSite(t, "b", nil, a)
	alice, aliceBM := a.user("alice")
	bob, bobBM := b.user("bob")
	msgID, err := a.send("alice", aliceBM, []string{mailOf(bobBM)}, "Tell me when it arrives", "body", "",
		sendOpts{notify: []smtp.DSNNotify{smtp.DSNNotifySuccess, smtp.DSNNotifyFailure}, ret: smtp.DSNReturnHeaders, envID: "env-42"})
	if err != nil {
		t.Fatal(err)
	}
	b.waitMail(bob, "INBOX", wait, hasSubject("Tell me when it arrives"))
	a.waitOutbox(alice, mailmap.OutboxAcked, wait)
	rep := a.waitMail(alice, "INBOX", wait, isReport)
	f := dsnFields(t, rep)
	if f["Action"] != "delivered" || f["Status"] != "2.0.0" {
		t.Errorf("Action/Status = %q/%q", f["Action"], f["Status"])
	}
	if !strings.Contains(f["Final-Recipient"], mailOf(bobBM)) {
		t.Errorf("Final-Recipient = %q", f["Final-Recipient"])
	}
	if f["Original-Envelope-Id"] != "env-42" {
		t.Errorf("Original-Envelope-Id = %q", f["Original-Envelope-Id"])
	}
	if !strings.Contains(f["_parts"], "text/rfc822-headers") || strings.Contains(f["_returned"], "\r\n\r\nbody") {
		t.Errorf("RET=HDRS should return headers only: parts %s", f["_parts"])
	}
	if !strings.Contains(f["_returned"], "Tell me when it arrives") {
		t.Errorf("returned headers lack the original subject")
	}

	// Read the report's threading headers over IMAP, as a client would.
	c, err := imapclient.DialInsecure(a.imapAddr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("alice", "pw-alice").Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	sec := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"In-Reply-To", "References", "Auto-Submitted"}, Peek: true}
	msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{sec}}).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("fetch: %v (%d)", err, len(msgs))
	}
	hdr := string(msgs[0].FindBodySection(sec))
	for _, want := range []string{"In-Reply-To: <" + msgID + ">", "References: <" + msgID + ">", "Auto-Submitted: auto-replied"} {
		if !strings.Contains(hdr, want) {
			t.Errorf("report headers lack %q:\n%s", want, hdr)
		}
	}
	a.waitSettled(alice, wait)
	if n := a.count(alice, "INBOX", isReport); n != 1 {
		t.Errorf("%d reports, want exactly 1", n)
	}
}

func TestDSNNever(t *testing.T) {
	a := newSite(t, "a", func(c *gateway.Config) { c.PubkeyGiveUp = time.Second })
	b := newSite(t, "b", nil, a)
	alice, aliceBM := a.user("alice")
	bob, bobBM := b.user("bob")
	_, ghostBM := newSite(t, "ghost", nil).user("ghost") // never connected: its pubkey never comes
	if _, err := a.send("alice", aliceBM, []string{mailOf(bobBM), mailOf(ghostBM)}, "Quiet", "no reports", "",
		sendOpts{notify: []smtp.DSNNotify{smtp.DSNNotifyNever}}); err != nil {
		t.Fatal(err)
	}
	b.waitMail(bob, "INBOX", wait, hasSubject("Quiet"))
	deadline := time.Now().Add(wait)
	for {
		items, err := a.store.UserOutbox(context.Background(), alice.ID)
		if err != nil {
			t.Fatal(err)
		}
		states := map[mailmap.OutboxState]int{}
		for _, it := range items {
			states[it.State]++
		}
		if states[mailmap.OutboxAcked] == 1 && states[mailmap.OutboxFailed] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("states = %v", states)
		}
		time.Sleep(50 * time.Millisecond)
	}
	a.waitSettled(alice, wait)
	if n := a.count(alice, "INBOX", isReport); n != 0 {
		t.Errorf("NOTIFY=NEVER gave %d reports", n)
	}
}

func TestDSNFailureAfterGiveUp(t *testing.T) {
	a := newSite(t, "a", func(c *gateway.Config) { c.PubkeyGiveUp = 2 * time.Second })
	alice, aliceBM := a.user("alice")
	_, ghostBM := newSite(t, "ghost", nil).user("ghost")
	// No NOTIFY: FAILURE is the default (RFC 3461 §4.1).
	msgID, err := a.send("alice", aliceBM, []string{mailOf(ghostBM)}, "Into the void", "nobody home", "", sendOpts{})
	if err != nil {
		t.Fatal(err)
	}
	items := a.waitOutbox(alice, mailmap.OutboxFailed, wait)
	if items[0].LastError == "" {
		t.Error("failed row has no reason")
	}
	rep := a.waitMail(alice, "INBOX", wait, isReport)
	f := dsnFields(t, rep)
	if f["Action"] != "failed" || !strings.HasPrefix(f["Status"], "5.") {
		t.Errorf("Action/Status = %q/%q", f["Action"], f["Status"])
	}
	if header(rep, "In-Reply-To") != "<"+msgID+">" {
		t.Errorf("bounce In-Reply-To = %q", header(rep, "In-Reply-To"))
	}
	if !strings.Contains(strings.ToLower(bodyOf(t, rep)), "public key") {
		t.Errorf("bounce does not say the public key never arrived:\n%s", bodyOf(t, rep))
	}
}

func TestDSNDelay(t *testing.T) {
	a := newSite(t, "a", func(c *gateway.Config) { c.MsgTTL = 2 * time.Second })
	alice, aliceBM := a.user("alice")
	b := newSite(t, "b", nil)
	_, bobBM := b.user("bob")
	// Alice knows Bob's pubkey, but Bob's node is never reachable: no ack,
	// so the send is repeated after its TTL and a "delayed" report goes out.
	bobID, err := b.store.IdentityByAddress(context.Background(), bobBM)
	if err != nil {
		t.Fatal(err)
	}
	putPubkeyOf(t, a.store, bobID)
	b.stop()
	if _, err := a.send("alice", aliceBM, []string{mailOf(bobBM)}, "Slow one", "body", "",
		sendOpts{notify: []smtp.DSNNotify{smtp.DSNNotifyDelayed, smtp.DSNNotifyFailure}}); err != nil {
		t.Fatal(err)
	}
	rep := a.waitMail(alice, "INBOX", wait, isReport)
	f := dsnFields(t, rep)
	if f["Action"] != "delayed" || !strings.HasPrefix(f["Status"], "4.") || f["Will-Retry-Until"] == "" {
		t.Errorf("delayed report fields: %v", f)
	}
	// Further resends give no second "delayed" report.
	deadline := time.Now().Add(wait)
	for {
		items, _ := a.store.UserOutbox(context.Background(), alice.ID)
		if len(items) == 1 && items[0].Attempts >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no third attempt: %+v", items)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := a.count(alice, "INBOX", isReport); n != 1 {
		t.Errorf("%d reports, want exactly one delayed report", n)
	}
}

// TestTwoInstancesOneDatabase runs bob's side as two bmgate instances on one
// PostgreSQL database, as a hosted deployment scales out: each message is
// delivered once (instances claim inbound batches of their own; deliveries are idempotent) and each send is
// done once (outbox rows are claimed with SKIP LOCKED).
func TestTwoInstancesOneDatabase(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	a := newSite(t, "a", nil)
	b1 := newSiteOn(t, "b1", dsn, nil, a)
	b2 := newSiteOn(t, "b2", dsn, nil, a, b1)
	alice, aliceBM := a.user("alice")
	bob, bobBM := b1.user("bob")
	for i := range 3 {
		if _, err := a.send("alice", aliceBM, []string{mailOf(bobBM)}, fmt.Sprintf("scale-out %d", i), "body", "", sendOpts{}); err != nil {
			t.Fatal(err)
		}
	}
	// Bob answers through the second instance.
	if _, err := b2.send("bob", bobBM, []string{mailOf(aliceBM)}, "from instance two", "body", "", sendOpts{}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		b2.waitMail(bob, "INBOX", wait, hasSubject(fmt.Sprintf("scale-out %d", i)))
	}
	a.waitMail(alice, "INBOX", wait, hasSubject("from instance two"))
	a.waitOutbox(alice, mailmap.OutboxAcked, wait)
	b1.waitOutbox(bob, mailmap.OutboxAcked, wait)
	a.waitSettled(alice, wait)
	b1.waitSettled(bob, wait)
	for i := range 3 {
		if n := b1.count(bob, "INBOX", hasSubject(fmt.Sprintf("scale-out %d", i))); n != 1 {
			t.Errorf("message %d delivered %d times", i, n)
		}
	}
	if n := a.count(alice, "INBOX", hasSubject("from instance two")); n != 1 {
		t.Errorf("bob's reply arrived %d times", n)
	}
}

// TestReplyWithoutThreadingHeaders: PyBitmessage replies carry no
// Message-ID or In-Reply-To (encoding 2, "Re: " + subject); the gateway
// threads them under the message the user sent to that address.
func TestReplyWithoutThreadingHeaders(t *testing.T) {
	a := newSite(t, "a", nil)
	b := newSite(t, "b", nil, a)
	alice, aliceBM := a.user("alice")
	bob, bobBM := b.user("bob")
	msgID, err := a.send("alice", aliceBM, []string{mailOf(bobBM)}, "Lunch?", "Tomorrow at noon?", "", sendOpts{})
	if err != nil {
		t.Fatal(err)
	}
	b.waitMail(bob, "INBOX", wait, hasSubject("Lunch?"))
	// Bob's reply is plain: no Message-ID, no In-Reply-To (like PyBitmessage's).
	c, err := smtp.Dial(b.smtpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(plainAuth("bob", "pw-bob")); err != nil {
		t.Fatal(err)
	}
	reply := "From: " + mailOf(bobBM) + "\r\nTo: " + mailOf(aliceBM) + "\r\nSubject: Re: Lunch?\r\n\r\nSure.\r\n"
	if err := c.SendMail(mailOf(bobBM), []string{mailOf(aliceBM)}, strings.NewReader(reply)); err != nil {
		t.Fatal(err)
	}
	got := a.waitMail(alice, "INBOX", wait, hasSubject("Re: Lunch?"))
	if irt := header(got, "In-Reply-To"); irt != "<"+msgID+">" {
		t.Errorf("In-Reply-To = %q, want <%s>", irt, msgID)
	}
	// An unrelated subject is not threaded.
	other := "From: " + mailOf(bobBM) + "\r\nTo: " + mailOf(aliceBM) + "\r\nSubject: Re: something else\r\n\r\nHm?\r\n"
	if err := c.SendMail(mailOf(bobBM), []string{mailOf(aliceBM)}, strings.NewReader(other)); err != nil {
		t.Fatal(err)
	}
	got = a.waitMail(alice, "INBOX", wait, hasSubject("Re: something else"))
	if irt := header(got, "In-Reply-To"); irt != "" {
		t.Errorf("unrelated reply threaded under %q", irt)
	}
}

// sendRaw submits a whole message over SMTP as user name.
func (s *site) sendRaw(name, from, to, raw string) {
	s.t.Helper()
	c, err := smtp.Dial(s.smtpAddr)
	if err != nil {
		s.t.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(plainAuth(name, "pw-"+name)); err != nil {
		s.t.Fatal(err)
	}
	if err := c.SendMail(from, []string{to}, strings.NewReader(raw)); err != nil {
		s.t.Fatal(err)
	}
}

// fileSent files a client's Sent copy, as Thunderbird does by APPEND.
func (s *site) fileSent(u mailmap.User, raw string) {
	s.t.Helper()
	mb, err := s.store.MailboxBySpecialUse(context.Background(), u.ID, mailmap.SpecialSent)
	if err != nil {
		s.t.Fatal(err)
	}
	if _, err := s.store.AppendMessage(context.Background(), u.ID, mb.ID, []byte(raw), []string{`\Seen`}, time.Now()); err != nil {
		s.t.Fatal(err)
	}
}

// waitSentDelivered waits until every Sent copy carries $Delivered.
func (s *site) waitSentDelivered(u mailmap.User, n int) {
	s.t.Helper()
	mb, err := s.store.MailboxBySpecialUse(context.Background(), u.ID, mailmap.SpecialSent)
	if err != nil {
		s.t.Fatal(err)
	}
	deadline := time.Now().Add(wait)
	for {
		msgs, err := s.store.Messages(context.Background(), u.ID, mb.ID)
		if err != nil {
			s.t.Fatal(err)
		}
		done := 0
		for _, m := range msgs {
			if hasFlagTest(m.Flags, gateway.DeliveredKeyword) {
				done++
			}
		}
		if len(msgs) == n && done == n {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s: %d of %d Sent copies have %s", s.name, done, len(msgs), gateway.DeliveredKeyword)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestEncodingPolicyAcrossGateways (issue 16): a mail with no threading
// headers goes as encoding 2, with or without a Message-ID, and its Sent
// copy still gets $Delivered; a reply that names the inventory-hash id the
// recipient's side made threads exactly under the Sent copy, also with a
// new subject, once the replier's gateway knows the other reads
// encoding 3.
func TestEncodingPolicyAcrossGateways(t *testing.T) {
	a := newSite(t, "a", nil)
	b := newSite(t, "b", nil, a)
	alice, aliceBM := a.user("alice")
	bob, bobBM := b.user("bob")
	hdr := "From: " + mailOf(aliceBM) + "\r\nTo: " + mailOf(bobBM) + "\r\n"

	// A script's mail: no Message-ID at all.
	script := hdr + "Subject: nightly backup\r\n\r\nAll good.\r\n"
	a.sendRaw("alice", mailOf(aliceBM), mailOf(bobBM), script)
	a.fileSent(alice, script)
	got := b.waitMail(bob, "INBOX", wait, hasSubject("nightly backup"))
	if body := bodyOf(t, got); body != "All good.\r\n" {
		t.Errorf("body %q", body)
	}
	// Thunderbird's mail: a Message-ID, nothing else.
	tb := hdr + "Subject: Plans\r\nMessage-ID: <plans.1@client.test>\r\n\r\nDinner on Friday?\r\n"
	a.sendRaw("alice", mailOf(aliceBM), mailOf(bobBM), tb)
	a.fileSent(alice, tb)
	got = b.waitMail(bob, "INBOX", wait, hasSubject("Plans"))
	theirID := header(got, "X-Bitmessage-Inventory") + "@" + testDomain
	if mid := header(got, "Message-Id"); mid != "<"+theirID+">" {
		t.Errorf("Message-ID %q: the mail did not go as encoding 2", mid)
	}
	a.waitOutbox(alice, mailmap.OutboxAcked, wait)
	for _, it := range a.waitOutbox(alice, mailmap.OutboxAcked, wait) {
		if it.Encoding != 2 {
			t.Errorf("%q went as encoding %d", it.Subject, it.Encoding)
		}
	}
	a.waitSentDelivered(alice, 2)

	// Bob's gateway has seen encoding 3 from alice (another bmgate, a Jabit
	// client): his reply carries its threading headers in encoding 3, and
	// alice's side turns the id his client saw into her Sent copy's.
	if err := b.store.NoteEncoding(context.Background(), aliceBM, 3); err != nil {
		t.Fatal(err)
	}
	reply := "From: " + mailOf(bobBM) + "\r\nTo: " + mailOf(aliceBM) + "\r\nSubject: Friday works\r\nMessage-ID: <r.1@client.test>\r\n" +
		"In-Reply-To: <" + theirID + ">\r\nReferences: <" + theirID + ">\r\n\r\nSee you.\r\n"
	b.sendRaw("bob", mailOf(bobBM), mailOf(aliceBM), reply)
	got = a.waitMail(alice, "INBOX", wait, hasSubject("Friday works"))
	if irt := header(got, "In-Reply-To"); irt != "<plans.1@client.test>" {
		t.Errorf("In-Reply-To = %q, want <plans.1@client.test>", irt)
	}
	if refs := header(got, "References"); refs != "<plans.1@client.test>" {
		t.Errorf("References = %q", refs)
	}
	if mid := header(got, "Message-Id"); mid != "<r.1@client.test>" {
		t.Errorf("Message-ID = %q, want bob's, carried in encoding 3", mid)
	}
	if enc, err := a.store.EncodingSeen(context.Background(), bobBM); err != nil || enc != 3 {
		t.Errorf("alice's side: EncodingSeen(bob) = %d, %v", enc, err)
	}
}

// TestAttachmentsAcrossGateways (issue 16 part B): a mail with a 20 KB
// random binary, a file with a UTF-8 name and an inline image (an HTML
// mail with the image in a multipart/related) goes through SMTP, over the
// test network, and the recipient reads it over IMAP: every attachment
// byte for byte, with its name and type, and go-message parses it. A mail
// too large for one object is refused at DATA and queues nothing.
func TestAttachmentsAcrossGateways(t *testing.T) {
	a := newSite(t, "a", nil)
	b := newSite(t, "b", nil, a)
	alice, aliceBM := a.user("alice")
	bob, bobBM := b.user("bob")

	bin := make([]byte, 20<<10)
	if _, err := rand.Read(bin); err != nil {
		t.Fatal(err)
	}
	png := append([]byte("\x89PNG\r\n\x1a\n"), bin[:512]...)
	notes := []byte("Köln, Zürich – Grüße\n")
	b64 := func(d []byte) string { return wrap76(base64.StdEncoding.EncodeToString(d)) }
	raw := "From: " + mailOf(aliceBM) + "\r\nTo: " + mailOf(bobBM) + "\r\nSubject: Files\r\nMessage-ID: <files.1@client.test>\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"m\"\r\n\r\n" +
		"--m\r\nContent-Type: multipart/alternative; boundary=\"a\"\r\n\r\n" +
		"--a\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe files.\r\n" +
		"--a\r\nContent-Type: multipart/related; boundary=\"r\"\r\n\r\n" +
		"--r\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>The files.<img src=\"cid:img1\"></p>\r\n" +
		"--r\r\nContent-Type: image/png; name=\"logo.png\"\r\nContent-ID: <img1>\r\nContent-Disposition: inline; filename=\"logo.png\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64(png) +
		"--r--\r\n--a--\r\n" +
		"--m\r\nContent-Type: application/octet-stream; name=\"random.bin\"\r\nContent-Disposition: attachment; filename=\"random.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64(bin) +
		"--m\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Disposition: attachment; filename*=utf-8''%C3%9Cbersicht%20M%C3%A4rz.txt\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64(notes) +
		"--m--\r\n"
	a.sendRaw("alice", mailOf(aliceBM), mailOf(bobBM), raw)
	b.waitMail(bob, "INBOX", wait, hasSubject("Files"))

	// Read it as a client does: over IMAP.
	c, err := imapclient.DialInsecure(b.imapAddr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("bob", "pw-bob").Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	sec := &imap.FetchItemBodySection{Peek: true}
	msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{sec}}).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("fetch: %v (%d)", err, len(msgs))
	}
	got := msgs[0].FindBodySection(sec)
	mr, err := mail.CreateReader(bytes.NewReader(got))
	if err != nil {
		t.Fatal(err)
	}
	type part struct{ name, typ, disp string }
	found := map[part][]byte{}
	var text string
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("go-message: %v", err)
		}
		data, err := io.ReadAll(p.Body)
		if err != nil {
			t.Fatal(err)
		}
		var mh mail.AttachmentHeader
		disp := "inline"
		switch h := p.Header.(type) {
		case *mail.InlineHeader:
			mh.Header = h.Header
		case *mail.AttachmentHeader:
			mh.Header, disp = h.Header, "attachment"
		}
		typ, _, _ := mh.ContentType()
		name, err := mh.Filename()
		if err != nil {
			t.Fatalf("filename: %v", err)
		}
		if name == "" && typ == "text/plain" {
			text += string(data)
			continue
		}
		found[part{name, typ, disp}] = data
	}
	if !strings.HasPrefix(text, "The files.") || strings.Contains(text, "your client may not show") {
		t.Errorf("text %q", text)
	}
	want := map[part][]byte{
		{"logo.png", "image/png", "inline"}:                      png,
		{"random.bin", "application/octet-stream", "attachment"}: bin,
		{"Übersicht März.txt", "text/plain", "attachment"}:       notes,
	}
	if len(found) != len(want) {
		t.Errorf("attachments: %d, want %d", len(found), len(want))
	}
	for k, w := range want {
		if g, ok := found[k]; !ok || !bytes.Equal(g, w) {
			t.Errorf("attachment %+v: present %v, %d bytes, want %d identical bytes", k, ok, len(g), len(w))
		}
	}
	if !bytes.Contains(got, []byte("filename*=utf-8''%C3%9Cbersicht")) {
		t.Errorf("the UTF-8 name is not in RFC 2231 form")
	}
	if items := a.waitOutbox(alice, mailmap.OutboxAcked, wait); items[0].Encoding != 3 {
		t.Errorf("encoding %d", items[0].Encoding)
	}
}

// TestAttachmentOverLimitRefused: a mail that cannot fit in one object
// is refused at DATA with a permanent 552 naming the limit, and nothing is
// queued.
func TestAttachmentOverLimitRefused(t *testing.T) {
	a := newSite(t, "a", nil)
	alice, aliceBM := a.user("alice")
	bin := make([]byte, 400<<10)
	if _, err := rand.Read(bin); err != nil {
		t.Fatal(err)
	}
	raw := "From: " + mailOf(aliceBM) + "\r\nTo: " + mailOf(aliceBM) + "\r\nSubject: big\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=big.bin\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		wrap76(base64.StdEncoding.EncodeToString(bin))
	c, err := smtp.Dial(a.smtpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(plainAuth("alice", "pw-alice")); err != nil {
		t.Fatal(err)
	}
	err = c.SendMail(mailOf(aliceBM), []string{mailOf(aliceBM)}, strings.NewReader(raw))
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 552 || !strings.Contains(se.Message, "compressed") || !strings.Contains(se.Message, "2^18") {
		t.Fatalf("DATA answered %v, want 552 naming the limit", err)
	}
	if items, err := a.store.UserOutbox(context.Background(), alice.ID); err != nil || len(items) != 0 {
		t.Fatalf("outbox: %d rows, %v", len(items), err)
	}
}

// wrap76 breaks base64 text into lines of 76 characters.
func wrap76(s string) string {
	var out strings.Builder
	for len(s) > 76 {
		out.WriteString(s[:76] + "\r\n")
		s = s[76:]
	}
	return out.String() + s + "\r\n"
}
