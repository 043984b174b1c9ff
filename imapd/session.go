package imapd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-sasl"

	"github.com/bmgate/bmgate/mailmap"
	"github.com/bmgate/bmgate/mailmap/loginguard"
	"github.com/bmgate/bmgate/mailmap/logsafe"
)

// delim is the hierarchy delimiter (mailmap names use "/").
const delim = '/'

// session is one IMAP connection. imapserver calls its methods from the
// connection's goroutine, one command at a time, except Idle, which runs in
// a goroutine of its own while the connection goroutine waits for DONE.
type session struct {
	srv  *Server
	conn *imapserver.Conn
	ip   string
	id   string       // the connection id, in the log and in NO [SERVERBUG]/[UNAVAILABLE]
	log  *slog.Logger // the server's logger with the connection id and address

	user  *mailmap.User // nil until login
	hub   *userHub
	ended bool // BYE sent: the account was disabled or deleted

	mu        sync.Mutex // guards sel against Idle's goroutine
	sel       *selected
	searchRes imap.UIDSet // SEARCHRES "$" (RFC 5182), as UIDs
}

// selected is the session's selected mailbox.
type selected struct {
	view     *mailboxView
	tracker  *imapserver.SessionTracker
	readOnly bool
}

var (
	_ imapserver.SessionIMAP4rev2   = (*session)(nil)
	_ imapserver.SessionAppendLimit = (*session)(nil)
	_ imapserver.SessionSASL        = (*session)(nil)
)

func (s *session) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(s.srv.ctx, commandTimeout)
}

func (s *session) fail(op string, err error, notFound imap.ResponseCode) error {
	err = mapError(s.log, op, err, notFound)
	// A server-side failure names the session, so that a user's complaint
	// leads to its log lines.
	if ie, ok := err.(*imap.Error); ok && (ie.Code == imap.ResponseCodeServerBug || ie.Code == imap.ResponseCodeUnavailable) {
		tagged := *ie
		tagged.Text += " (session " + s.id + ")"
		return &tagged
	}
	return err
}

// active checks, before each command of a logged-in session, that the
// account was not disabled or deleted since the login. If it was, the
// session says BYE and closes the connection, and the command fails.
func (s *session) active() error {
	if s.ended {
		return errAccountGone
	}
	if s.user == nil {
		return nil
	}
	ctx, cancel := s.ctx()
	defer cancel()
	err := s.srv.store.UserActive(ctx, s.user.ID)
	text := ""
	switch {
	case err == nil:
		return nil
	case errors.Is(err, mailmap.ErrDisabled):
		text = "Account disabled"
	case errors.Is(err, mailmap.ErrNotFound):
		text = "Account no longer exists"
	default:
		return s.fail("account check", err, "")
	}
	s.ended = true
	s.log.Info("imap session ended: account disabled or deleted", "user", s.user.Name)
	if err := s.conn.Bye(text); err != nil {
		s.log.Debug("imap bye", "err", err)
	}
	return errAccountGone
}

func (s *session) selected() *selected {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sel
}

// Close implements imapserver.Session.
func (s *session) Close() error {
	s.unselect()
	if s.hub != nil {
		s.srv.releaseUser(s.hub)
		s.hub = nil
	}
	s.srv.sessions.Add(-1)
	s.srv.sessionsWG.Done()
	return nil
}

// Login implements imapserver.Session; AUTHENTICATE PLAIN comes here too.
// The login guard decides when the password is checked, and logs it.
func (s *session) Login(username, password string) error {
	ctx, cancel := s.ctx()
	defer cancel()
	verify := func(ctx context.Context) (mailmap.User, error) {
		return s.srv.store.Authenticate(ctx, username, password)
	}
	var u mailmap.User
	var err error
	if s.srv.guard != nil {
		u, err = s.srv.guard.Login(loginguard.WithConn(ctx, s.id), "imap", s.ip, username, verify)
	} else {
		u, err = verify(ctx)
	}
	switch {
	case errors.Is(err, loginguard.ErrLocked):
		return errLoginLocked
	case errors.Is(err, mailmap.ErrAuthFailed), errors.Is(err, mailmap.ErrNotFound):
		if s.srv.guard == nil {
			s.log.Info("imap login failed", "user", logsafe.String(username))
		}
		return errAuthFailed
	case errors.Is(err, mailmap.ErrBusy):
		return errAuthBusy
	case err != nil:
		return s.fail("LOGIN", err, "")
	}
	hub, err := s.srv.acquireUser(u.ID)
	if err != nil {
		s.log.Warn("imap login refused", "user", u.Name, "err", err)
		return err
	}
	s.user, s.hub = &u, hub
	if f := frontOf(s.conn.NetConn()); f != nil {
		f.authenticated()
	}
	s.log.Debug("imap login", "user", u.Name)
	return nil
}

