package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/bmgate/bmgate/mailmap"
)

// Run runs the conformance suite. open must return a new Store over a new,
// empty database, closed when t ends.
func Run(t *testing.T, open func(t *testing.T) mailmap.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s mailmap.Store)
	}{
		{"Users", testUsers},
		{"LoginByAddress", testLoginByAddress},
		{"SendRate", testSendRate},
		{"UserNames", testUserNames},
		{"DeleteUser", testDeleteUser},
		{"Identities", testIdentities},
		{"IdentitySettings", testIdentitySettings},
		{"SenderLists", testSenderLists},
		{"EnqueueOutboxOnce", testEnqueueOutboxOnce},
		{"ContactsAndSubscriptions", testContactsSubscriptions},
		{"PubkeyCache", testPubkeys},
		{"DefaultMailboxes", testDefaultMailboxes},
		{"CreateMailbox", testCreateMailbox},
		{"RenameMailbox", testRenameMailbox},
		{"DeleteMailbox", testDeleteMailbox},
		{"RecreatedMailboxNewUIDValidity", testRecreateMailbox},
		{"AppendAndUIDs", testAppendUIDs},
		{"MessagesRaw", testMessagesRaw},
		{"HeaderIndex", testHeaderIndex},
		{"MessageID", testMessageID},
		{"Flags", testFlags},
		{"CopyMoveExpunge", testCopyMoveExpunge},
		{"MoveWithinMailbox", testMoveSameMailbox},
		{"FindByMessageID", testFindByMessageID},
		{"Quota", testQuota},
		{"Isolation", testIsolation},
		{"Outbox", testOutbox},
		{"OutboxClaim", testOutboxClaim},
		{"OutboxTransitions", testOutboxTransitions},
		{"OutboxReports", testOutboxReports},
		{"PoWJobs", testPoWJobs},
		{"ObjectBackoffFromStore", testObjectBackoffFromStore},
		{"PoWJobsOfOutbox", testPoWJobsOfOutbox},
		{"OutboxTo", testOutboxTo},
		{"OutboxLookups", testOutboxLookups},
		{"APIRows", testAPIRows},
		{"Encodings", testEncodings},
		{"PendingSends", testPendingSends},
		{"Inventory", testInventory},
		{"PendingObjects", testPendingObjects},
		{"ClaimObjects", testClaimObjects},
		{"DeliverOnce", testDeliverOnce},
		{"Import", testImport},
		{"ObjectFailures", testObjectFailures},
		{"ExpireDeliveries", testExpireDeliveries},
		{"KnownNodes", testKnownNodes},
		{"Notifier", testNotifier},
		{"NotifierOverflow", testNotifierOverflow},
		{"ConcurrentDelivery", testConcurrentDelivery},
		{"ConcurrentClaims", testConcurrentClaims},
		{"CancelledContexts", testCancel},
		{"AccountsGeneration", testAccountsGeneration},
		{"UserActive", testUserActive},
		{"LoginGuard", testLoginGuard},
		{"LoginGuardConcurrent", testLoginGuardConcurrent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, open(t))
		})
	}
}

// Helpers shared by the tests.

const password = "correct horse battery staple"

func newUser(t testing.TB, s mailmap.Store, name string) mailmap.User {
	t.Helper()
	u, err := s.CreateUser(context.Background(), name, password)
	if err != nil {
		t.Fatalf("CreateUser(%q): %v", name, err)
	}
	return u
}

func mailbox(t testing.TB, s mailmap.Store, userID int64, name string) mailmap.Mailbox {
	t.Helper()
	m, err := s.Mailbox(context.Background(), userID, name)
	if err != nil {
		t.Fatalf("Mailbox(%d, %q): %v", userID, name, err)
	}
	return m
}

// message returns a small RFC 5322 message with Message-ID <id@test>.
func message(id string) []byte {
	return fmt.Appendf(nil, "From: a@example.org\r\nTo: b@example.org\r\nSubject: test %s\r\nMessage-ID: <%s@test>\r\n\r\nBody of %s.\r\n", id, id, id)
}

func appendMsg(t testing.TB, s mailmap.Store, userID, mailboxID int64, raw []byte, flags ...string) mailmap.Message {
	t.Helper()
	m, err := s.AppendMessage(context.Background(), userID, mailboxID, raw, flags, time.Time{})
	if err != nil {
		t.Fatalf("AppendMessage: %v", err)
	}
	return m
}

func messages(t testing.TB, s mailmap.Store, userID, mailboxID int64) []mailmap.Message {
	t.Helper()
	ms, err := s.Messages(context.Background(), userID, mailboxID)
	if err != nil {
		t.Fatalf("Messages: %v", err)
	}
	return ms
}

func uids(ms []mailmap.Message) []uint32 {
	out := make([]uint32, len(ms))
	for i, m := range ms {
		out[i] = m.UID
	}
	return out
}

func wantErr(t testing.TB, err, target error, what string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want %v", what, err, target)
	}
}

func noErr(t testing.TB, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func status(t testing.TB, s mailmap.Store, userID, mailboxID int64) mailmap.MailboxStatus {
	t.Helper()
	st, err := s.MailboxStatus(context.Background(), userID, mailboxID)
	if err != nil {
		t.Fatalf("MailboxStatus: %v", err)
	}
	return st
}

// checkUsage proves the bytes the store counts against the user's quota
// equal want: with the quota at want nothing more fits, with want+1 one
// byte would (the probe fails with ErrOverQuota either way, since appends
// are bigger than 1 byte, so it uses an exact-size probe message).
func checkUsage(t testing.TB, s mailmap.Store, userID, mailboxID int64, want int64) {
	t.Helper()
	ctx := context.Background()
	probe := []byte("Subject: probe\r\n\r\nx")
	n := int64(len(probe))
	noErr(t, s.SetQuota(ctx, userID, want+n-1), "SetQuota")
	_, err := s.AppendMessage(ctx, userID, mailboxID, probe, nil, time.Time{})
	wantErr(t, err, mailmap.ErrOverQuota, fmt.Sprintf("usage probe with quota %d (want usage %d)", want+n-1, want))
	noErr(t, s.SetQuota(ctx, userID, want+n), "SetQuota")
	m, err := s.AppendMessage(ctx, userID, mailboxID, probe, []string{`\Deleted`}, time.Time{})
	if err != nil {
		t.Fatalf("usage probe with quota %d: %v (usage is above %d)", want+n, err, want)
	}
	gone, err := s.Expunge(ctx, userID, mailboxID, []uint32{m.UID})
	noErr(t, err, "Expunge probe")
	if !slices.Equal(gone, []uint32{m.UID}) {
		t.Fatalf("Expunge probe: removed %v", gone)
	}
	noErr(t, s.SetQuota(ctx, userID, 0), "SetQuota")
}

func sumSizes(ms []mailmap.Message) int64 {
	var n int64
	for _, m := range ms {
		n += m.Size
	}
	return n
}
