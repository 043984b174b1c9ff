package imapd

import (
	"bufio"
	"bytes"
	"io"
	nettextproto "net/textproto"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"

	"github.com/bmgate/bmgate/mailmap"
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
	// metadata criteria first, then read the rest ahead in parallel: the
	// messages when a criterion searches text, else (header criteria
	// only) their header index entries, which read no bodies.
	var (
		pfRaw *prefetcher[[]byte]
		pfHdr *prefetcher[mailmap.MessageHeader]
	)
	if needsText(&crit) || searchesHeader(&crit) {
		cands = slices.DeleteFunc(cands, func(t target) bool { return !matchMeta(&crit, t) })
		if needsText(&crit) || legacyContents.Load() {
			pfRaw = s.prefetchRaw(ctx, v, cands)
			defer pfRaw.close()
		} else {
			pfHdr = s.prefetchHeaders(ctx, v, cands, headerParts(&crit))
			defer pfHdr.close()
		}
	}
	for i, t := range cands {
		ev := &evaluator{t: t}
		var ok bool
		switch {
		case pfRaw != nil:
			ev.raw, ok, ev.err = pfRaw.next(i)
			ev.gone = !ok
		case pfHdr != nil:
			var h mailmap.MessageHeader
			h, ok, ev.err = pfHdr.next(i)
			ev.ih, ev.gone = &h, !ok
		}
		ok = ev.match(&crit)
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

// evaluator matches one message. What criteria on its contents need was
// read ahead: the message itself (raw) when any criterion searches text,
// else its header index entry (ih); header criteria then use the entry's
// decoded fields, or parse its header section, which gives what parsing
// the message gives.
type evaluator struct {
	t target

	raw    []byte
	ih     *mailmap.MessageHeader
	gone   bool // expunged since the view was synced: matches nothing on contents
	header *mail.Header
	err    error
}

func (ev *evaluator) hdr() *mail.Header {
	if ev.header == nil {
		src := ev.raw
		if ev.ih != nil {
			src = ev.ih.Header
		}
		h, _ := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(src)))
		ev.header = &mail.Header{Header: gomessage.Header{Header: h}}
	}
	return ev.header
}

// needsText reports whether any criterion, however nested, searches the
// message's text (BODY, TEXT), which takes the message itself.
func needsText(c *imap.SearchCriteria) bool {
	if len(c.Body) > 0 || len(c.Text) > 0 {
		return true
	}
	for i := range c.Not {
		if needsText(&c.Not[i]) {
			return true
		}
	}
	for i := range c.Or {
		if needsText(&c.Or[i][0]) || needsText(&c.Or[i][1]) {
			return true
		}
	}
	return false
}

// searchesHeader reports whether any criterion, however nested, reads the
// message's header (HEADER, FROM, TO, CC, BCC, SUBJECT, SENT*).
func searchesHeader(c *imap.SearchCriteria) bool {
	if len(c.Header) > 0 || !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
		return true
	}
	for i := range c.Not {
		if searchesHeader(&c.Not[i]) {
			return true
		}
	}
	for i := range c.Or {
		if searchesHeader(&c.Or[i][0]) || searchesHeader(&c.Or[i][1]) {
			return true
		}
	}
	return false
}

// headerParts is what of the header index the header criteria, however
// nested, need: the decoded values of the fields the index keeps decoded
// (FROM, TO, CC, BCC, SUBJECT, or HEADER of one of those), and the header
// section for any other field and for SENTSINCE/SENTBEFORE.
func headerParts(c *imap.SearchCriteria) mailmap.HeaderParts {
	var parts mailmap.HeaderParts
	if !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
		parts |= mailmap.HeaderSection
	}
	for _, hf := range c.Header {
		if p := mailmap.DecodedPart(nettextproto.CanonicalMIMEHeaderKey(hf.Key)); p != 0 {
			parts |= p
		} else {
			parts |= mailmap.HeaderSection
		}
	}
	for i := range c.Not {
		parts |= headerParts(&c.Not[i])
	}
	for i := range c.Or {
		parts |= headerParts(&c.Or[i][0]) | headerParts(&c.Or[i][1])
	}
	return parts
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
		if ev.gone || ev.err != nil || (ev.raw == nil && ev.ih == nil) {
			return false
		}
	}
	for _, hf := range c.Header {
		if ev.ih != nil {
			if vals, ok := ev.ih.Decoded(nettextproto.CanonicalMIMEHeaderKey(hf.Key)); ok {
				if !matchValues(vals, hf.Value) {
					return false
				}
				continue
			}
		}
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

// matchValues is matchHeaderField over a field's decoded values, as the
// header index keeps them (one per field of that name; none when absent).
func matchValues(vals []string, value string) bool {
	if value == "" {
		return len(vals) > 0
	}
	value = strings.ToLower(value)
	for _, v := range vals {
		if strings.Contains(strings.ToLower(v), value) {
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
	if !header && !legacyContents.Load() {
		if match, ok := matchBodyFast(raw, strings.ToLower(text)); ok {
			return match
		}
	}
	return matchEntities(raw, text, header)
}

// matchEntities is matchText by go-message's reading of the message.
func matchEntities(raw []byte, text string, header bool) bool {
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

// matchBodyFast answers BODY for a message that is one part whose text is
// its bytes (no multipart, no transfer encoding to undo, no charset to
// convert): what matchText would answer, without building the entity.
// ok is false for every other message, which matchText then reads as
// before. lower is the lower-cased search text.
func matchBodyFast(raw []byte, lower string) (match, ok bool) {
	br := headerReaders.Get().(*bufio.Reader)
	rd := bytes.NewReader(raw)
	br.Reset(rd)
	h, err := textproto.ReadHeader(br)
	off := len(raw) - rd.Len() - br.Buffered() // where go-message's body starts
	br.Reset(nil)
	headerReaders.Put(br)
	// A header near go-message's 1 MB limit takes the slow path, which
	// knows what to do about it.
	if err != nil || off > 256<<10 {
		return false, false
	}
	mh := gomessage.Header{Header: h}
	mt, params, _ := mh.ContentType()
	if strings.HasPrefix(mt, "multipart/") {
		return false, false
	}
	switch strings.ToLower(h.Get("Content-Transfer-Encoding")) {
	case "", "7bit", "8bit", "binary":
	default:
		return false, false
	}
	if strings.HasPrefix(mt, "text/") {
		if ch, ok := params["charset"]; ok {
			switch strings.ToLower(ch) {
			case "utf-8", "us-ascii": // go-message passes these through
			default:
				return false, false
			}
		}
	}
	if mt != "" && !strings.HasPrefix(mt, "text/") && !strings.HasPrefix(mt, "message/") {
		return false, true
	}
	body := raw[off:]
	if len(body) > maxSearchPart {
		body = body[:maxSearchPart]
	}
	return containsLower(body, lower), true
}

// containsLower is strings.Contains(strings.ToLower(string(b)), lower),
// lowering ASCII text byte by byte (which is what ToLower does to it)
// without a string copy.
func containsLower(b []byte, lower string) bool {
	buf := lowerBufs.Get().(*[]byte)
	defer lowerBufs.Put(buf)
	out := (*buf)[:0]
	for _, c := range b {
		if c >= 0x80 {
			return strings.Contains(strings.ToLower(string(b)), lower)
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		out = append(out, c)
	}
	if cap(out) <= 1<<20 {
		*buf = out
	}
	return bytes.Contains(out, []byte(lower))
}

var lowerBufs = sync.Pool{New: func() any { return new([]byte) }}

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
