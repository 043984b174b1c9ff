package imapd

import (
	"bufio"
	"bytes"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-message/textproto"

	"github.com/bmgate/bmgate/mailmap"
)

// Fetch implements imapserver.Session (FETCH, UID FETCH). FLAGS, UID,
// INTERNALDATE and RFC822.SIZE come from the view; ENVELOPE and header
// sections from the store's header index; anything else reads the messages
// from the store. Both are read ahead in batches, outside the view's lock.
func (s *session) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	if err := s.active(); err != nil {
		return err
	}
	sel := s.selected()
	ctx, cancel := s.ctx()
	defer cancel()

	markSeen := false
	if !sel.readOnly {
		for _, bs := range options.BodySection {
			markSeen = markSeen || !bs.Peek
		}
		for _, bs := range options.BinarySection {
			markSeen = markSeen || !bs.Peek
		}
	}

	v := sel.view
	v.mu.Lock()
	targets := s.resolveLocked(sel, numSet)
	var seen map[uint32]bool
	if markSeen {
		var err error
		if seen, err = s.markSeenLocked(ctx, sel, targets); err != nil {
			v.mu.Unlock()
			return s.fail("FETCH", err, "")
		}
	}
	v.mu.Unlock()

	switch {
	case needsRaw(options):
		pf := s.prefetchRaw(ctx, v, targets)
		defer pf.close()
		for i, t := range targets {
			raw, ok, err := pf.next(i)
			if err != nil {
				return s.fail("FETCH", err, "")
			}
			if !ok {
				continue // expunged meanwhile; the EXPUNGE follows
			}
			if err := writeFetch(w.CreateMessage(t.seq), t.msg, options, raw, nil, seen[t.msg.uid]); err != nil {
				return err
			}
		}
	case needsHeader(options):
		// Served from the header index: the header section stands in for
		// the message, which gives the same answers for every item
		// needsHeader admits (see there).
		var parts mailmap.HeaderParts
		if options.Envelope {
			parts |= mailmap.HeaderEnvelope
		}
		if len(options.BodySection) > 0 {
			parts |= mailmap.HeaderSection
		}
		pf := s.prefetchHeaders(ctx, v, targets, parts)
		defer pf.close()
		for i, t := range targets {
			h, ok, err := pf.next(i)
			if err != nil {
				return s.fail("FETCH", err, "")
			}
			if !ok {
				continue
			}
			var env *imap.Envelope
			if options.Envelope {
				env = imapEnvelope(&h.Envelope)
			}
			if err := writeFetch(w.CreateMessage(t.seq), t.msg, options, h.Header, env, seen[t.msg.uid]); err != nil {
				return err
			}
		}
	default:
		for _, t := range targets {
			if err := writeFetch(w.CreateMessage(t.seq), t.msg, options, nil, nil, seen[t.msg.uid]); err != nil {
				return err
			}
		}
	}
	return nil
}

// legacyContents makes FETCH and SEARCH read whole messages for header
// items too, and extract header fields with imapserver.ExtractBodySection,
// as before the header index: tests compare the two paths' answers.
var legacyContents atomic.Bool

// needsRaw reports whether a FETCH needs the messages themselves: body
// structure, binary sections, and body sections other than the top-level
// header (whole or some fields).
func needsRaw(options *imap.FetchOptions) bool {
	if legacyContents.Load() {
		return options.Envelope || options.BodyStructure != nil || len(options.BodySection) > 0 ||
			len(options.BinarySection) > 0 || len(options.BinarySectionSize) > 0
	}
	if options.BodyStructure != nil || len(options.BinarySection) > 0 || len(options.BinarySectionSize) > 0 {
		return true
	}
	for _, bs := range options.BodySection {
		if !headerOnly(bs) {
			return true
		}
	}
	return false
}

// needsHeader reports whether a FETCH that does not need the messages
// needs their header: ENVELOPE and top-level header sections. Both read
// the header through a parser that stops at the first blank line, and
// BODY[HEADER] is raw[:HeaderEnd(raw)], so given the stored header section
// instead of the message they answer the same, byte for byte.
func needsHeader(options *imap.FetchOptions) bool {
	return options.Envelope || len(options.BodySection) > 0
}