// AuthenticateMechanisms implements imapserver.SessionSASL.
func (s *session) AuthenticateMechanisms() []string { return []string{sasl.Plain} }

// Authenticate implements imapserver.SessionSASL: PLAIN, as imapserver's
// own, except that a malformed message is an authentication failure (NO
// [AUTHENTICATIONFAILED]) rather than NO [SERVERBUG].
func (s *session) Authenticate(mech string) (sasl.Server, error) {
	if !strings.EqualFold(mech, sasl.Plain) {
		return nil, errNoMechanism
	}
	return saslReplies{sasl.NewPlainServer(func(identity, username, password string) error {
		if identity != "" && identity != username {
			return errIdentity
		}
		return s.Login(username, password)
	})}, nil
}

// saslReplies turns a SASL mechanism's errors that are not IMAP answers (a
// malformed exchange) into an authentication failure.
type saslReplies struct{ sasl.Server }

func (r saslReplies) Next(response []byte) ([]byte, bool, error) {
	ch, done, err := r.Server.Next(response)
	var ie *imap.Error
	if err != nil && !errors.As(err, &ie) {
		return nil, true, errAuthFailed
	}
	return ch, done, err
}

// AppendLimit implements imapserver.SessionAppendLimit (RFC 7889).
func (s *session) AppendLimit() uint32 { return s.srv.cfg.AppendLimit }

// Namespace implements imapserver.SessionNamespace: one personal namespace
// with an empty prefix (RFC 2342), as Dovecot's default.
func (s *session) Namespace() (*imap.NamespaceData, error) {
	if err := s.active(); err != nil {
		return nil, err
	}
	return &imap.NamespaceData{Personal: []imap.NamespaceDescriptor{{Prefix: "", Delim: delim}}}, nil
}

var specialUses = map[imap.MailboxAttr]string{
	imap.MailboxAttrSent:    mailmap.SpecialSent,
	imap.MailboxAttrDrafts:  mailmap.SpecialDrafts,
	imap.MailboxAttrTrash:   mailmap.SpecialTrash,
	imap.MailboxAttrJunk:    mailmap.SpecialJunk,
	imap.MailboxAttrArchive: mailmap.SpecialArchive,
}

// Create implements imapserver.Session. The store validates the name,
// creates missing superiors (RFC 9051 §6.3.4) and canonicalises INBOX.
func (s *session) Create(name string, options *imap.CreateOptions) error {
	special := ""
	if options != nil && len(options.SpecialUse) > 0 {
		// CREATE-SPECIAL-USE is not advertised, but the parser accepts
		// USE: honour a single known attribute rather than drop it.
		use, ok := specialUses[options.SpecialUse[0]]
		if len(options.SpecialUse) != 1 || !ok {
			return &imap.Error{Type: imap.StatusResponseTypeNo, Code: "USEATTR", Text: "Unsupported special-use attribute"}
		}
		special = use
	}
	if err := s.active(); err != nil {
		return err
	}
	ctx, cancel := s.ctx()
	defer cancel()
	_, err := s.srv.store.CreateMailbox(ctx, s.user.ID, name, special)
	return s.fail("CREATE", err, "")
}

// Delete implements imapserver.Session. The store refuses INBOX and the
// special-use folders (clients find Sent/Trash/... by attribute and would
// silently recreate them without it) and mailboxes with children.
func (s *session) Delete(name string) error {
	if err := s.active(); err != nil {
		return err
	}
	ctx, cancel := s.ctx()
	defer cancel()
	mb, err := s.srv.store.Mailbox(ctx, s.user.ID, name)
	if err != nil {
		return s.fail("DELETE", err, "")
	}
	if err := s.srv.store.DeleteMailbox(ctx, s.user.ID, mb.Name); err != nil {
		return s.fail("DELETE", err, "")
	}
	s.hub.syncView(ctx, mb.ID)
	return nil
}

// Rename implements imapserver.Session. Children, UIDVALIDITY, special use
// and subscription move with the mailbox (the store does it).
func (s *session) Rename(name, newName string, _ *imap.RenameOptions) error {
	if err := s.active(); err != nil {
		return err
	}
	ctx, cancel := s.ctx()
	defer cancel()
	if strings.EqualFold(name, "INBOX") {
		return s.renameInbox(ctx, newName)
	}
	return s.fail("RENAME", s.srv.store.RenameMailbox(ctx, s.user.ID, name, newName), "")
}

