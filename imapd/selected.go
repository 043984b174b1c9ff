package imapd

import (
	"context"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/bmgate/bmgate/mailmap"
)

// target is a message a command addresses, with the sequence number the
// client knows it by.
type target struct {
	seq uint32
	msg message
}

// resolveLocked maps a client's number set to the messages it names, in
// ascending order. Only messages the client has been told about count
// (SessionTracker.EncodeSeqNum != 0); "*" is the client's last one; "$" is
// the saved search result. Caller holds sel.view.mu.
func (s *session) resolveLocked(sel *selected, numSet imap.NumSet) []target {
	if imap.IsSearchRes(numSet) {
		numSet = s.searchRes
	}
	v, st := sel.view, sel.tracker
	var out []target
	switch set := numSet.(type) {
	case imap.SeqSet:
		maxSeq, _ := s.clientMaxLocked(sel)
		set = staticSeqSet(set, maxSeq)
		out = make([]target, 0, min(rangesLen(set), len(v.msgs)))
		for i, m := range v.msgs {
			if c := st.EncodeSeqNum(uint32(i + 1)); c != 0 && set.Contains(c) {
				out = append(out, target{seq: c, msg: m})
			}
		}
	case imap.UIDSet:
		_, maxUID := s.clientMaxLocked(sel)
		set = staticUIDSet(set, maxUID)
		out = make([]target, 0, min(rangesLen(set), len(v.msgs)))
		for i, m := range v.msgs {
			if !set.Contains(imap.UID(m.uid)) {
				continue
			}
			if c := st.EncodeSeqNum(uint32(i + 1)); c != 0 {
				out = append(out, target{seq: c, msg: m})
			}
		}
	}
	return out
}

// rangesLen is how many numbers the ranges of a static set cover (an
// upper bound of the messages it names), so a 1:* FETCH does not grow its
// target list 14 times.
func rangesLen[T imap.SeqRange | imap.UIDRange](set []T) int {
	n := 0
	for _, r := range set {
		var start, stop uint32
		switch r := any(r).(type) {
		case imap.SeqRange:
			start, stop = r.Start, r.Stop
		case imap.UIDRange:
			start, stop = uint32(r.Start), uint32(r.Stop)
		}
		if stop >= start {
			n += int(stop-start) + 1
		}
	}
	return n
}

// clientMaxLocked returns the highest sequence number and UID the client
// knows (for "*").
func (s *session) clientMaxLocked(sel *selected) (uint32, imap.UID) {
	for i := len(sel.view.msgs) - 1; i >= 0; i-- {
		if c := sel.tracker.EncodeSeqNum(uint32(i + 1)); c != 0 {
			return c, imap.UID(sel.view.msgs[i].uid)
		}
	}
	return 0, 0
}

// staticSeqSet replaces "*" (0) by max; "n:*" with n > max means "max:n"
// (RFC 9051 §9, seq-range).
func staticSeqSet(set imap.SeqSet, max uint32) imap.SeqSet {
	out := make(imap.SeqSet, len(set))
	for i, r := range set {
		out[i] = r
		staticRange(&out[i].Start, &out[i].Stop, max)
	}
	return out
}

func staticUIDSet(set imap.UIDSet, max imap.UID) imap.UIDSet {
	out := make(imap.UIDSet, len(set))
	for i, r := range set {
		start, stop := uint32(r.Start), uint32(r.Stop)
		staticRange(&start, &stop, uint32(max))
		out[i] = imap.UIDRange{Start: imap.UID(start), Stop: imap.UID(stop)}
	}
	return out
}

func staticRange(start, stop *uint32, max uint32) {
	if *start == 0 {
		*start = max
	}
	if *stop == 0 {
		*stop = max
	}
	if *start > *stop {
		*start, *stop = *stop, *start
	}
}

func uidsOf(ts []target) []uint32 {
	out := make([]uint32, len(ts))
	for i, t := range ts {
		out[i] = t.msg.uid
	}
	return out
}

