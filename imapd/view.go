package imapd

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/bmgate/bmgate/mailmap"
)

// userHub is what the sessions of one user share in this process: the store
// subscription that tells them about changes, and one mailboxView per
// selected mailbox.
type userHub struct {
	srv    *Server
	userID int64
	refs   int // logged-in sessions; guarded by srv.mu

	mu    sync.Mutex
	views map[int64]*mailboxView

	unsubscribe func()
	stop        chan struct{}
	done        chan struct{}
}

// acquireUser registers a logged-in session of userID, enforcing
// MaxConnsPerUser, and starts listening to the user's changes on first use.
func (s *Server) acquireUser(userID int64) (*userHub, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errLoginShuttingDown
	}
	h := s.users[userID]
	if h == nil {
		ch, unsubscribe := s.store.Subscribe(userID)
		h = &userHub{
			srv:         s,
			userID:      userID,
			views:       make(map[int64]*mailboxView),
			unsubscribe: unsubscribe,
			stop:        make(chan struct{}),
			done:        make(chan struct{}),
		}
		s.users[userID] = h
		go h.run(ch)
	}
	if h.refs >= s.cfg.MaxConnsPerUser {
		return nil, errTooManyUserConns
	}
	h.refs++
	return h, nil
}

// releaseUser undoes acquireUser. The last session of a user takes the
// views kept idle with it.
func (s *Server) releaseUser(h *userHub) {
	s.mu.Lock()
	h.refs--
	last := h.refs == 0
	if last {
		delete(s.users, h.userID)
	}
	s.mu.Unlock()
	if last {
		h.unsubscribe()
		close(h.stop)
		<-h.done
		h.mu.Lock()
		var idle []*mailboxView
		for id, v := range h.views {
			idle = append(idle, v)
			delete(h.views, id)
		}
		h.mu.Unlock()
		for _, v := range idle {
			v.halt()
		}
	}
}

// idleViews is how many views of mailboxes that no session has selected
// any more a user's hub keeps loaded, so that selecting the folder again
// (clients go back and forth between a few) costs a fingerprint check
// instead of reading every message's metadata. A variable for tests and
// benchmarks of the cold path.
var idleViews = 4

// idleViewTTL is how long an idle view is kept at most (checked at the
// view's poll ticks).
const idleViewTTL = 2 * time.Minute

// run forwards store change notices to the views they concern.
func (h *userHub) run(ch <-chan mailmap.Change) {
	defer close(h.done)
	for {
		select {
		case c, ok := <-ch:
			if !ok {
				// The store stopped notifying (closing): the poll
				// backstop keeps views current until the sessions end.
				ch = nil
				continue
			}
			h.dispatch(c)
		case <-h.stop:
			return
		}
	}
}

func (h *userHub) dispatch(c mailmap.Change) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if c.MailboxID == 0 {
		// Changes were dropped (or a folder-list change of unknown
		// scope): every view resynchronises.
		for _, v := range h.views {
			v.wake()
		}
		return
	}
	if v := h.views[c.MailboxID]; v != nil {
		v.wake()
	}
}

// view returns the view of a mailbox that a session has selected, or nil
// (an idle one is brought up to date when selected again). The caller
// holds no reference: it may only sync it.
func (h *userHub) view(mailboxID int64) *mailboxView {
	h.mu.Lock()
	defer h.mu.Unlock()
	if v := h.views[mailboxID]; v != nil && v.refs > 0 {
		return v
	}
	return nil
}

