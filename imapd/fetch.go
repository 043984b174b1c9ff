package imapd

import (
	"bufio"
	"bytes"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-message/textproto"
)

// Fetch implements imapserver.Session (FETCH, UID FETCH). FLAGS, UID,
// INTERNALDATE and RFC822.SIZE come from the view; anything else reads the
// message from the store, one at a time, outside the view's lock.
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

	needRaw := options.Envelope || options.BodyStructure != nil || len(options.BodySection) > 0 ||
		len(options.BinarySection) > 0 || len(options.BinarySectionSize) > 0
	var pf *prefetcher
	if needRaw {
		pf = s.prefetch(ctx, v, uidsOf(targets))
		defer pf.close()
	}
	for i, t := range targets {
		var raw []byte
		if needRaw {
			var err error
			if raw, err = pf.next(i); err != nil {
				return s.fail("FETCH", err, "")
			}
			if raw == nil {
				continue // expunged meanwhile; the EXPUNGE follows
			}
		}
		if err := writeFetch(w.CreateMessage(t.seq), t.msg, options, raw, seen[t.msg.uid]); err != nil {
			return err
		}
	}
	return nil
}

// writeFetch writes one FETCH response and always closes rw (it holds the
// connection's writer lock).
func writeFetch(rw *imapserver.FetchResponseWriter, m message, options *imap.FetchOptions, raw []byte, seenSet bool) error {
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
		rw.WriteEnvelope(envelopeOf(raw))
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
	return imapserver.ExtractBodySection(bytes.NewReader(raw), bs)
}

// headerEnd returns the offset just past the blank line that ends the
// header, or len(raw) when there is none.
func headerEnd(raw []byte) int {
	if bytes.HasPrefix(raw, []byte("\r\n")) {
		return 2
	}
	if bytes.HasPrefix(raw, []byte("\n")) {
		return 1
	}
	crlf := bytes.Index(raw, []byte("\r\n\r\n"))
	lf := bytes.Index(raw, []byte("\n\n"))
	switch {
	case crlf >= 0 && (lf < 0 || crlf+2 <= lf):
		return crlf + 4
	case lf >= 0:
		return lf + 2
	}
	return len(raw)
}

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