func uidSet(uids []uint32) imap.UIDSet {
	var set imap.UIDSet
	for _, u := range uids {
		set.AddNum(imap.UID(u))
	}
	return set
}

// Store implements imapserver.Session (STORE, UID STORE).
func (s *session) Store(w *imapserver.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, _ *imap.StoreOptions) error {
	if err := s.active(); err != nil {
		return err
	}
	sel := s.selected()
	if sel.readOnly {
		return errReadOnly
	}
	ctx, cancel := s.ctx()
	defer cancel()
	v := sel.view
	v.mu.Lock()
	targets := s.resolveLocked(sel, numSet)
	names := make([]string, 0, len(flags.Flags))
	for _, f := range flags.Flags {
		if flagKey(string(f)) != flagRecent {
			names = append(names, string(v.spellKeyword(f)))
		}
	}
	var op mailmap.FlagOp
	switch flags.Op {
	case imap.StoreFlagsAdd:
		op = mailmap.FlagsAdd
	case imap.StoreFlagsDel:
		op = mailmap.FlagsRemove
	default:
		op = mailmap.FlagsReplace
	}
	if len(targets) > 0 && (len(names) > 0 || op == mailmap.FlagsReplace) {
		updated, err := s.srv.store.UpdateFlags(ctx, s.user.ID, v.id, uidsOf(targets), op, names)
		if err != nil {
			v.mu.Unlock()
			return s.fail("STORE", err, "")
		}
		v.applyFlagsLocked(updated, sel.tracker)
		v.noteWriteLocked(ctx, flagBumps(updated, v.fp.modSeq))
		for i := range targets {
			if j := v.index(targets[i].msg.uid); j >= 0 {
				targets[i].msg.flags = v.msgs[j].flags
			}
		}
	}
	v.mu.Unlock()
	if flags.Silent {
		return nil
	}
	_, byUID := numSet.(imap.UIDSet)
	for _, t := range targets {
		rw := w.CreateMessage(t.seq)
		if byUID {
			rw.WriteUID(imap.UID(t.msg.uid))
		}
		rw.WriteFlags(t.msg.flags)
		if err := rw.Close(); err != nil {
			return err
		}
	}
	return nil
}

// Copy implements imapserver.Session (COPY, UID COPY) with UIDPLUS
// COPYUID (RFC 4315).
func (s *session) Copy(numSet imap.NumSet, dest string) (*imap.CopyData, error) {
	if err := s.active(); err != nil {
		return nil, err
	}
	sel := s.selected()
	ctx, cancel := s.ctx()
	defer cancel()
	dst, err := s.srv.store.Mailbox(ctx, s.user.ID, dest)
	if err != nil {
		return nil, s.fail("COPY", err, imap.ResponseCodeTryCreate)
	}
	v := sel.view
	v.mu.Lock()
	uids := uidsOf(s.resolveLocked(sel, numSet))
	v.mu.Unlock()
	if len(uids) == 0 {
		return nil, nil
	}
	src, dstUIDs, err := s.srv.store.CopyMessages(ctx, s.user.ID, v.id, uids, dst.ID)
	if err != nil {
		return nil, s.fail("COPY", err, imap.ResponseCodeTryCreate)
	}
	s.hub.syncView(ctx, dst.ID)
	if len(src) == 0 {
		return nil, nil
	}
	return &imap.CopyData{UIDValidity: dst.UIDValidity, SourceUIDs: uidSet(src), DestUIDs: uidSet(dstUIDs)}, nil
}