// headerOnly reports whether a body section is the message's own header,
// whole (BODY[HEADER], RFC822.HEADER) or filtered (HEADER.FIELDS,
// HEADER.FIELDS.NOT).
func headerOnly(bs *imap.FetchItemBodySection) bool {
	return len(bs.Part) == 0 && bs.Specifier == imap.PartSpecifierHeader
}

// writeFetch writes one FETCH response and always closes rw (it holds the
// connection's writer lock). raw is the message, or its header section when
// only header items are asked for; env, when set, is its envelope (else it
// is extracted from raw).
func writeFetch(rw *imapserver.FetchResponseWriter, m message, options *imap.FetchOptions, raw []byte, env *imap.Envelope, seenSet bool) error {
	var werr error
	write := func(b []byte, wc interface {
		Write([]byte) (int, error)
		Close() error
	}) {
		_, err := wc.Write(b)
		if cerr := wc.Close(); err == nil {
			err = cerr
		}
		if werr == nil {
			werr = err
		}
	}
	if options.UID {
		rw.WriteUID(imap.UID(m.uid))
	}
	// A \Seen set as a side effect is reported in the same response
	// (RFC 9051 §6.4.5).
	if options.Flags || seenSet {
		rw.WriteFlags(m.flags)
	}
	if options.InternalDate {
		rw.WriteInternalDate(m.date)
	}
	if options.RFC822Size {
		rw.WriteRFC822Size(m.size)
	}
	if options.Envelope {
		if env == nil {
			env = envelopeOf(raw)
		}
		rw.WriteEnvelope(env)
	}
	if options.BodyStructure != nil {
		rw.WriteBodyStructure(bodyStructureOf(raw))
	}
	for _, bs := range options.BodySection {
		b := bodySection(raw, bs)
		write(b, rw.WriteBodySection(bs, int64(len(b))))
	}
	for _, bs := range options.BinarySection {
		b := imapserver.ExtractBinarySection(bytes.NewReader(raw), bs)
		write(b, rw.WriteBinarySection(bs, int64(len(b))))
	}
	for _, bss := range options.BinarySectionSize {
		rw.WriteBinarySectionSize(bss, imapserver.ExtractBinarySectionSize(bytes.NewReader(raw), bss))
	}
	if err := rw.Close(); err != nil {
		return err
	}
	return werr
}

// bodySection answers BODY[...]: the whole message, its header and its text
// are sliced from the stored bytes, so RFC822.SIZE, BODY[] and
// BODY[HEADER]+BODY[TEXT] agree byte for byte; parts and header-field
// subsets go through imapserver.ExtractBodySection.
func bodySection(raw []byte, bs *imap.FetchItemBodySection) []byte {
	if len(bs.Part) == 0 && len(bs.HeaderFields) == 0 && len(bs.HeaderFieldsNot) == 0 {
		switch bs.Specifier {
		case imap.PartSpecifierNone:
			return partial(raw, bs.Partial)
		case imap.PartSpecifierHeader:
			return partial(raw[:headerEnd(raw)], bs.Partial)
		case imap.PartSpecifierText:
			return partial(raw[headerEnd(raw):], bs.Partial)
		}
	}
	if headerOnly(bs) && !legacyContents.Load() {
		return headerFieldsSection(raw, bs)
	}
	return imapserver.ExtractBodySection(bytes.NewReader(raw), bs)
}

// headerReaders are the bufio.Readers headerFieldsSection parses with.
var headerReaders = sync.Pool{New: func() any { return bufio.NewReader(nil) }}

