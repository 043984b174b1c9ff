package imapd

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
)

// Search implements imapserver.Session (SEARCH, UID SEARCH, ESEARCH and
// SEARCHRES). Flags, dates, sizes and number sets are matched from the view;
// only criteria on headers or text read messages from the store, and only
// for messages the cheap criteria have not already ruled out.
func (s *session) Search(kind imapserver.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (*imap.SearchData, error) {
	if err := s.active(); err != nil {
		return nil, err
	}
	sel := s.selected()
	ctx, cancel := s.ctx()
	defer cancel()
	v := sel.view

	v.mu.Lock()
	maxSeq, maxUID := s.clientMaxLocked(sel)
	cands := make([]target, 0, len(v.msgs))
	for i, m := range v.msgs {
		if c := sel.tracker.EncodeSeqNum(uint32(i + 1)); c != 0 {
			cands = append(cands, target{seq: c, msg: m})
		}
	}
	v.mu.Unlock()

	crit := s.staticCriteria(*criteria, maxSeq, maxUID)
	var (
		data   imap.SearchData
		seqs   imap.SeqSet
		uids   imap.UIDSet
		hitUID []imap.UID
	)
	// When contents matter, narrow the candidates by the top-level
	// metadata criteria first, then read the rest ahead in parallel.
	var pf *prefetcher
	if needsContents(&crit) {
		cands = slices.DeleteFunc(cands, func(t target) bool { return !matchMeta(&crit, t) })
		pf = s.prefetch(ctx, v, uidsOf(cands))
		defer pf.close()
	}
	for i, t := range cands {
		ev := &evaluator{s: s, ctx: ctx, v: v, t: t}
		if pf != nil {
			ev.raw, ev.err = pf.next(i)
			ev.loaded = true
		}
		ok := ev.match(&crit)
		if ev.err != nil {
			return nil, s.fail("SEARCH", ev.err, "")
		}
		if !ok {
			continue
		}
		uid := imap.UID(t.msg.uid)
		hitUID = append(hitUID, uid)
		num := t.seq
		if kind == imapserver.NumKindUID {
			num = uint32(uid)
			uids.AddNum(uid)
		} else {
			seqs.AddNum(t.seq)
		}
		if data.Min == 0 || num < data.Min {
			data.Min = num
		}
		if num > data.Max {
			data.Max = num
		}
		data.Count++
	}
	if kind == imapserver.NumKindUID {
		data.All = uids
	} else {
		data.All = seqs
	}
	if options.ReturnSave {
		s.saveSearch(hitUID, options)
	}
	return &data, nil
}

// saveSearch keeps the result for "$" (RFC 5182 §2.4: with only MIN and/or
// MAX, only those are saved).
func (s *session) saveSearch(hits []imap.UID, options *imap.SearchOptions) {
	var set imap.UIDSet
	if len(hits) > 0 && !options.ReturnAll && !options.ReturnCount && (options.ReturnMin || options.ReturnMax) {
		if options.ReturnMin {
			set.AddNum(hits[0])
		}
		if options.ReturnMax {
			set.AddNum(hits[len(hits)-1])
		}
	} else {
		for _, u := range hits {
			set.AddNum(u)
		}
	}
	if set == nil {
		set = imap.UIDSet{}
	}
	s.mu.Lock()
	s.searchRes = set
	s.mu.Unlock()
}

// staticCriteria resolves "*" and "$" in every number set of the criteria.
func (s *session) staticCriteria(c imap.SearchCriteria, maxSeq uint32, maxUID imap.UID) imap.SearchCriteria {
	out := c
	out.SeqNum = nil
	out.UID = nil
	for _, set := range c.SeqNum {
		out.SeqNum = append(out.SeqNum, staticSeqSet(set, maxSeq))
	}
	for _, set := range c.UID {
		if imap.IsSearchRes(set) {
			out.UID = append(out.UID, s.searchRes)
			continue
		}
		out.UID = append(out.UID, staticUIDSet(set, maxUID))
	}
	out.Not = make([]imap.SearchCriteria, len(c.Not))
	for i := range c.Not {
		out.Not[i] = s.staticCriteria(c.Not[i], maxSeq, maxUID)
	}
	out.Or = make([][2]imap.SearchCriteria, len(c.Or))
	for i := range c.Or {
		out.Or[i] = [2]imap.SearchCriteria{
			s.staticCriteria(c.Or[i][0], maxSeq, maxUID),
			s.staticCriteria(c.Or[i][1], maxSeq, maxUID),
		}
	}
	return out
}

// evaluator matches one message, loading and parsing it at most once and
// only if a criterion needs its contents.
type evaluator struct {
	s   *session
	ctx context.Context
	v   *mailboxView
	t   target

	raw    []byte
	loaded bool
	header *mail.Header
	err    error
}

func (ev *evaluator) load() []byte {
	if !ev.loaded {
		ev.loaded = true
		raw, err := ev.s.loadRaw(ev.ctx, ev.v, ev.t.msg.uid)
		if err != nil && ev.err == nil {
			ev.err = err
		}
		ev.raw = raw
	}
	return ev.raw
}

func (ev *evaluator) hdr() *mail.Header {
	if ev.header == nil {
		h, _ := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(ev.load())))
		ev.header = &mail.Header{Header: gomessage.Header{Header: h}}
	}
	return ev.header
}