// renameInbox implements RENAME INBOX: every message moves to a new mailbox
// and INBOX stays, empty (RFC 9051 §6.3.6).
func (s *session) renameInbox(ctx context.Context, newName string) error {
	inbox, err := s.srv.store.Mailbox(ctx, s.user.ID, "INBOX")
	if err != nil {
		return s.fail("RENAME", err, "")
	}
	dst, err := s.srv.store.CreateMailbox(ctx, s.user.ID, newName, "")
	if err != nil {
		return s.fail("RENAME", err, "")
	}
	msgs, err := s.srv.store.Messages(ctx, s.user.ID, inbox.ID)
	if err != nil {
		return s.fail("RENAME", err, "")
	}
	if len(msgs) > 0 {
		uids := make([]uint32, len(msgs))
		for i, m := range msgs {
			uids[i] = m.UID
		}
		if _, _, err := s.srv.store.MoveMessages(ctx, s.user.ID, inbox.ID, uids, dst.ID); err != nil {
			return s.fail("RENAME", err, "")
		}
	}
	s.hub.syncView(ctx, inbox.ID)
	return nil
}

// Subscribe implements imapserver.Session.
func (s *session) Subscribe(name string) error { return s.subscribe("SUBSCRIBE", name, true) }

// Unsubscribe implements imapserver.Session.
func (s *session) Unsubscribe(name string) error { return s.subscribe("UNSUBSCRIBE", name, false) }

func (s *session) subscribe(op, name string, on bool) error {
	if err := s.active(); err != nil {
		return err
	}
	ctx, cancel := s.ctx()
	defer cancel()
	return s.fail(op, s.srv.store.SetSubscribed(ctx, s.user.ID, name, on), "")
}

// Status implements imapserver.Session.
func (s *session) Status(name string, options *imap.StatusOptions) (*imap.StatusData, error) {
	if err := s.active(); err != nil {
		return nil, err
	}
	ctx, cancel := s.ctx()
	defer cancel()
	mb, err := s.srv.store.Mailbox(ctx, s.user.ID, name)
	if err != nil {
		return nil, s.fail("STATUS", err, "")
	}
	data, err := s.status(ctx, mb, options)
	if err != nil {
		return nil, s.fail("STATUS", err, "")
	}
	return data, nil
}

// status fills every item options asks for: imapserver dereferences each
// requested pointer.
func (s *session) status(ctx context.Context, mb mailmap.Mailbox, options *imap.StatusOptions) (*imap.StatusData, error) {
	st, err := s.srv.store.MailboxStatus(ctx, s.user.ID, mb.ID)
	if err != nil {
		return nil, err
	}
	data := &imap.StatusData{
		Mailbox:     mb.Name,
		UIDNext:     imap.UID(st.UIDNext),
		UIDValidity: st.UIDValidity,
		NumMessages: &st.Messages,
		NumUnseen:   &st.Unseen,
		Size:        &st.Size,
	}
	if options.AppendLimit {
		limit := s.srv.cfg.AppendLimit
		data.AppendLimit = &limit
	}
	if options.NumRecent {
		var zero uint32 // \Recent is not kept (RFC 9051 dropped it)
		data.NumRecent = &zero
	}
	if options.NumDeleted || options.DeletedStorage {
		msgs, err := s.srv.store.Messages(ctx, s.user.ID, mb.ID)
		if err != nil {
			return nil, err
		}
		var n uint32
		var size int64
		for _, m := range msgs {
			if hasFlag(canonFlags(m.Flags), imap.FlagDeleted) {
				n++
				size += m.Size
			}
		}
		data.NumDeleted, data.DeletedStorage = &n, &size
	}
	return data, nil
}

// Append implements imapserver.Session. imapserver has already refused
// literals over AppendLimit.
func (s *session) Append(name string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	if err := s.active(); err != nil {
		return nil, err
	}
	ctx, cancel := s.ctx()
	defer cancel()
	mb, err := s.srv.store.Mailbox(ctx, s.user.ID, name)
	if err != nil {
		return nil, s.fail("APPEND", err, imap.ResponseCodeTryCreate)
	}
	size := r.Size()
	if size > int64(s.srv.cfg.AppendLimit) {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTooBig, Text: "Message too large"}
	}
	raw := make([]byte, size)
	if _, err := io.ReadFull(r, raw); err != nil {
		return nil, fmt.Errorf("read append literal: %w", err) // the connection is broken; nothing to answer
	}
	if size == 0 {
		return nil, errEmptyMessage
	}
	date := options.Time
	if date.IsZero() {
		date = time.Now()
	}
	msg, err := s.srv.store.AppendMessage(ctx, s.user.ID, mb.ID, raw, s.flagsFor(mb.ID, options.Flags), date)
	if err != nil {
		return nil, s.fail("APPEND", err, imap.ResponseCodeTryCreate)
	}
	s.hub.syncView(ctx, mb.ID)
	return &imap.AppendData{UID: imap.UID(msg.UID), UIDValidity: mb.UIDValidity}, nil
}