// headerFieldsSection is imapserver.ExtractBodySection for a top-level
// BODY[HEADER.FIELDS (…)] or BODY[HEADER.FIELDS.NOT (…)], the same steps
// without the costs that add up over a folder listing: a new 4 KiB reader
// and a lower-cased copy of every field name per message. Header field
// names are ASCII (textproto refuses others), so lowering them byte by
// byte is strings.ToLower. TestHeaderFieldsSection holds it to
// ExtractBodySection.
func headerFieldsSection(raw []byte, bs *imap.FetchItemBodySection) []byte {
	br := headerReaders.Get().(*bufio.Reader)
	br.Reset(bytes.NewReader(raw))
	h, err := textproto.ReadHeader(br)
	br.Reset(nil)
	headerReaders.Put(br)
	if err != nil {
		return nil
	}
	if len(bs.HeaderFields) > 0 {
		keep := make(map[string]struct{}, len(bs.HeaderFields))
		for _, k := range bs.HeaderFields {
			keep[strings.ToLower(k)] = struct{}{}
		}
		var buf [64]byte
		for f := h.Fields(); f.Next(); {
			if _, ok := keep[string(asciiLower(buf[:0], f.Key()))]; !ok {
				f.Del()
			}
		}
	}
	for _, k := range bs.HeaderFieldsNot {
		h.Del(k)
	}
	var out bytes.Buffer
	if err := textproto.WriteHeader(&out, h); err != nil {
		return nil
	}
	return extractPartial(out.Bytes(), bs.Partial)
}

// asciiLower appends s to dst with A-Z lowered.
func asciiLower(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// extractPartial is imapserver's own partial for sections it extracts (it
// differs from partial at an offset just at the end: empty, not nil).
func extractPartial(b []byte, p *imap.SectionPartial) []byte {
	if p == nil {
		return b
	}
	end := p.Offset + p.Size
	if p.Offset > int64(len(b)) {
		return nil
	}
	if end > int64(len(b)) {
		end = int64(len(b))
	}
	return b[p.Offset:end]
}

// headerEnd is where the header ends: the index stores raw[:headerEnd(raw)].
func headerEnd(raw []byte) int { return mailmap.HeaderEnd(raw) }

func partial(b []byte, p *imap.SectionPartial) []byte {
	if p == nil {
		return b
	}
	if p.Offset >= int64(len(b)) {
		return nil
	}
	end := min(p.Offset+p.Size, int64(len(b)))
	return b[p.Offset:end]
}

func envelopeOf(raw []byte) *imap.Envelope {
	// A damaged header still yields what could be read.
	h, _ := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw)))
	return imapserver.ExtractEnvelope(h)
}

// imapEnvelope is the header index's envelope as go-imap's type (the index
// stores what imapserver.ExtractEnvelope gave).
func imapEnvelope(e *mailmap.Envelope) *imap.Envelope {
	addrs := func(l []mailmap.Address) []imap.Address {
		if l == nil {
			return nil
		}
		out := make([]imap.Address, len(l))
		for i, a := range l {
			out[i] = imap.Address{Name: a.Name, Mailbox: a.Mailbox, Host: a.Host}
		}
		return out
	}
	return &imap.Envelope{
		Date: e.Date, Subject: e.Subject,
		From: addrs(e.From), Sender: addrs(e.Sender), ReplyTo: addrs(e.ReplyTo),
		To: addrs(e.To), Cc: addrs(e.Cc), Bcc: addrs(e.Bcc),
		InReplyTo: e.InReplyTo, MessageID: e.MessageID,
	}
}

// bodyStructureOf extracts BODYSTRUCTURE. imapserver panics on a multipart
// without parts (a bad or missing boundary), which a stranger's message can
// have; such a part is described as the text it effectively is, as Dovecot
// does.
func bodyStructureOf(raw []byte) imap.BodyStructure {
	bs := imapserver.ExtractBodyStructure(bytes.NewReader(raw))
	return fixBodyStructure(bs, int64(len(raw)-headerEnd(raw)))
}

func fixBodyStructure(bs imap.BodyStructure, size int64) imap.BodyStructure {
	switch bs := bs.(type) {
	case *imap.BodyStructureMultiPart:
		if len(bs.Children) == 0 {
			return &imap.BodyStructureSinglePart{
				Type:     "text",
				Subtype:  "plain",
				Params:   map[string]string{"charset": "us-ascii"},
				Size:     uint32(max(size, 0)),
				Text:     &imap.BodyStructureText{},
				Extended: &imap.BodyStructureSinglePartExt{},
			}
		}
		for i, c := range bs.Children {
			bs.Children[i] = fixBodyStructure(c, 0)
		}
	case *imap.BodyStructureSinglePart:
		if m := bs.MessageRFC822; m != nil && m.BodyStructure != nil {
			m.BodyStructure = fixBodyStructure(m.BodyStructure, 0)
		}
	}
	return bs
}