// syncView brings the view of mailboxID, if one is open, up to date with the
// store, so sessions that selected it learn of a change made by this one
// before its tagged response.
func (h *userHub) syncView(ctx context.Context, mailboxID int64) {
	v := h.view(mailboxID)
	if v == nil {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if err := v.syncLocked(ctx); err != nil && !errors.Is(err, mailmap.ErrNotFound) {
		h.srv.log.Warn("imap mailbox resync failed", "user", h.userID, "mailbox", mailboxID, "err", err)
	}
}

// openView returns the shared view of a mailbox, loaded and current, with a
// reference the caller must give back with closeView.
func (h *userHub) openView(ctx context.Context, mailboxID int64) (*mailboxView, error) {
	h.mu.Lock()
	v := h.views[mailboxID]
	if v == nil {
		v = &mailboxView{
			hub:       h,
			id:        mailboxID,
			listeners: make(map[chan struct{}]struct{}),
			wakeCh:    make(chan struct{}, 1),
			stop:      make(chan struct{}),
			done:      make(chan struct{}),
		}
		h.views[mailboxID] = v
		go v.run(h.srv.cfg.PollInterval)
	}
	reused := v.refs == 0 && v.idleSince != (time.Time{})
	v.refs++
	h.mu.Unlock()

	v.mu.Lock()
	if reused && v.loaded {
		// An idle view followed nothing: if the mailbox's UIDs mean
		// other messages now (a new UIDVALIDITY), it is loaded afresh
		// (no session holds its tracker) instead of merged.
		if mb, err := h.srv.store.MailboxByID(ctx, h.userID, mailboxID); err != nil || mb.UIDValidity != v.uidValidity {
			v.loaded, v.fp = false, fingerprint{}
		}
	}
	err := v.checkLocked(ctx) // loads a new view; a shared or idle one only if stale
	v.mu.Unlock()
	if err != nil {
		h.closeView(v)
		return nil, err
	}
	return v, nil
}

// closeView drops a reference taken by openView. A view no session holds
// stays loaded, idle, for a while (idleViews, idleViewTTL): it follows no
// changes meanwhile, and openView's fingerprint check brings it up to date
// when it is selected again.
func (h *userHub) closeView(v *mailboxView) {
	h.mu.Lock()
	v.refs--
	if v.refs > 0 {
		h.mu.Unlock()
		return
	}
	v.idleSince = time.Now()
	var idle []*mailboxView
	for _, o := range h.views {
		if o.refs == 0 {
			idle = append(idle, o)
		}
	}
	var evict []*mailboxView
	if len(idle) > idleViews {
		slices.SortFunc(idle, func(a, b *mailboxView) int { return a.idleSince.Compare(b.idleSince) })
		evict = idle[:len(idle)-idleViews]
		for _, o := range evict {
			delete(h.views, o.id)
		}
	}
	h.mu.Unlock()
	for _, o := range evict {
		o.halt()
	}
}

// idle reports whether no session holds the view.
func (v *mailboxView) idle() bool {
	v.hub.mu.Lock()
	defer v.hub.mu.Unlock()
	return v.refs == 0
}

// expire drops the view from its hub if it has been idle for longer than
// idleViewTTL, and reports whether it did (the view's goroutine then ends).
func (v *mailboxView) expire() bool {
	h := v.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if v.refs > 0 || time.Since(v.idleSince) < idleViewTTL || h.views[v.id] != v {
		return false
	}
	delete(h.views, v.id)
	return true
}

// halt stops the goroutine of a view already removed from its hub.
func (v *mailboxView) halt() {
	close(v.stop)
	<-v.done
}

// message is what a view keeps of one message: enough to answer FLAGS, UID,
// RFC822.SIZE, INTERNALDATE and the metadata parts of SEARCH from memory.
type message struct {
	uid   uint32
	flags []imap.Flag
	size  int64
	date  time.Time
}

// mailboxView is the server-side state of one mailbox, shared by every
// session of its user that selected it. msgs is the "server view" of
// imapserver's MailboxTracker: each session's SessionTracker translates
// between it and what that client has been told so far. Every change to msgs
// is queued to the tracker in the same critical section, so the two never
// disagree.
type mailboxView struct {
	hub       *userHub
	id        int64
	refs      int       // guarded by hub.mu
	idleSince time.Time // when refs last fell to 0; guarded by hub.mu

	mu          sync.Mutex
	loaded      bool
	tracker     *imapserver.MailboxTracker
	msgs        []message // ascending UID
	uidValidity uint32
	uidNext     uint32
	fp          fingerprint
	keywords    map[string]imap.Flag // lower-cased → spelling, every keyword seen
	listeners   map[chan struct{}]struct{}

	wakeCh chan struct{}
	stop   chan struct{}
	done   chan struct{}
}

// wake asks the view's goroutine to resynchronise with the store. Bursts of
// notices collapse into one resync.
func (v *mailboxView) wake() {
	select {
	case v.wakeCh <- struct{}{}:
	default:
	}
}

func (v *mailboxView) run(interval time.Duration) {
	defer close(v.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-v.wakeCh:
			if !v.idle() {
				v.refresh(true)
			}
		case <-t.C:
			if v.expire() {
				return
			}
			if !v.idle() {
				v.refresh(false)
			}
		case <-v.stop:
			return
		}
	}
}

// refresh resynchronises the view; unless full, only when the mailbox's
// fingerprint moved.
func (v *mailboxView) refresh(full bool) {
	srv := v.hub.srv
	defer func() {
		// The tracker panics on inconsistent updates; a bug here must
		// not take the process down.
		if p := recover(); p != nil {
			srv.log.Error("imap mailbox resync panicked", "mailbox", v.id, "panic", fmt.Sprint(p))
		}
	}()
	ctx, cancel := context.WithTimeout(srv.ctx, commandTimeout)
	defer cancel()
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.loaded {
		return
	}
	var err error
	if full {
		err = v.syncLocked(ctx)
	} else {
		err = v.checkLocked(ctx)
	}
	if err != nil && !errors.Is(err, mailmap.ErrNotFound) && ctx.Err() == nil {
		srv.log.Warn("imap mailbox resync failed", "user", v.hub.userID, "mailbox", v.id, "err", err)
	}
}