// Move implements imapserver.SessionMove (RFC 6851). The EXPUNGE responses
// follow from the tracker when imapserver polls after the command.
func (s *session) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	if err := s.active(); err != nil {
		return err
	}
	sel := s.selected()
	if sel.readOnly {
		return errReadOnly
	}
	ctx, cancel := s.ctx()
	defer cancel()
	dst, err := s.srv.store.Mailbox(ctx, s.user.ID, dest)
	if err != nil {
		return s.fail("MOVE", err, imap.ResponseCodeTryCreate)
	}
	v := sel.view
	v.mu.Lock()
	uids := uidsOf(s.resolveLocked(sel, numSet))
	if len(uids) == 0 {
		v.mu.Unlock()
		return nil
	}
	src, dstUIDs, err := s.srv.store.MoveMessages(ctx, s.user.ID, v.id, uids, dst.ID)
	if err != nil {
		v.mu.Unlock()
		return s.fail("MOVE", err, imap.ResponseCodeTryCreate)
	}
	v.applyExpungeLocked(src)
	if len(src) > 0 && dst.ID != v.id {
		v.noteWriteLocked(ctx, 1)
	}
	v.mu.Unlock()
	s.hub.syncView(ctx, dst.ID)
	if len(src) == 0 {
		return nil
	}
	return w.WriteCopyData(&imap.CopyData{UIDValidity: dst.UIDValidity, SourceUIDs: uidSet(src), DestUIDs: uidSet(dstUIDs)})
}

// Expunge implements imapserver.Session (EXPUNGE, UID EXPUNGE, and CLOSE).
// In a mailbox opened with EXAMINE it does nothing: imapserver also calls it
// for CLOSE, which must then succeed without expunging (RFC 9051 §6.4.1),
// and the two cannot be told apart here.
func (s *session) Expunge(_ *imapserver.ExpungeWriter, uids *imap.UIDSet) error {
	if err := s.active(); err != nil {
		return err
	}
	sel := s.selected()
	if sel.readOnly {
		return nil
	}
	ctx, cancel := s.ctx()
	defer cancel()
	v := sel.view
	v.mu.Lock()
	defer v.mu.Unlock()
	var only []uint32 // nil: every \Deleted message; else the \Deleted ones among these
	if uids != nil {
		if only = uidsOf(s.resolveLocked(sel, *uids)); len(only) == 0 {
			return nil
		}
	}
	gone, err := s.srv.store.Expunge(ctx, s.user.ID, v.id, only)
	if err != nil {
		return s.fail("EXPUNGE", err, "")
	}
	v.applyExpungeLocked(gone)
	if len(gone) > 0 {
		v.noteWriteLocked(ctx, 1)
	}
	return nil
}

// flagBumps is how many times an UpdateFlags call raised the modseq: once
// if it changed any message (they then carry a modseq above the view's).
func flagBumps(updated []mailmap.Message, base uint64) uint64 {
	for _, m := range updated {
		if m.ModSeq > base {
			return 1
		}
	}
	return 0
}

// markSeenLocked sets \Seen on targets that lack it (the side effect of a
// non-PEEK body fetch, RFC 9051 §6.4.5) and returns the UIDs it changed.
func (s *session) markSeenLocked(ctx context.Context, sel *selected, targets []target) (map[uint32]bool, error) {
	var uids []uint32
	for _, t := range targets {
		if !hasFlag(t.msg.flags, imap.FlagSeen) {
			uids = append(uids, t.msg.uid)
		}
	}
	if len(uids) == 0 {
		return nil, nil
	}
	v := sel.view
	updated, err := s.srv.store.UpdateFlags(ctx, s.user.ID, v.id, uids, mailmap.FlagsAdd, []string{string(imap.FlagSeen)})
	if err != nil {
		return nil, err
	}
	v.applyFlagsLocked(updated, sel.tracker)
	v.noteWriteLocked(ctx, flagBumps(updated, v.fp.modSeq))
	changed := make(map[uint32]bool, len(uids))
	for _, u := range uids {
		changed[u] = true
	}
	for i := range targets {
		if j := v.index(targets[i].msg.uid); j >= 0 && changed[targets[i].msg.uid] {
			targets[i].msg.flags = v.msgs[j].flags
		}
	}
	return changed, nil
}
