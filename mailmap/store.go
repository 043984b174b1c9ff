package mailmap

import (
	"context"
	"errors"
	"time"

	"github.com/bmgate/bmgate/bmcore/inventory"
	"github.com/bmgate/bmgate/bmcore/wire"
)

// Errors a Store returns. Callers map them to protocol answers; their text
// never names SQL.
var (
	ErrNotFound    = errors.New("mailmap: not found")
	ErrExists      = errors.New("mailmap: already exists")
	ErrAuthFailed  = errors.New("mailmap: invalid credentials")
	ErrDisabled    = errors.New("mailmap: account disabled")
	ErrOverQuota   = errors.New("mailmap: over quota")
	ErrProtected   = errors.New("mailmap: mailbox is protected")
	ErrNewerSchema = errors.New("mailmap: database schema is newer than this binary")
	ErrInvalidName = errors.New("mailmap: invalid name")
	ErrHasChildren = errors.New("mailmap: mailbox has children")
	// ErrConflict means a checked transition found the row or job not in
	// the state it expects (another worker, an ack or an operator changed
	// it first). Nothing was written.
	ErrConflict = errors.New("mailmap: changed concurrently")
	// ErrRateLimited means a user's sending rate (SetSendRate) would be
	// exceeded: nothing was enqueued.
	ErrRateLimited = errors.New("mailmap: sending rate exceeded")
)

// User is an account that logs in over SMTP/IMAP.
type User struct {
	ID              int64
	Name            string
	QuotaBytes      int64 // 0 = unlimited
	UsedBytes       int64 // the size of the user's stored mail (what the quota counts)
	SendRate        int64 // messages the user may send an hour; 0 = no limit
	Disabled        bool
	DeliveryReports bool // send a success DSN for every send, even unasked
	CreatedAt       time.Time
}

// IdentityKind says whether an identity is a personal address or a chan.
type IdentityKind string

const (
	KindNormal IdentityKind = "normal"
	KindChan   IdentityKind = "chan"
)

// Identity is a Bitmessage address owned by a user, with its private keys
// (decrypted in memory; encrypted at rest with the store's key).
type Identity struct {
	ID                 int64
	UserID             int64
	Address            string // BM-…
	Label              string
	Kind               IdentityKind
	SigningKey         []byte // 32-byte private key
	EncryptionKey      []byte // 32-byte private key
	ChanPassphrase     string // a chan's passphrase: its keys derive from it, so it is sealed at rest too; "" otherwise
	PublishPubkey      bool
	NonceTrialsPerByte uint64
	ExtraBytes         uint64
	LastPubkeySent     time.Time // zero = never
	CreatedAt          time.Time
	// MailingList is PyBitmessage's mailinglist: every msg the address
	// receives is also broadcast from it to its subscribers, the subject
	// prefixed with [MailingListName] (SetMailingList).
	MailingList     bool
	MailingListName string
}

// Contact maps a friendly email address to a Bitmessage address for one user.
type Contact struct {
	ID      int64
	UserID  int64
	Alias   string // local@domain, lower-cased
	Address string // BM-…
}

// Subscription is a broadcast address a user follows.
type Subscription struct {
	ID      int64
	UserID  int64
	Address string
	Label   string
}

// Pubkey is another node's public key, as cached.
type Pubkey struct {
	Address            string
	Version            uint64
	Stream             uint64
	Bitfield           uint32
	SigningKey         []byte // 64 bytes X||Y
	EncryptionKey      []byte // 64 bytes X||Y
	NonceTrialsPerByte uint64
	ExtraBytes         uint64
	Source             string // "pubkey", "msg", "broadcast", "local"
	LearnedAt          time.Time
}

// Special-use attributes (RFC 6154).
const (
	SpecialSent    = `\Sent`
	SpecialDrafts  = `\Drafts`
	SpecialTrash   = `\Trash`
	SpecialJunk    = `\Junk`
	SpecialArchive = `\Archive`
)