// needsContents reports whether any criterion, however nested, reads the
// message itself.
func needsContents(c *imap.SearchCriteria) bool {
	if len(c.Header) > 0 || !c.SentSince.IsZero() || !c.SentBefore.IsZero() || len(c.Body) > 0 || len(c.Text) > 0 {
		return true
	}
	for i := range c.Not {
		if needsContents(&c.Not[i]) {
			return true
		}
	}
	for i := range c.Or {
		if needsContents(&c.Or[i][0]) || needsContents(&c.Or[i][1]) {
			return true
		}
	}
	return false
}

// matchMeta evaluates the criteria's own metadata keys (sequence numbers,
// UIDs, dates, flags, sizes), which are ANDed with everything else.
func matchMeta(c *imap.SearchCriteria, t target) bool {
	m := t.msg
	for _, set := range c.SeqNum {
		if !set.Contains(t.seq) {
			return false
		}
	}
	for _, set := range c.UID {
		if !set.Contains(imap.UID(m.uid)) {
			return false
		}
	}
	if !matchDate(m.date, c.Since, c.Before) {
		return false
	}
	for _, f := range c.Flag {
		if !hasFlag(m.flags, f) {
			return false
		}
	}
	for _, f := range c.NotFlag {
		if hasFlag(m.flags, f) {
			return false
		}
	}
	if c.Larger != 0 && m.size <= c.Larger {
		return false
	}
	if c.Smaller != 0 && m.size >= c.Smaller {
		return false
	}
	return true
}

// match evaluates criteria: metadata first, then contents (RFC 9051 §6.4.4).
func (ev *evaluator) match(c *imap.SearchCriteria) bool {
	if !matchMeta(c, ev.t) {
		return false
	}
	for i := range c.Not {
		if ev.match(&c.Not[i]) {
			return false
		}
	}
	for i := range c.Or {
		if !ev.match(&c.Or[i][0]) && !ev.match(&c.Or[i][1]) {
			return false
		}
	}

	// Contents.
	if len(c.Header) > 0 || !c.SentSince.IsZero() || !c.SentBefore.IsZero() || len(c.Body) > 0 || len(c.Text) > 0 {
		if ev.load() == nil {
			return false
		}
	}
	for _, hf := range c.Header {
		if !matchHeaderField(ev.hdr().FieldsByKey(hf.Key), hf.Value) {
			return false
		}
	}
	if !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
		d, err := ev.hdr().Date()
		if err != nil || !matchDate(d, c.SentSince, c.SentBefore) {
			return false
		}
	}
	for _, text := range c.Body {
		if !matchText(ev.raw, text, false) {
			return false
		}
	}
	for _, text := range c.Text {
		if !matchText(ev.raw, text, true) {
			return false
		}
	}
	return true
}

// matchDate compares dates only, ignoring time and zone (RFC 9051 §6.4.4).
func matchDate(t, since, before time.Time) bool {
	if since.IsZero() && before.IsZero() {
		return true
	}
	d := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	if !since.IsZero() && d.Before(since) {
		return false
	}
	if !before.IsZero() && !d.Before(before) {
		return false
	}
	return true
}

// matchHeaderField: an empty value matches any message with the field
// (RFC 9051 §6.4.4 HEADER); otherwise a case-insensitive substring of the
// decoded value.
func matchHeaderField(fields gomessage.HeaderFields, value string) bool {
	if value == "" {
		return fields.Len() > 0
	}
	value = strings.ToLower(value)
	for fields.Next() {
		text, err := fields.Text()
		if err != nil {
			text = fields.Value()
		}
		if strings.Contains(strings.ToLower(text), value) {
			return true
		}
	}
	return false
}

// maxSearchPart bounds how much of one decoded part SEARCH reads.
const maxSearchPart = 16 << 20

// matchText searches the decoded text parts (transfer encoding and charset
// undone), and with header also every header field, case-insensitively.
func matchText(raw []byte, text string, header bool) bool {
	if text == "" {
		return true
	}
	e, err := gomessage.Read(bytes.NewReader(raw))
	if e == nil {
		// Unparseable: fall back to the raw bytes.
		return bytes.Contains(bytes.ToLower(raw), []byte(strings.ToLower(text)))
	}
	_ = err // an unknown charset or encoding still gives a usable entity
	return matchEntity(e, strings.ToLower(text), header)
}

func matchEntity(e *gomessage.Entity, text string, header bool) bool {
	if header {
		for f := e.Header.Fields(); f.Next(); {
			v, err := f.Text()
			if err != nil {
				v = f.Value()
			}
			if strings.Contains(strings.ToLower(v), text) {
				return true
			}
		}
	}
	if mr := e.MultipartReader(); mr != nil {
		for {
			p, _ := mr.NextPart() // an unknown charset or encoding still gives a part
			if p == nil {
				return false
			}
			// Header fields of nested parts count for TEXT too.
			if matchEntity(p, text, header) {
				return true
			}
		}
	}
	mt, _, _ := e.Header.ContentType()
	if mt != "" && !strings.HasPrefix(mt, "text/") && !strings.HasPrefix(mt, "message/") {
		return false
	}
	b, _ := io.ReadAll(io.LimitReader(e.Body, maxSearchPart))
	return strings.Contains(strings.ToLower(string(b)), text)
}