// fingerprint is what tells a view it is stale: every change to a mailbox
// raises its HIGHESTMODSEQ or UIDNEXT (see Store).
type fingerprint struct {
	modSeq   uint64
	uidNext  uint32
	validity uint32
}

func fingerprintOf(mb mailmap.Mailbox) fingerprint {
	return fingerprint{modSeq: mb.HighestModSeq, uidNext: mb.UIDNext, validity: mb.UIDValidity}
}

// checkLocked syncs the view if the mailbox changed since it was last
// synced: one primary-key read when nothing did.
func (v *mailboxView) checkLocked(ctx context.Context) error {
	mb, err := v.hub.srv.store.MailboxByID(ctx, v.hub.userID, v.id)
	if err == nil && fingerprintOf(mb) == v.fp {
		return nil
	}
	return v.syncLocked(ctx)
}

// noteWriteLocked records that a session of this view changed the mailbox
// itself and has already applied the change to the view. bumps is how many
// times that write raised the modseq (0 or 1). If the mailbox moved by
// exactly that much, the view is taken as current, which spares the check
// after the command a full reload; otherwise someone else wrote too and the
// fingerprint stays stale, so the next check syncs. The estimate can be
// fooled (a STORE that changed nothing racing another writer's flag change
// to the same messages), so change notices always resync in full and do
// not rely on it.
func (v *mailboxView) noteWriteLocked(ctx context.Context, bumps uint64) {
	mb, err := v.hub.srv.store.MailboxByID(ctx, v.hub.userID, v.id)
	if err != nil {
		return
	}
	if mb.HighestModSeq == v.fp.modSeq+bumps && mb.UIDNext == v.fp.uidNext && mb.UIDValidity == v.fp.validity {
		v.fp = fingerprintOf(mb)
	}
}

// syncLocked reads the mailbox from the store and queues the differences to
// the tracker: expunges first (highest sequence number first, so each number
// is valid when sent), then flag changes, then new messages one EXISTS at a
// time (SessionTracker.EncodeSeqNum only recognises single-step increments).
// Messages whose UID is below the highest one already shown cannot be given a
// sequence number without breaking UID order; they stay hidden until the next
// SELECT. With a store that allocates UIDs under a per-mailbox row lock this
// does not happen.
func (v *mailboxView) syncLocked(ctx context.Context) error {
	srv := v.hub.srv
	st, err := srv.store.MailboxByID(ctx, v.hub.userID, v.id)
	var list []mailmap.Message
	if err == nil {
		list, err = srv.store.Messages(ctx, v.hub.userID, v.id)
	}
	if errors.Is(err, mailmap.ErrNotFound) && v.loaded {
		// The mailbox was deleted: to the sessions that still have it
		// selected, every message is expunged.
		v.applyExpungeLocked(v.uids())
		return err
	}
	if err != nil {
		return fmt.Errorf("sync mailbox %d: %w", v.id, err)
	}
	v.fp = fingerprintOf(st)
	v.uidValidity = st.UIDValidity
	v.uidNext = st.UIDNext

	if !v.loaded {
		v.msgs = make([]message, 0, len(list))
		v.keywords = make(map[string]imap.Flag)
		for _, m := range list {
			msg := toMessage(m)
			v.noteKeywords(msg.flags)
			v.msgs = append(v.msgs, msg)
		}
		v.tracker = imapserver.NewMailboxTracker(uint32(len(v.msgs)))
		v.loaded = true
		return nil
	}

	var (
		kept     = make([]message, 0, len(list))
		expunged []int
		changed  []int // indexes into kept
		j        int
		newKW    bool
	)
	for i, m := range v.msgs {
		for j < len(list) && list[j].UID < m.uid {
			j++ // not shown and below the top: stays hidden
		}
		if j < len(list) && list[j].UID == m.uid {
			flags := canonFlags(list[j].Flags)
			if !sameFlags(flags, m.flags) {
				m.flags = flags
				newKW = v.noteKeywords(flags) || newKW
				changed = append(changed, len(kept))
			}
			kept = append(kept, m)
			j++
		} else {
			expunged = append(expunged, i)
		}
	}
	var top uint32
	if n := len(v.msgs); n > 0 {
		top = v.msgs[n-1].uid
	}
	var added []message
	for ; j < len(list); j++ {
		if list[j].UID > top {
			msg := toMessage(list[j])
			newKW = v.noteKeywords(msg.flags) || newKW
			added = append(added, msg)
		}
	}
	if len(expunged) == 0 && len(changed) == 0 && len(added) == 0 {
		return nil
	}

	for k := len(expunged) - 1; k >= 0; k-- {
		v.tracker.QueueExpunge(uint32(expunged[k] + 1))
	}
	v.msgs = kept
	if newKW {
		v.tracker.QueueMailboxFlags(v.flagsLocked())
	}
	for _, i := range changed {
		v.tracker.QueueMessageFlags(uint32(i+1), imap.UID(kept[i].uid), kept[i].flags, nil)
	}
	for _, msg := range added {
		v.msgs = append(v.msgs, msg)
		v.tracker.QueueNumMessages(uint32(len(v.msgs)))
	}
	v.notifyLocked()
	return nil
}