// Mailbox is one IMAP folder of a user.
type Mailbox struct {
	ID            int64
	UserID        int64
	Name          string // hierarchy delimiter "/"; "INBOX" is canonical upper case
	SpecialUse    string // one of the Special* constants, or ""
	Subscribed    bool
	UIDValidity   uint32
	UIDNext       uint32
	HighestModSeq uint64
}

// Message is one message in a mailbox. Raw is filled only by calls that say so.
type Message struct {
	ID           int64
	MailboxID    int64
	UID          uint32
	Flags        []string // system flags (\Seen…) and keywords ($Delivered…)
	InternalDate time.Time
	Size         int64
	MessageID    string // Message-ID header without angle brackets, "" if none
	ModSeq       uint64
	Raw          []byte
}

// MailboxStatus is what STATUS and SELECT need.
type MailboxStatus struct {
	Mailbox
	Messages uint32
	Unseen   uint32
	Size     int64
}

// FlagOp is how UpdateFlags changes flags.
type FlagOp int

const (
	FlagsReplace FlagOp = iota
	FlagsAdd
	FlagsRemove
)

// OutboxState is the state of one outgoing Bitmessage.
type OutboxState string

const (
	OutboxQueued         OutboxState = "queued"
	OutboxAwaitingPubkey OutboxState = "awaiting_pubkey"
	OutboxDoingPoW       OutboxState = "doing_pow"
	OutboxSent           OutboxState = "sent"
	OutboxAcked          OutboxState = "acked"
	OutboxFailed         OutboxState = "failed"
)

// OutboxKind says what the row sends.
type OutboxKind string

const (
	OutboxMsg       OutboxKind = "msg"       // to a person (ack expected when the recipient asks for one)
	OutboxChan      OutboxKind = "chan"      // msg to a chan address: no ack
	OutboxBroadcast OutboxKind = "broadcast" // broadcast from the sender's identity: no ack
)

// DSN notify bits (RFC 3461 NOTIFY).
const (
	NotifySuccess = 1 << iota
	NotifyFailure
	NotifyDelay
	NotifyNever
)

// OutboxItem is one row of the outbox: one recipient of one submitted mail.
type OutboxItem struct {
	ID          int64
	UserID      int64
	FromAddress string // sender identity BM-…
	ToAddress   string // recipient BM-… (the sender's own address for broadcasts)
	Kind        OutboxKind
	Subject     string
	Body        string
	Encoding    uint64 // Bitmessage message encoding (2 or 3)
	Extra       []byte // encoded extras carried with the message (e.g. threading headers), gateway-defined
	MessageID   string // Message-ID of the submitted mail, without brackets
	State       OutboxState
	Attempts    int
	NextAttempt time.Time // when the worker should look at the row again
	TTL         time.Duration
	AckData     []byte // expected ack data (object bytes after nonce+expiresTime), nil when no ack
	InvHash     []byte // hash of the last published msg object
	LastError   string
	PoWDuration time.Duration // accumulated proof-of-work time
	CreatedAt   time.Time
	SentAt      time.Time // zero until published
	AckedAt     time.Time

	// Delivery status (RFC 3461), kept so reports survive restarts.
	Notify        int    // Notify* bits; 0 = not given (FAILURE implied)
	Ret           string // "FULL", "HDRS" or ""
	EnvID         string
	OrigRcpt      string // the recipient as the client wrote it
	DelayReported bool   // a "delayed" report was already sent
	Reported      bool   // the final report (delivered/relayed/failed) was sent
	Original      []byte // the submitted message (for RET=FULL/HDRS); may be nil

	LeaseOwner string // the worker that claimed the row ("" = none)
	PoWJob     int64  // the proof-of-work job the row waits for (0 = none)

	// APIRef is the PyBitmessage-style ackdata the XML-RPC API handed
	// back for this row (gateway/pyapi); set at enqueue, never changed by
	// the pipeline. nil for mail submitted otherwise.
	APIRef []byte
	// Trashed hides the row from the API's sent lists (trashSentMessage);
	// the pipeline ignores it.
	Trashed bool
}