// flagsFor turns client flags into store flags: \Recent dropped, system
// flags canonical, keywords spelled as already used in the mailbox.
func (s *session) flagsFor(mailboxID int64, flags []imap.Flag) []string {
	v := s.hub.view(mailboxID)
	if v != nil {
		v.mu.Lock()
		defer v.mu.Unlock()
	}
	out := make([]string, 0, len(flags))
	for _, f := range flags {
		if flagKey(string(f)) == flagRecent {
			continue
		}
		if v != nil && v.loaded {
			f = v.spellKeyword(f)
		} else if sf, ok := systemFlags[flagKey(string(f))]; ok {
			f = sf
		}
		out = append(out, string(f))
	}
	return out
}

// Select implements imapserver.Session (SELECT and EXAMINE).
func (s *session) Select(name string, options *imap.SelectOptions) (*imap.SelectData, error) {
	if err := s.active(); err != nil {
		return nil, err
	}
	ctx, cancel := s.ctx()
	defer cancel()
	mb, err := s.srv.store.Mailbox(ctx, s.user.ID, name)
	if err != nil {
		return nil, s.fail("SELECT", err, "")
	}
	v, err := s.hub.openView(ctx, mb.ID)
	if err != nil {
		return nil, s.fail("SELECT", err, "")
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	flags := v.flagsLocked()
	data := &imap.SelectData{
		Flags:       flags,
		NumMessages: uint32(len(v.msgs)),
		UIDNext:     imap.UID(v.uidNext),
		UIDValidity: v.uidValidity,
	}
	if n := len(v.msgs); n > 0 && imap.UID(v.msgs[n-1].uid) >= data.UIDNext {
		data.UIDNext = imap.UID(v.msgs[n-1].uid + 1)
	}
	if !options.ReadOnly {
		// \* : clients may create keywords, such as $Delivered, which
		// the gateway also sets (RFC 9051 §7.1).
		data.PermanentFlags = append(flags[:len(flags):len(flags)], imap.FlagWildcard)
	}
	for i, m := range v.msgs {
		if !hasFlag(m.flags, imap.FlagSeen) {
			data.FirstUnseenSeqNum = uint32(i + 1)
			break
		}
	}
	sel := &selected{view: v, tracker: v.tracker.NewSession(), readOnly: options.ReadOnly}
	s.mu.Lock()
	s.sel = sel
	s.searchRes = nil
	s.mu.Unlock()
	return data, nil
}

// Unselect implements imapserver.Session (UNSELECT, CLOSE, and SELECT while
// selected).
func (s *session) Unselect() error {
	s.unselect()
	return s.active()
}

func (s *session) unselect() {
	s.mu.Lock()
	sel := s.sel
	s.sel = nil
	s.searchRes = nil
	s.mu.Unlock()
	if sel == nil {
		return
	}
	sel.tracker.Close()
	s.hub.closeView(sel.view)
}

// Poll implements imapserver.Session: after each command, the selected
// mailbox is checked against the store (one primary-key read unless it
// changed), so a NOOP always reports what was committed before it, and the
// pending EXISTS/EXPUNGE/FETCH updates are written.
func (s *session) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	// NOOP and CHECK reach the session only here. A failed check that said
	// BYE leaves nothing to write; one that failed otherwise waits for the
	// next command (this one is done).
	if err := s.active(); err != nil {
		return nil
	}
	sel := s.selected()
	if sel == nil {
		return nil
	}
	ctx, cancel := s.ctx()
	defer cancel()
	v := sel.view
	v.mu.Lock()
	err := v.checkLocked(ctx)
	v.mu.Unlock()
	if err != nil && !errors.Is(err, mailmap.ErrNotFound) {
		s.log.Warn("imap mailbox check failed", "user", s.user.ID, "mailbox", v.id, "err", err)
	}
	return sel.tracker.Poll(w, allowExpunge)
}

// Idle implements imapserver.Session. Updates come from the view, which the
// store's notifier (and the poll backstop) keep current; the waiter is
// registered before the first poll so no update falls in between.
func (s *session) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	if err := s.active(); err != nil {
		return err
	}
	// An IDLE can last for hours with no command in between: the account
	// check that precedes every command is also made while idling, so a
	// disabled or deleted account's IDLE ends with BYE.
	check := time.NewTicker(idleAccountCheck)
	defer check.Stop()
	sel := s.selected()
	wake := make(chan struct{}, 1) // stays quiet when nothing is selected
	if sel != nil {
		sel.view.listen(wake)
		defer sel.view.unlisten(wake)
	}
	for {
		if sel != nil {
			if err := sel.tracker.Poll(w, true); err != nil {
				return err
			}
		}
		select {
		case <-wake:
		case <-check.C:
			if err := s.active(); err != nil {
				return err
			}
		case <-stop:
			return nil
		}
	}
}

// idleAccountCheck is how often an IDLE checks that its account is still
// enabled (a variable for tests).
var idleAccountCheck = 15 * time.Second