func toMessage(m mailmap.Message) message {
	return message{uid: m.UID, flags: canonFlags(m.Flags), size: m.Size, date: m.InternalDate}
}

func (v *mailboxView) uids() []uint32 {
	out := make([]uint32, len(v.msgs))
	for i, m := range v.msgs {
		out[i] = m.uid
	}
	return out
}

// index returns the position of uid in msgs, or -1.
func (v *mailboxView) index(uid uint32) int {
	i := sort.Search(len(v.msgs), func(i int) bool { return v.msgs[i].uid >= uid })
	if i < len(v.msgs) && v.msgs[i].uid == uid {
		return i
	}
	return -1
}

// noteKeywords records keywords and reports whether any was new.
func (v *mailboxView) noteKeywords(flags []imap.Flag) bool {
	added := false
	for _, f := range flags {
		if !isKeyword(f) {
			continue
		}
		k := flagKey(string(f))
		if _, ok := v.keywords[k]; !ok {
			v.keywords[k] = f
			added = true
		}
	}
	return added
}

// flagsLocked is the mailbox's FLAGS: system flags and every keyword in use.
func (v *mailboxView) flagsLocked() []imap.Flag {
	out := slices.Clone(baseFlags)
	kws := make([]imap.Flag, 0, len(v.keywords))
	for _, f := range v.keywords {
		kws = append(kws, f)
	}
	slices.Sort(kws)
	return append(out, kws...)
}

// spellKeyword returns the spelling already in use for a keyword, so
// "$delivered" from one client and "$Delivered" from the gateway stay one
// keyword.
func (v *mailboxView) spellKeyword(f imap.Flag) imap.Flag {
	if sf, ok := systemFlags[flagKey(string(f))]; ok {
		return sf
	}
	if kw, ok := v.keywords[flagKey(string(f))]; ok {
		return kw
	}
	return f
}

// applyFlagsLocked records flag changes a session made itself. source, if
// set, is left out of the unilateral FETCH, since that session reports the
// change in its own response (or was asked not to, with .SILENT).
func (v *mailboxView) applyFlagsLocked(updated []mailmap.Message, source *imapserver.SessionTracker) {
	newKW := false
	var changed []int
	for _, m := range updated {
		i := v.index(m.UID)
		if i < 0 {
			continue
		}
		flags := canonFlags(m.Flags)
		if sameFlags(flags, v.msgs[i].flags) {
			continue
		}
		v.msgs[i].flags = flags
		newKW = v.noteKeywords(flags) || newKW
		changed = append(changed, i)
	}
	if newKW {
		v.tracker.QueueMailboxFlags(v.flagsLocked())
	}
	for _, i := range changed {
		v.tracker.QueueMessageFlags(uint32(i+1), imap.UID(v.msgs[i].uid), v.msgs[i].flags, source)
	}
	if len(changed) > 0 || newKW {
		v.notifyLocked()
	}
}

// applyExpungeLocked removes messages a session expunged or moved away. The
// EXPUNGE responses reach every session through the tracker, the acting one
// included (imapserver polls after EXPUNGE and MOVE; CLOSE unselects first,
// which drops them, as RFC 9051 §6.4.1 wants).
func (v *mailboxView) applyExpungeLocked(uids []uint32) {
	gone := make(map[int]bool, len(uids))
	for _, uid := range uids {
		if i := v.index(uid); i >= 0 {
			gone[i] = true
		}
	}
	if len(gone) == 0 {
		return
	}
	for i := len(v.msgs) - 1; i >= 0; i-- {
		if gone[i] {
			v.tracker.QueueExpunge(uint32(i + 1))
		}
	}
	kept := v.msgs[:0]
	for i, m := range v.msgs {
		if !gone[i] {
			kept = append(kept, m)
		}
	}
	clear(v.msgs[len(kept):])
	v.msgs = kept
	v.notifyLocked()
}

// listen registers an IDLE waiter woken whenever updates are queued.
func (v *mailboxView) listen(ch chan struct{}) {
	v.mu.Lock()
	v.listeners[ch] = struct{}{}
	v.mu.Unlock()
}

func (v *mailboxView) unlisten(ch chan struct{}) {
	v.mu.Lock()
	delete(v.listeners, ch)
	v.mu.Unlock()
}

func (v *mailboxView) notifyLocked() {
	for ch := range v.listeners {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}