// OutboxStep is one checked transition of an outbox row. The row must be in
// one of From (and leased by Owner, waiting for WaitingJob, carrying
// AckDataIs, where those are given); then it moves to To and only the
// non-nil fields are written. Unless KeepLease, the lease is released;
// unless KeepJob, the row's proof-of-work job is dropped (or replaced by Job).
type OutboxStep struct {
	ID         int64
	From       []OutboxState
	Owner      string
	WaitingJob int64
	AckDataIs  []byte
	To         OutboxState

	Attempts       *int
	NextAttempt    *time.Time
	TTL            *time.Duration
	AckData        *[]byte // an empty slice clears it
	InvHash        []byte
	LastError      *string
	SentAt         *time.Time
	AckedAt        *time.Time
	AddPoWDuration time.Duration

	KeepLease bool
	KeepJob   bool
	Job       *PoWJob // a new job the row then waits for

	Report *OutboxReport
}

// OutboxReport is a delivery status report that commits with a transition.
// It is filed in the sender's INBOX only if its flag (DelayReported for a
// delay report, else Reported) was not yet set, and the flag is set with it.
// A nil Raw sets the flag without filing anything.
type OutboxReport struct {
	Raw   []byte
	Delay bool
}

// PoWJobState is where a proof-of-work job is.
type PoWJobState string

const (
	PoWPending PoWJobState = "pending"
	PoWSolving PoWJobState = "solving"
	PoWSolved  PoWJobState = "solved"
)

// PoWJob is one durable proof of work. Jobs are claimed highest Priority
// first, then by their rank in their user's queue (UserSeq), so that one
// user's many jobs do not hold back another user's one.
type PoWJob struct {
	ID         int64
	Kind       string // msg, broadcast, ack, pubkey, getpubkey
	Priority   int
	UserID     int64 // 0: the node's own work
	UserSeq    int64
	OutboxID   int64  // 0: not tied to an outbox row
	DedupeKey  string // "" or a key at most one job may hold
	Publish    bool   // the scheduler publishes the solved object
	Headless   []byte // the object without its nonce
	Target     uint64
	Expected   uint64 // expected number of trials
	State      PoWJobState
	LeaseOwner string
	LeaseUntil time.Time
	Nonce      uint64 // once solved
	Trials     uint64
	CreatedAt  time.Time
	SolvedAt   time.Time
}

// Change is a notification that a user's mail changed.
type Change struct {
	UserID    int64
	MailboxID int64
	Kind      ChangeKind
	UID       uint32 // for ChangeFlags / ChangeExpunge / ChangeNew, else 0
}

// ChangeKind says what changed.
type ChangeKind int

const (
	ChangeNew       ChangeKind = iota + 1 // a message was added
	ChangeExpunge                         // a message was removed
	ChangeFlags                           // a message's flags changed
	ChangeMailboxes                       // the folder list changed
)

// Notifier delivers Changes to interested sessions, across processes where
// the backend can (PostgreSQL LISTEN/NOTIFY), in-process otherwise.
type Notifier interface {
	// Subscribe returns a channel of changes for one user and a cancel func.
	// The channel is buffered; a slow reader may miss changes and must then
	// resynchronise from the store (a ChangeMailboxes with MailboxID 0 is sent
	// when changes were dropped).
	Subscribe(userID int64) (<-chan Change, func())
}

// Store is the whole persistent model: every group below, as one value
// (both backends implement all of it). Every method that touches mail takes
// the user it acts for and never reaches another user's rows. A consumer
// that needs one group only should hold that group (or its own smaller
// interface) rather than a Store.
type Store interface {
	Accounts
	Pubkeys
	Mail
	Outbox
	PoWQueue
	Inventory
	LoginGuard
	Importer

	Close() error
}

