package imapd

import (
	"context"
	"time"

	"github.com/bmgate/bmgate/mailmap"
)

// Store is the part of mailmap.Store the IMAP server uses. Any mailmap.Store
// satisfies it; tests and other backends need only these methods.
//
// imapd relies on the mailmap contract that every change to a mailbox
// (append, flag change, expunge, move in or out) raises its HighestModSeq
// or UIDNext: comparing the two is how a session finds out, cheaply, that
// its view is stale.
type Store interface {
	mailmap.Notifier

	Authenticate(ctx context.Context, name, password string) (mailmap.User, error)
	// UserActive runs before every command of a logged-in session (see
	// mailmap.Store): ErrDisabled or ErrNotFound ends the session.
	UserActive(ctx context.Context, userID int64) error

	Mailboxes(ctx context.Context, userID int64) ([]mailmap.Mailbox, error)
	Mailbox(ctx context.Context, userID int64, name string) (mailmap.Mailbox, error)
	MailboxByID(ctx context.Context, userID, mailboxID int64) (mailmap.Mailbox, error)
	MailboxStatus(ctx context.Context, userID, mailboxID int64) (mailmap.MailboxStatus, error)
	CreateMailbox(ctx context.Context, userID int64, name, specialUse string) (mailmap.Mailbox, error)
	RenameMailbox(ctx context.Context, userID int64, oldName, newName string) error
	DeleteMailbox(ctx context.Context, userID int64, name string) error
	SetSubscribed(ctx context.Context, userID int64, name string, on bool) error

	AppendMessage(ctx context.Context, userID, mailboxID int64, raw []byte, flags []string, date time.Time) (mailmap.Message, error)
	Messages(ctx context.Context, userID, mailboxID int64) ([]mailmap.Message, error)
	MessageRaw(ctx context.Context, userID, mailboxID int64, uid uint32) ([]byte, error)
	// MessagesRaw reads several messages' bytes in one call (FETCH and
	// SEARCH read ahead with it); UIDs with no message are absent.
	MessagesRaw(ctx context.Context, userID, mailboxID int64, uids []uint32) (map[uint32][]byte, error)
	// MessageHeaders reads several messages' header index entries (header
	// section, decoded From/To/Cc/Bcc/Subject) without their bodies: header
	// FETCH and header SEARCH read ahead with it.
	MessageHeaders(ctx context.Context, userID, mailboxID int64, uids []uint32, parts mailmap.HeaderParts) (map[uint32]mailmap.MessageHeader, error)
	UpdateFlags(ctx context.Context, userID, mailboxID int64, uids []uint32, op mailmap.FlagOp, flags []string) ([]mailmap.Message, error)
	CopyMessages(ctx context.Context, userID, srcMailboxID int64, uids []uint32, dstMailboxID int64) (srcUIDs, dstUIDs []uint32, err error)
	MoveMessages(ctx context.Context, userID, srcMailboxID int64, uids []uint32, dstMailboxID int64) (srcUIDs, dstUIDs []uint32, err error)
	Expunge(ctx context.Context, userID, mailboxID int64, uids []uint32) ([]uint32, error)
}

// A compile-time check that the full store contract covers what imapd needs.
var _ Store = mailmap.Store(nil)