// Accounts is users, their authentication, identities, contacts and
// subscriptions, and the generation that tells caches when any of them
// changed. Used by the gateway (identities and subscriptions for trial
// decryption, contacts for addressing), smtpd and imapd (Authenticate,
// UserActive, through their own smaller interfaces) and the bmgate
// command's user and identity administration.
type Accounts interface {
	// Users.
	CreateUser(ctx context.Context, name, password string) (User, error) // also creates the default mailboxes
	// Authenticate checks a password: ErrAuthFailed, ErrDisabled (right
	// password, disabled account), ErrBusy (no password-hashing slot freed
	// up in time: see SetPasswordHashLimit) or a store error.
	Authenticate(ctx context.Context, name, password string) (User, error)
	User(ctx context.Context, id int64) (User, error)
	UserByName(ctx context.Context, name string) (User, error)
	ListUsers(ctx context.Context) ([]User, error)
	SetPassword(ctx context.Context, userID int64, password string) error
	SetDeliveryReports(ctx context.Context, userID int64, on bool) error
	SetDisabled(ctx context.Context, userID int64, disabled bool) error
	SetQuota(ctx context.Context, userID int64, bytes int64) error      // 0 = unlimited; enforced on append/copy
	SetSendRate(ctx context.Context, userID int64, perHour int64) error // 0 = unlimited; enforced by EnqueueOutbox (ErrRateLimited)
	DeleteUser(ctx context.Context, userID int64) error
	// UserActive reports whether the user may still act: nil, ErrDisabled,
	// ErrNotFound (deleted) or a read error. It is meant for a check before
	// every command of an open session: answers are cached per
	// AccountsGeneration, so when no account changed it costs what
	// AccountsGeneration costs.
	UserActive(ctx context.Context, userID int64) error

	// Accounts generation. Every change to users, identities, contacts or
	// subscriptions, made by any process sharing the database (database
	// triggers raise it, so no code path can skip it), moves it; a cache of
	// account data compares the value it was loaded at and reloads when it
	// differs. Read it before loading, so what is loaded is at least that
	// new. The value is an opaque token: compare it for equality only.
	//
	// AccountsGeneration is cheap: kept in memory on PostgreSQL (raised by
	// LISTEN/NOTIFY, and changed when the listener reconnects, since
	// notifications may have been missed), one small query on SQLite. On
	// PostgreSQL it trails a commit by another process (or this one) by the
	// notification's delay.
	AccountsGeneration(ctx context.Context) (uint64, error)
	// ReadAccountsGeneration reads the generation from the database itself,
	// for a caller that must see a change another process committed a
	// moment ago (a miss in a cache); it also brings the in-memory value
	// AccountsGeneration returns up to date. Same value space as
	// AccountsGeneration.
	ReadAccountsGeneration(ctx context.Context) (uint64, error)

	// Identities.
	AddIdentity(ctx context.Context, id Identity) (Identity, error)
	Identities(ctx context.Context, userID int64) ([]Identity, error)
	AllIdentities(ctx context.Context) ([]Identity, error) // every user's; for trial decryption
	// IdentityByAddress returns the identity with that address (for a chan
	// joined by several users, the first one to join).
	IdentityByAddress(ctx context.Context, address string) (Identity, error)
	// IdentitiesByAddress returns every user's identity with that address:
	// one for a personal address, one per member for a chan.
	IdentitiesByAddress(ctx context.Context, address string) ([]Identity, error)
	MarkPubkeySent(ctx context.Context, identityID int64, at time.Time) error
	DeleteIdentity(ctx context.Context, userID, identityID int64) error
	// SetIdentityDifficulty sets the proof of work the identity demands
	// (what its pubkey carries) and clears LastPubkeySent, so the new
	// pubkey is published at once. ErrNotFound: not the user's identity.
	SetIdentityDifficulty(ctx context.Context, userID, identityID int64, nonceTrialsPerByte, extraBytes uint64) error
	// SetMailingList turns the identity's mailing list on or off, with
	// its name. ErrNotFound: not the user's identity, or a chan.
	SetMailingList(ctx context.Context, userID, identityID int64, on bool, name string) error

	// Sender lists (PyBitmessage's blacklist and whitelist, per user;
	// senderlists.go). The mode says which list applies; Blacklist is the
	// default.
	SetListMode(ctx context.Context, userID int64, mode ListKind) error
	ListMode(ctx context.Context, userID int64) (ListKind, error)
	AddListEntry(ctx context.Context, e ListEntry) (ListEntry, error) // ErrExists: on that list already
	SetListEntryEnabled(ctx context.Context, userID int64, kind ListKind, address string, on bool) error
	DeleteListEntry(ctx context.Context, userID int64, kind ListKind, address string) error
	ListEntries(ctx context.Context, userID int64) ([]ListEntry, error)
	// SenderAllowed applies the user's mode and lists to a sender;
	// whitelisted says whether an enabled whitelist entry names it,
	// whatever the mode. ErrNotFound: no such user.
	SenderAllowed(ctx context.Context, userID int64, address string) (allowed, whitelisted bool, err error)

	// Contacts and subscriptions.
	AddContact(ctx context.Context, c Contact) (Contact, error)
	Contacts(ctx context.Context, userID int64) ([]Contact, error)
	DeleteContact(ctx context.Context, userID int64, alias string) error
	ResolveAlias(ctx context.Context, userID int64, alias string) (string, error)
	AddSubscription(ctx context.Context, s Subscription) (Subscription, error)
	Subscriptions(ctx context.Context, userID int64) ([]Subscription, error)
	// DeleteSubscription stops following address (ErrNotFound: not followed).
	DeleteSubscription(ctx context.Context, userID int64, address string) error
	AllSubscriptions(ctx context.Context) ([]Subscription, error)
}

// Pubkeys is the cache of other nodes' public keys. Used by the gateway
// (sending needs the recipient's pubkey) and the bmgate command.
type Pubkeys interface {
	PutPubkey(ctx context.Context, p Pubkey) error
	Pubkey(ctx context.Context, address string) (Pubkey, error)

	// NoteEncoding records that a msg or broadcast in that message
	// encoding arrived from address; EncodingSeen returns the highest one
	// recorded (0: none). The gateway sends encoding 3 only to addresses
	// known to read it.
	NoteEncoding(ctx context.Context, address string, encoding uint64) error
	EncodingSeen(ctx context.Context, address string) (uint64, error)
}

// Mail is mailboxes and messages: folders, appends, flags, copy, move and
// expunge, lookups by Message-ID, once-only delivery, and change
// notification. Used by imapd (through its own Store interface), the
// gateway (filing inbound mail, Sent copies and reports, threading) and
// the bmgate command (folder set-up).
type Mail interface {
	Notifier

	// Mailboxes.
	Mailboxes(ctx context.Context, userID int64) ([]Mailbox, error)
	Mailbox(ctx context.Context, userID int64, name string) (Mailbox, error)
	MailboxByID(ctx context.Context, userID, mailboxID int64) (Mailbox, error)
	MailboxBySpecialUse(ctx context.Context, userID int64, use string) (Mailbox, error)
	MailboxStatus(ctx context.Context, userID, mailboxID int64) (MailboxStatus, error)
	CreateMailbox(ctx context.Context, userID int64, name, specialUse string) (Mailbox, error)
	RenameMailbox(ctx context.Context, userID int64, oldName, newName string) error // children move too
	DeleteMailbox(ctx context.Context, userID int64, name string) error
	SetSubscribed(ctx context.Context, userID int64, name string, on bool) error

	// Messages. uids are ascending; a nil uid list in Expunge means every \Deleted message.
	AppendMessage(ctx context.Context, userID, mailboxID int64, raw []byte, flags []string, date time.Time) (Message, error)
	Messages(ctx context.Context, userID, mailboxID int64) ([]Message, error) // metadata only, UID order
	MessageRaw(ctx context.Context, userID, mailboxID int64, uid uint32) ([]byte, error)
	// MessagesRaw reads the bytes of several messages of one mailbox in one
	// query (per 500 UIDs), keyed by UID. UIDs with no message (expunged,
	// never there) are absent from the map; that is not an error.
	MessagesRaw(ctx context.Context, userID, mailboxID int64, uids []uint32) (map[uint32][]byte, error)
	// MessageHeaders reads the header index entries of several messages of
	// one mailbox (see MessageHeader), keyed by UID, without reading their
	// bodies; UIDs with no message are absent. Only the given parts are
	// read and filled in. Every message has an entry: one stored before the
	// index existed is built from its body until the background backfill
	// has indexed it.
	MessageHeaders(ctx context.Context, userID, mailboxID int64, uids []uint32, parts HeaderParts) (map[uint32]MessageHeader, error)
	UpdateFlags(ctx context.Context, userID, mailboxID int64, uids []uint32, op FlagOp, flags []string) ([]Message, error)
	CopyMessages(ctx context.Context, userID, srcMailboxID int64, uids []uint32, dstMailboxID int64) (srcUIDs, dstUIDs []uint32, err error)
	MoveMessages(ctx context.Context, userID, srcMailboxID int64, uids []uint32, dstMailboxID int64) (srcUIDs, dstUIDs []uint32, err error)
	Expunge(ctx context.Context, userID, mailboxID int64, uids []uint32) ([]uint32, error)
	// FindByMessageID returns messages of the user with that Message-ID, in
	// mailboxes with the given special use ("" = any).
	FindByMessageID(ctx context.Context, userID int64, specialUse, messageID string) ([]Message, error)

	// DeliverOnce files a message for a user at most once per key (the
	// inventory hash of the object it came from): in one transaction it
	// records (userID, key) and appends the message as AppendMessage does.
	// When the key is already recorded for that user it appends nothing and
	// reports duplicate, so an object processed again (after a crash before
	// MarkProcessed, a retry after another owner's delivery failed, or by a
	// second instance) files no second copy. A failed append (ErrOverQuota,
	// …) records nothing. Keys are pruned with their object by Expire.
	DeliverOnce(ctx context.Context, userID, mailboxID int64, key, raw []byte, flags []string, date time.Time) (m Message, duplicate bool, err error)
}

// Outbox is the queue of outgoing Bitmessages: enqueue (smtpd's submitter,
// through the gateway), claim, checked transitions and release (the
// gateway's outbox worker), and queries (acks, status, the bmgate command).
type Outbox interface {
	// Outbox. Enqueue commits all rows in one transaction.
	EnqueueOutbox(ctx context.Context, items []OutboxItem) ([]OutboxItem, error)
	// EnqueueOutboxOnce enqueues the rows (all of userID) at most once per
	// (userID, key), recording the key in the same transaction; when the
	// key is recorded already it enqueues nothing and reports duplicate.
	// Keys are pruned with their object by Expire (a mailing list's
	// re-broadcast is keyed by the received object's inventory hash).
	EnqueueOutboxOnce(ctx context.Context, userID int64, key []byte, items []OutboxItem) (out []OutboxItem, duplicate bool, err error)
	// ClaimOutbox atomically takes up to limit rows in the given states whose
	// NextAttempt is due, pushing their NextAttempt to now+lease so no other
	// worker (or process) takes them meanwhile.
	// The rows are leased to owner; rows of disabled users are not claimed.
	ClaimOutbox(ctx context.Context, states []OutboxState, now time.Time, lease time.Duration, limit int, owner string) ([]OutboxItem, error)
	// TransitionOutbox applies a checked transition (ErrConflict when the
	// row is not as the step expects) and returns the row as written.
	TransitionOutbox(ctx context.Context, step OutboxStep) (OutboxItem, error)
	// ReleaseOutbox makes the rows leased by owner due at once.
	ReleaseOutbox(ctx context.Context, owner string, now time.Time) error
	OutboxItem(ctx context.Context, id int64) (OutboxItem, error)
	OutboxByAckData(ctx context.Context, ackData []byte) (OutboxItem, error)
	OutboxCounts(ctx context.Context) (map[OutboxState]int, error)
	UserOutbox(ctx context.Context, userID int64) ([]OutboxItem, error)
	// TrashOutbox marks the user's rows trashed (hidden from the XML-RPC
	// API's sent lists; sending goes on) and reports how many it marked.
	TrashOutbox(ctx context.Context, userID int64, ids []int64) (int64, error)
	// OutboxTo returns the user's latest rows (newest first, at most limit)
	// sent from one address to another.
	OutboxTo(ctx context.Context, userID int64, from, to string, limit int) ([]OutboxItem, error)
	// OutboxByInvHash returns the user's row whose last published msg has
	// that inventory hash (ErrNotFound: none).
	OutboxByInvHash(ctx context.Context, userID int64, hash []byte) (OutboxItem, error)
	// PubkeyRequest returns the getpubkey request count and the time of
	// the latest request of the row waiting for address's pubkey that asked
	// last (ErrNotFound: no waiting row has asked), so a second mail to an
	// address does not ask again.
	PubkeyRequest(ctx context.Context, address string) (attempts int, sentAt time.Time, err error)
	// PendingSends lists the sizes and destinations of the rows that still
	// need proof of work (queued, awaiting_pubkey, doing_pow), of one user
	// (userID > 0) or of all, for estimates of the work ahead.
	PendingSends(ctx context.Context, userID int64) ([]PendingSend, error)
}

// PoWQueue is the durable proof-of-work job queue. Used by the gateway's
// PoW scheduler and outbox worker, and by status reporting.
type PoWQueue interface {
	// Proof-of-work jobs. EnqueuePoW returns the existing job when one with
	// the same DedupeKey exists. ClaimPoW leases the next job (pending, or
	// leased by a worker whose lease ran out); RenewPoW, SolvedPoW and
	// DeletePoW check the lease (ErrConflict when it is no longer owner's).
	EnqueuePoW(ctx context.Context, job PoWJob) (PoWJob, error)
	ClaimPoW(ctx context.Context, owner string, now time.Time, lease time.Duration) (PoWJob, bool, error)
	RenewPoW(ctx context.Context, id int64, owner string, until time.Time, trials uint64) error
	SolvedPoW(ctx context.Context, id int64, owner string, nonce, trials uint64, now time.Time) error
	DeletePoW(ctx context.Context, id int64, owner string) error
	// ReleasePoW gives back owner's jobs (a graceful shutdown).
	ReleasePoW(ctx context.Context, owner string) error
	PoWJobs(ctx context.Context) ([]PoWJob, error) // every job, queue order
	PoWJob(ctx context.Context, id int64) (PoWJob, error)
	// PoWJobByKey returns the job holding a DedupeKey (ErrNotFound: none).
	PoWJobByKey(ctx context.Context, key string) (PoWJob, error)
}

// Inventory is the node's object store (inventory.Inventory and
// KnownNodes, used by the Bitmessage node) plus the gateway's inbound
// processing queue over it: pending, failed and set-aside objects, lookups
// by tag, and marking objects processed.
type Inventory interface {
	inventory.Inventory
	inventory.KnownNodes

	// Inbound processing queue: objects put into the inventory by the node
	// are pending until the gateway marks them processed.
	//
	// PendingObjects returns up to limit of them in arrival order, leaving
	// out set-aside objects and those whose retry (ObjectFailed) is after now.
	PendingObjects(ctx context.Context, now time.Time, limit int) ([]inventory.StoredObject, error)
	// ObjectFailed records a failed attempt to process a pending object:
	// attempts+1, the error text (made storable and bounded), and the time
	// before which PendingObjects skips it: now + backoff(attempts), with
	// the attempts counted so far (nil backoff: now). When the attempts reach
	// maxAttempts (> 0; ≤ 0: never) the object is set aside for good:
	// PendingObjects no longer returns it and SetAsideObjects lists it. It
	// returns the attempts so far and whether the object is set aside; an
	// object not in the inventory is ErrNotFound.
	ObjectFailed(ctx context.Context, h wire.InvHash, errText string, now time.Time, backoff func(attempts int) time.Duration, maxAttempts int) (attempts int, setAside bool, err error)
	// HoldObject puts a pending object off until retryAt without counting
	// a failure (a recipient over quota: the mail waits, it is not lost),
	// keeping reason as its last error. Unknown or processed: ErrNotFound.
	HoldObject(ctx context.Context, h wire.InvHash, reason string, retryAt time.Time) error
	// RetrySetAside makes set-aside objects pending again (h: that one;
	// nil: all), due at once with no attempts counted, and says how many.
	RetrySetAside(ctx context.Context, h *wire.InvHash) (int, error)
	// SetAsideObjects lists up to limit set-aside objects, in arrival order.
	SetAsideObjects(ctx context.Context, limit int) ([]SetAsideObject, error)
	// ObjectsByTag returns the unexpired inventory objects of a type carrying
	// that tag (getpubkey v4, pubkey v4, broadcast v5), so a sender finds a
	// pubkey that reached the inventory before it asked for it.
	ObjectsByTag(ctx context.Context, objectType uint32, tag []byte, now time.Time) ([]inventory.StoredObject, error)
	// ClaimObjects leases up to limit due pending objects (as
	// PendingObjects chooses them, in arrival order) to owner until
	// now+lease; objects under another owner's unexpired lease are not
	// taken. Every instance on one database claims its own batches, so
	// inbound work is shared; an instance that dies leaves its batch to be
	// claimed again when the lease runs out (deliveries are idempotent,
	// DeliverOnce, so a batch processed twice files nothing twice).
	ClaimObjects(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int) ([]inventory.StoredObject, error)
	// RenewObjects extends owner's leases on unprocessed objects to until.
	RenewObjects(ctx context.Context, owner string, until time.Time) error
	// ReleaseObjects ends owner's leases on unprocessed objects.
	ReleaseObjects(ctx context.Context, owner string) error
	// MarkProcessed is the checked step to processed, at now: it applies
	// while the object is leased to owner ("" for an unclaimed object).
	// Already processed: nil, nothing written; leased to another owner:
	// ErrConflict; unknown: ErrNotFound.
	MarkProcessed(ctx context.Context, h wire.InvHash, owner string, now time.Time) error
	// InboundBacklog counts pending objects and those the deployment
	// processed in the last window.
	InboundBacklog(ctx context.Context, now time.Time, window time.Duration) (InboundBacklog, error)
	InventoryCount(ctx context.Context) (int, error)
}

// LoginGuard is the shared state of failed logins. Used by package
// loginguard (through its own smaller Store interface) and the bmgate
// command (listing and clearing entries).
type LoginGuard interface {
	// Login guard (loginguard.go; package loginguard has the policy):
	// failed logins per address, account and known (account, address)
	// pair, shared by every process on the database.
	// LoginAccount maps a login name to the account it logs in as (a
	// user's own address → the user's name), so failures are counted per
	// account whatever form of the name is used.
	LoginAccount(ctx context.Context, name string) (string, error)
	LoginGuardAdmit(ctx context.Context, a GuardAttempt) (GuardVerdict, error)
	LoginGuardDone(ctx context.Context, a GuardAttempt, v GuardVerdict, r GuardResult, p GuardPolicy) (GuardOutcome, error)
	LoginGuardEntries(ctx context.Context, limit int) ([]GuardEntry, error)
	LoginGuardClear(ctx context.Context, ip, name string) (int64, error)
	LoginGuardPrune(ctx context.Context, now time.Time, window, knownFor time.Duration, maxRows int) (int64, error)
}

// Importer writes what an import from another client brings (bmgate
// import pybitmessage: identities, subscriptions, contacts, folders,
// messages, outbox rows) in one transaction: all or, on any error
// (ErrOwned, ErrOverQuota, …), nothing; what the user already has is
// counted, not written again (import.go).
type Importer interface {
	Import(ctx context.Context, b ImportBatch) (ImportResult, error)
}
