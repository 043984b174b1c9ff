package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"html"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/charset"
	"github.com/emersion/go-message/mail"
)

// MaxTextBytes is the most subject plus body bytes a Bitmessage message may
// carry: PyBitmessage refuses longer text (2^18 − 500, docs/protocol.md §10.5) so
// that the whole object stays within 256 KiB.
const MaxTextBytes = 1<<18 - 500

// Limits on what ParseOutgoing looks at. A submission is already bounded by
// the SMTP size limit; these stop a small message from making us do much.
const (
	maxHeaderBytes = 256 << 10 // one header block
	maxMIMEDepth   = 8         // nesting of multiparts
	maxMIMEParts   = 64        // parts in the whole message
	maxPartBytes   = 4 << 20   // decoded bytes read from one part
	maxReferences  = 20        // message IDs kept in References
	maxMsgIDLen    = 250
	maxHTMLDepth   = 16 // quote marks and list indents rendered, so output stays linear in the input
)

// Outgoing is what a submitted mail becomes before it is sent over
// Bitmessage: one plain-text subject and body plus the headers that keep
// threads together.
type Outgoing struct {
	From       string // addr-spec of the From header, "" when there is none
	Subject    string // decoded, one line
	Body       string // UTF-8 plain text, LF line ends
	MessageID  string // without angle brackets, "" when absent or invalid
	InReplyTo  string // first valid id of In-Reply-To, without brackets
	References []string
	Date       time.Time // zero when absent or unparseable
}

// ParseOutgoing reads a submitted RFC 5322 message. The text comes from the
// text/plain part (charset and transfer encoding decoded, format=flowed
// joined); an HTML-only mail is turned into readable text. Attachments,
// embedded images, forwarded messages and encrypted MIME are refused with an
// *Error: Bitmessage carries text only. The detached signature part of a
// multipart/signed mail is dropped (Bitmessage signs every message itself,
// and the MIME form the signature covers does not survive the trip).
// Broken MIME gives an *Error, never a panic.
func ParseOutgoing(raw []byte) (Outgoing, error) {
	e, err := message.ReadWithOptions(bytes.NewReader(raw), &message.ReadOptions{MaxHeaderBytes: maxHeaderBytes})
	if e == nil {
		return Outgoing{}, BadContent("the message header cannot be parsed", err)
	}
	h := mail.Header{Header: e.Header}
	var o Outgoing

	from, ferr := h.AddressList("From")
	switch {
	case ferr != nil:
		return Outgoing{}, BadContent("the From header cannot be parsed", ferr)
	case len(from) > 1:
		return Outgoing{}, BadSender("a message may have only one From address", nil)
	case len(from) == 1:
		o.From = from[0].Address
	}

	subject, serr := h.Subject()
	if serr != nil {
		// An encoded word in an unknown charset: keep the raw text rather
		// than refuse the mail.
		subject = h.Get("Subject")
	}
	o.Subject = oneLine(subject)
	if d, err := h.Date(); err == nil {
		o.Date = d
	}
	if id, err := h.MessageID(); err == nil && ValidMsgID(id) {
		o.MessageID = id
	}
	// MsgIDList returns what it parsed before a syntax error; use that.
	irt, _ := h.MsgIDList("In-Reply-To")
	for _, id := range irt {
		if ValidMsgID(id) {
			o.InReplyTo = id
			break
		}
	}
	refs, _ := h.MsgIDList("References")
	o.References = trimReferences(refs)

	x := &extractor{}
	body, _, err := x.entity(e, err, 0)
	if err != nil {
		return Outgoing{}, err
	}
	o.Body = cleanBody(body)

	if n := len(o.Subject) + len(o.Body); n > MaxTextBytes {
		return Outgoing{}, TooLarge(fmt.Sprintf("message text is %d bytes; Bitmessage carries at most %d bytes of subject and body", n, MaxTextBytes))
	}
	return o, nil
}

// Keys of the threading headers in Extra (docs/protocol.md §12, encoding 3 map).
const (
	ExtraMessageID  = "messageid"
	ExtraInReplyTo  = "inreplyto"
	ExtraReferences = "references"
)

// Extra returns the threading headers to carry with the message: message
// IDs without angle brackets, references separated by one space. Empty
// values are left out; nil when there is nothing to carry.
func (o Outgoing) Extra() map[string]string {
	m := map[string]string{}
	if o.MessageID != "" {
		m[ExtraMessageID] = o.MessageID
	}
	if o.InReplyTo != "" {
		m[ExtraInReplyTo] = o.InReplyTo
	}
	if len(o.References) > 0 {
		m[ExtraReferences] = strings.Join(o.References, " ")
	}
	if len(m) == 0 {
		return nil
	}
	return m
}

// ThreadingFromExtra reads the threading headers another node sent. The
// values come from a stranger: every id is checked against the msg-id
// syntax and dropped when it does not match, so nothing but a plain id can
// reach a header we write. Angle brackets around ids are tolerated.
func ThreadingFromExtra(extra map[string]string) (messageID, inReplyTo string, refs []string) {
	if id := strings.Trim(strings.TrimSpace(extra[ExtraMessageID]), "<>"); ValidMsgID(id) {
		messageID = id
	}
	if id := strings.Trim(strings.TrimSpace(extra[ExtraInReplyTo]), "<>"); ValidMsgID(id) {
		inReplyTo = id
	}
	r := extra[ExtraReferences]
	if len(r) > maxReferences*4*(maxMsgIDLen+3) {
		r = "" // absurdly long: do not even split it
	}
	var ids []string
	for _, f := range strings.Fields(r) {
		ids = append(ids, strings.Trim(f, "<>"))
	}
	refs = trimReferences(ids)
	return messageID, inReplyTo, refs
}

// trimReferences keeps the valid ids; of a long list, the first (the
// thread's root) and the most recent ones, as RFC 5322 §3.6.4 suggests.
func trimReferences(ids []string) []string {
	var out []string
	for _, id := range ids {
		if ValidMsgID(id) {
			out = append(out, id)
		}
	}
	if len(out) > maxReferences {
		out = append(out[:1], out[len(out)-maxReferences+1:]...)
	}
	return out
}

// ValidMsgID reports whether id (without angle brackets) is a msg-id that
// is safe to write into a header: id-left "@" id-right, where id-left is
// dot-atom text and id-right is dot-atom text or a no-fold literal
// (RFC 5322 §3.6.4), ASCII only, at most 250 bytes.
func ValidMsgID(id string) bool {
	if len(id) < 3 || len(id) > maxMsgIDLen {
		return false
	}
	left, right, ok := strings.Cut(id, "@")
	if !ok || !dotAtomText(left) {
		return false
	}
	if strings.HasPrefix(right, "[") && strings.HasSuffix(right, "]") && len(right) >= 2 {
		for i := 1; i < len(right)-1; i++ {
			c := right[i]
			if c < 33 || c > 126 || c == '[' || c == ']' || c == '\\' {
				return false
			}
		}
		return true
	}
	return dotAtomText(right)
}

func dotAtomText(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isAtext(s[i]) && s[i] != '.' {
			return false
		}
	}
	return true
}

func isAtext(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

// oneLine turns header text into one clean line: control characters
// (CR and LF above all) become spaces and invalid UTF-8 is repaired.
func oneLine(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || r == '\u2028' || r == '\u2029' || (r >= 0x80 && r < 0xa0) {
			return ' '
		}
		return r
	}, s)
	return strings.TrimSpace(s)
}

// cleanBody gives text the form Bitmessage carries: valid UTF-8, LF line
// ends, no control characters but tab and newline, no trailing white space
// or blank lines.
func cleanBody(s string) string {
	return strings.TrimRight(normalizeText(s), " \t\n")
}

// normalizeText repairs invalid UTF-8, turns every line end into LF and
// drops control characters other than tab and newline.
func normalizeText(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\r':
			return '\n'
		case r == '\n' || r == '\t':
			return r
		case r < ' ' || r == 0x7f:
			return -1
		}
		return r
	}, s)
}

// Part ranks inside multipart/alternative: the client's own plain text is
// preferred to our rendering of its HTML.
const (
	rankNone = iota
	rankHTML
	rankPlain
)

// errAttachments is the refusal for any part that is not text.
func errAttachments(what string) *Error {
	return MediaUnsupported(what+" cannot be carried over Bitmessage, which carries text only; send the text alone", nil)
}

type extractor struct {
	parts int
}

// entity returns the text of one MIME entity and how good a rendering of
// the message it is. decodeErr is the error go-message gave when it set the
// entity's decoders up (unknown charset or transfer encoding); it matters
// only if the text is read.
func (x *extractor) entity(e *message.Entity, decodeErr error, depth int) (string, int, error) {
	x.parts++
	if x.parts > maxMIMEParts {
		return "", 0, BadContent(fmt.Sprintf("the message has more than %d MIME parts", maxMIMEParts), nil)
	}
	if depth > maxMIMEDepth {
		return "", 0, BadContent("the MIME structure is nested too deeply", nil)
	}
	mediaType, params, err := contentType(e.Header)
	if err != nil {
		return "", 0, BadContent("a Content-Type header cannot be parsed", err)
	}
	multipart := strings.HasPrefix(mediaType, "multipart/")
	if multipart && params["boundary"] == "" {
		return "", 0, BadContent("a multipart has no boundary", nil)
	}
	if isAttachment(e.Header, params) && !multipart {
		return "", 0, errAttachments("attachments")
	}
	switch {
	case mediaType == "text/plain":
		text, err := readText(e, params, decodeErr)
		if err != nil {
			return "", 0, err
		}
		if strings.EqualFold(params["format"], "flowed") {
			text = unflow(text, strings.EqualFold(params["delsp"], "yes"))
		}
		return text, rankPlain, nil
	case mediaType == "text/html":
		text, err := readText(e, params, decodeErr)
		if err != nil {
			return "", 0, err
		}
		return HTMLToText(text), rankHTML, nil
	case mediaType == "multipart/alternative":
		return x.alternative(e, depth)
	case mediaType == "multipart/related":
		return x.related(e, params, depth)
	case mediaType == "multipart/signed":
		return x.signed(e, depth)
	case mediaType == "multipart/encrypted", mediaType == "application/pkcs7-mime", mediaType == "application/x-pkcs7-mime":
		return "", 0, MediaUnsupported("encrypted mail (PGP/MIME, S/MIME) cannot be carried over Bitmessage; send it unencrypted: Bitmessage encrypts every message end to end", nil)
	case strings.HasPrefix(mediaType, "multipart/"):
		return x.mixed(e, depth)
	case mediaType == "message/rfc822", mediaType == "message/global":
		return "", 0, errAttachments("forwarded messages (forward inline instead)")
	case strings.HasPrefix(mediaType, "image/"):
		return "", 0, errAttachments("images")
	}
	return "", 0, errAttachments(fmt.Sprintf("attachments (%s)", mediaType))
}

// mixed joins the text parts of a multipart/mixed (or unknown multipart)
// in order: a body followed by an inline text part such as a signature or a
// list footer is one text. Anything else in it is an attachment.
func (x *extractor) mixed(e *message.Entity, depth int) (string, int, error) {
	var texts []string
	rank := rankNone
	err := x.eachPart(e, func(p *message.Entity, perr error) error {
		t, r, err := x.entity(p, perr, depth+1)
		if err != nil {
			return err
		}
		if r < rank || rank == rankNone {
			rank = r
		}
		if t = strings.TrimRight(t, "\r\n"); t != "" {
			texts = append(texts, t)
		}
		return nil
	})
	if err != nil {
		return "", 0, err
	}
	if len(texts) == 0 {
		rank = rankPlain // an empty multipart is an empty text
	}
	return strings.Join(texts, "\n\n"), rank, nil
}

// alternative picks the best rendering the client offered. Parts that are
// not picked do not matter, not even if they cannot be read: the client
// itself judged the picked one a complete rendering of the message.
func (x *extractor) alternative(e *message.Entity, depth int) (string, int, error) {
	var best string
	bestRank := rankNone
	var firstErr error
	err := x.eachPart(e, func(p *message.Entity, perr error) error {
		t, r, err := x.entity(p, perr, depth+1)
		var ge *Error
		switch {
		case err == nil:
			if r > bestRank {
				best, bestRank = t, r
			}
		case errors.As(err, &ge) && ge.Code == 554 && ge.Enhanced[1] == 6:
			// Not a usable rendering; remember why in case none is.
			if firstErr == nil {
				firstErr = err
			}
		default:
			return err // structure broken or too big: give up
		}
		return nil
	})
	if err != nil {
		return "", 0, err
	}
	if bestRank == rankNone {
		if firstErr != nil {
			return "", 0, firstErr
		}
		return "", 0, BadContent("multipart/alternative has no text part", nil)
	}
	return best, bestRank, nil
}

// related is an HTML (or text) root with embedded resources, usually
// images. The resources cannot travel, so a related with any besides its
// root is refused; a multipart/alternative around it can still offer a
// plain-text rendering instead.
func (x *extractor) related(e *message.Entity, params map[string]string, depth int) (string, int, error) {
	var text string
	rank := rankNone
	n := 0
	err := x.eachPart(e, func(p *message.Entity, perr error) error {
		n++
		if n > 1 {
			return errAttachments("embedded images and files")
		}
		var err error
		text, rank, err = x.entity(p, perr, depth+1)
		return err
	})
	if err != nil {
		return "", 0, err
	}
	if rank == rankNone {
		return "", 0, BadContent("multipart/related has no parts", nil)
	}
	return text, rank, nil
}

// signed keeps the signed content of a multipart/signed (RFC 1847) and
// drops its detached signature.
func (x *extractor) signed(e *message.Entity, depth int) (string, int, error) {
	var text string
	rank := rankNone
	n := 0
	err := x.eachPart(e, func(p *message.Entity, perr error) error {
		n++
		if n == 1 {
			var err error
			text, rank, err = x.entity(p, perr, depth+1)
			return err
		}
		mt, _, _ := contentType(p.Header)
		switch mt {
		case "application/pgp-signature", "application/pkcs7-signature", "application/x-pkcs7-signature":
			_, err := io.Copy(io.Discard, io.LimitReader(p.Body, maxPartBytes))
			return err
		}
		return errAttachments("attachments")
	})
	if err != nil {
		return "", 0, err
	}
	if rank == rankNone {
		return "", 0, BadContent("multipart/signed has no content", nil)
	}
	return text, rank, nil
}

// eachPart calls fn for every part of a multipart entity, in order.
func (x *extractor) eachPart(e *message.Entity, fn func(*message.Entity, error) error) error {
	mr := e.MultipartReader()
	if mr == nil {
		return BadContent("a multipart has no boundary", nil)
	}
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return nil
		}
		if p == nil {
			return BadContent("the MIME structure is broken", err)
		}
		if err := fn(p, err); err != nil {
			return err
		}
	}
}

// contentType returns the media type, lower case, text/plain when absent
// (RFC 2045 §5.2).
func contentType(h message.Header) (string, map[string]string, error) {
	if h.Get("Content-Type") == "" {
		return "text/plain", map[string]string{}, nil
	}
	t, params, err := h.ContentType()
	if err != nil {
		return "", nil, err
	}
	return strings.ToLower(t), params, nil
}

// isAttachment reports a part the sender meant as a file: marked as an
// attachment, or carrying a file name.
func isAttachment(h message.Header, ctParams map[string]string) bool {
	if h.Get("Content-Disposition") != "" {
		disp, dparams, err := h.ContentDisposition()
		if err != nil || strings.EqualFold(disp, "attachment") {
			return true
		}
		for k := range dparams {
			if strings.HasPrefix(strings.ToLower(k), "filename") {
				return true
			}
		}
	}
	for k := range ctParams {
		if strings.EqualFold(k, "name") {
			return true
		}
	}
	return false
}

// readText reads a text part, already decoded by go-message, to UTF-8. A
// part without a charset whose bytes are not UTF-8 is read as Windows-1252,
// the usual truth behind such mail.
func readText(e *message.Entity, params map[string]string, decodeErr error) (string, error) {
	switch {
	case message.IsUnknownCharset(decodeErr):
		return "", BadContent(fmt.Sprintf("unsupported charset %q", oneLine(params["charset"])), decodeErr)
	case message.IsUnknownEncoding(decodeErr):
		return "", BadContent(fmt.Sprintf("unsupported Content-Transfer-Encoding %q", oneLine(e.Header.Get("Content-Transfer-Encoding"))), decodeErr)
	case decodeErr != nil:
		return "", BadContent("a text part cannot be decoded", decodeErr)
	}
	b, err := io.ReadAll(io.LimitReader(e.Body, maxPartBytes+1))
	if err != nil {
		return "", BadContent("a text part cannot be decoded (broken MIME structure or transfer encoding)", err)
	}
	if len(b) > maxPartBytes {
		return "", TooLarge(fmt.Sprintf("message text is over %d bytes; Bitmessage carries at most %d bytes of subject and body", maxPartBytes, MaxTextBytes))
	}
	cs := strings.ToLower(params["charset"])
	if !utf8.Valid(b) && (cs == "" || cs == "us-ascii" || cs == "ascii") {
		r, err := charset.Reader("windows-1252", bytes.NewReader(b))
		if err == nil {
			if conv, err := io.ReadAll(r); err == nil {
				b = conv
			}
		}
	}
	return strings.ToValidUTF8(string(b), "\uFFFD"), nil
}

// unflow decodes format=flowed text (RFC 3676 §4.2): lines ending in a
// space continue on the next line of the same quote depth; space-stuffing
// is removed; the signature separator "-- " stays a line of its own.
// Quoted paragraphs come out as one line each behind "> " marks.
func unflow(text string, delsp bool) string {
	text = strings.ReplaceAll(text, "\r\n", "\n")
	lines := strings.Split(text, "\n")
	var out strings.Builder
	var para strings.Builder
	paraDepth := -1 // quote depth of the open paragraph, -1 = none
	// flush ends the open paragraph; trim drops the space of a flowed
	// line that had no continuation.
	flush := func(trim bool) {
		if paraDepth < 0 {
			return
		}
		text := para.String()
		if trim {
			text = strings.TrimRight(text, " ")
		}
		if paraDepth > 0 {
			out.WriteString(strings.Repeat(">", paraDepth))
			if text != "" {
				out.WriteByte(' ')
			}
		}
		out.WriteString(text)
		out.WriteByte('\n')
		para.Reset()
		paraDepth = -1
	}
	for i, line := range lines {
		if i == len(lines)-1 && line == "" {
			break // the text's final line end
		}
		depth := 0
		for depth < len(line) && line[depth] == '>' {
			depth++
		}
		line = line[depth:]
		line = strings.TrimPrefix(line, " ") // space-stuffing
		if paraDepth >= 0 && depth != paraDepth {
			flush(true) // RFC 3676 §4.5: a depth change ends the paragraph
		}
		flowed := strings.HasSuffix(line, " ") && line != "-- "
		if flowed && delsp {
			line = line[:len(line)-1]
		}
		paraDepth = depth
		para.WriteString(line)
		if !flowed {
			flush(false)
		}
	}
	flush(true)
	return out.String()
}

// HTMLToText renders HTML as readable plain text: paragraphs, line breaks,
// list items, block quotes and preformatted text keep their shape; links
// keep their target after the text; scripts, styles and the head are
// dropped; character references are decoded. It is a small tokenizer of its
// own and never fails: malformed markup degrades to text.
func HTMLToText(src string) string {
	w := &textWriter{nl: 2}
	lower := asciiLower(src)
	type link struct {
		target string
		start  int // output length when the link opened
	}
	var links []link // open <a> elements, innermost last
	var lists []int  // open lists: -1 = bullets, else the next number
	inHead := false
	for i := 0; i < len(src); {
		if src[i] != '<' {
			j := strings.IndexByte(src[i:], '<')
			if j < 0 {
				j = len(src) - i
			}
			if !inHead {
				w.text(html.UnescapeString(src[i : i+j]))
			}
			i += j
			continue
		}
		rest := src[i:]
		switch {
		case strings.HasPrefix(rest, "<!--"):
			end := strings.Index(rest[4:], "-->")
			if end < 0 {
				return w.String()
			}
			i += 4 + end + 3
			continue
		case strings.HasPrefix(rest, "<!"), strings.HasPrefix(rest, "<?"):
			end := strings.IndexByte(rest, '>')
			if end < 0 {
				return w.String()
			}
			i += end + 1
			continue
		}
		closing := strings.HasPrefix(rest, "</")
		nameStart := i + 1
		if closing {
			nameStart++
		}
		nameEnd := nameStart
		for nameEnd < len(src) && isTagNameByte(src[nameEnd]) {
			nameEnd++
		}
		if nameEnd == nameStart || !isASCIILetter(src[nameStart]) {
			// Not a tag: a lone "<" in text.
			if !inHead {
				w.text("<")
			}
			i++
			continue
		}
		name := lower[nameStart:nameEnd]
		attrs, end := parseAttrs(src, nameEnd)
		if end < 0 {
			return w.String() // unterminated tag: the rest is markup
		}
		i = end
		if closing {
			switch name {
			case "head":
				inHead = false
			case "a":
				if len(links) > 0 {
					l := links[len(links)-1]
					links = links[:len(links)-1]
					// A link whose text is its target needs no repeat.
					if l.target != "" && strings.TrimSpace(w.b.String()[l.start:]) != l.target {
						w.text(" <" + l.target + ">")
					}
				}
			case "ul", "ol":
				if len(lists) > 0 {
					lists = lists[:len(lists)-1]
				}
				w.paragraph()
			case "blockquote":
				w.paragraph()
				if w.quote > 0 {
					w.quote--
				}
			case "pre":
				if w.pre > 0 {
					w.pre--
				}
				w.paragraph()
			default:
				w.endTag(name)
			}
			continue
		}
		switch name {
		case "script", "style", "title", "textarea", "template", "noscript":
			// Raw text: skip to the matching end tag.
			if k := strings.Index(lower[i:], "</"+name); k >= 0 {
				i += k
			}
		case "head":
			inHead = true
		case "body":
			inHead = false
		case "br":
			w.lineBreak()
		case "hr":
			w.block()
			w.text("----------")
			w.block()
		case "a":
			links = append(links, link{target: linkTarget(attrs["href"]), start: w.b.Len()})
		case "img":
			if alt := oneLine(html.UnescapeString(attrs["alt"])); alt != "" {
				w.text("[" + alt + "]")
			}
		case "ul":
			w.block()
			lists = append(lists, -1)
		case "ol":
			w.block()
			start := 1
			if n, err := strconv.Atoi(strings.TrimSpace(attrs["start"])); err == nil && n >= 0 && n < 1<<20 {
				start = n
			}
			lists = append(lists, start)
		case "li":
			w.block()
			indent := strings.Repeat("  ", min(max(len(lists)-1, 0), maxHTMLDepth))
			if len(lists) > 0 && lists[len(lists)-1] >= 0 {
				w.raw(indent + strconv.Itoa(lists[len(lists)-1]) + ". ")
				lists[len(lists)-1]++
			} else {
				w.raw(indent + "* ")
			}
		case "blockquote":
			w.paragraph()
			w.quote++
		case "pre":
			w.paragraph()
			w.pre++
		case "td", "th":
			w.space = true
		default:
			w.startTag(name)
		}
	}
	return w.String()
}

// linkTarget returns the part of an href worth showing: web and mail links.
func linkTarget(href string) string {
	href = oneLine(html.UnescapeString(href))
	l := asciiLower(href)
	for _, p := range []string{"http://", "https://", "ftp://"} {
		if strings.HasPrefix(l, p) {
			return href
		}
	}
	if strings.HasPrefix(l, "mailto:") {
		return href[len("mailto:"):]
	}
	return ""
}

// parseAttrs reads the attributes of a tag from src[i:] up to its ">",
// honouring quotes, and returns them (names lower case, values raw) and the
// index after the ">", or -1 when the tag is not closed.
func parseAttrs(src string, i int) (map[string]string, int) {
	attrs := map[string]string{}
	for i < len(src) {
		c := src[i]
		switch {
		case c == '>':
			return attrs, i + 1
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '/':
			i++
			continue
		}
		start := i
		for i < len(src) && src[i] != '=' && src[i] != '>' && src[i] != '/' && !isHTMLSpace(src[i]) {
			i++
		}
		name := asciiLower(src[start:i])
		for i < len(src) && isHTMLSpace(src[i]) {
			i++
		}
		if i >= len(src) || src[i] != '=' {
			if name != "" {
				attrs[name] = ""
			}
			if i == start {
				i++ // a stray "=" or similar: step over it
			}
			continue
		}
		i++ // "="
		for i < len(src) && isHTMLSpace(src[i]) {
			i++
		}
		var val string
		if i < len(src) && (src[i] == '"' || src[i] == '\'') {
			q := src[i]
			end := strings.IndexByte(src[i+1:], q)
			if end < 0 {
				return attrs, -1
			}
			val = src[i+1 : i+1+end]
			i += end + 2
		} else {
			vs := i
			for i < len(src) && src[i] != '>' && !isHTMLSpace(src[i]) {
				i++
			}
			val = src[vs:i]
		}
		if _, dup := attrs[name]; !dup && name != "" {
			attrs[name] = val
		}
	}
	return attrs, -1
}

func isHTMLSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f'
}

func isASCIILetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

func isTagNameByte(c byte) bool {
	return isASCIILetter(c) || '0' <= c && c <= '9' || c == '-' || c == ':' || c == '_'
}

// asciiLower lower-cases ASCII letters only, so byte offsets stay valid.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// textWriter collects rendered text, collapsing white space the way a
// browser does outside <pre>.
type textWriter struct {
	b     strings.Builder
	nl    int  // line ends at the end of the output (2 at the start: no leading blank lines)
	space bool // a collapsed space is pending
	quote int  // block quote depth
	pre   int  // inside <pre>
}

// Block elements that start on a line of their own; the first set also
// leaves a blank line around them.
var (
	paragraphTags = map[string]bool{"p": true, "h1": true, "h2": true, "h3": true, "h4": true, "h5": true, "h6": true, "table": true, "dl": true, "figure": true, "address": true, "fieldset": true, "form": true}
	blockTags     = map[string]bool{"div": true, "tr": true, "dt": true, "dd": true, "section": true, "article": true, "header": true, "footer": true, "nav": true, "aside": true, "main": true, "center": true, "caption": true, "figcaption": true, "details": true, "summary": true, "tbody": true, "thead": true, "tfoot": true}
)

func (w *textWriter) startTag(name string) {
	switch {
	case paragraphTags[name]:
		w.paragraph()
	case blockTags[name]:
		w.block()
	}
}

func (w *textWriter) endTag(name string) {
	w.startTag(name)
}

func (w *textWriter) text(s string) {
	for _, r := range s {
		if w.pre > 0 {
			if r == '\n' {
				w.newline()
				continue
			}
			if r == '\r' {
				continue
			}
			w.put(r)
			continue
		}
		switch r {
		case ' ', '\t', '\n', '\r', '\f':
			w.space = true
			continue
		case '\u00a0':
			r = ' '
		}
		if w.space && w.nl == 0 {
			w.b.WriteByte(' ')
		}
		w.space = false
		w.put(r)
	}
}

// raw writes s as it is, with no white space collapsing.
func (w *textWriter) raw(s string) {
	for _, r := range s {
		w.put(r)
	}
	w.space = false
}

// put writes one rune, starting the line with the quote marks.
func (w *textWriter) put(r rune) {
	if w.nl > 0 && w.quote > 0 {
		w.b.WriteString(strings.Repeat("> ", min(w.quote, maxHTMLDepth)))
	}
	w.b.WriteRune(r)
	w.nl = 0
}

func (w *textWriter) newline() {
	w.b.WriteByte('\n')
	w.nl++
	w.space = false
}

// lineBreak is <br>: always a new line, but never more than one blank line.
func (w *textWriter) lineBreak() {
	if w.nl < 2 {
		w.newline()
	}
}

func (w *textWriter) block() {
	if w.nl < 1 {
		w.newline()
	}
	w.space = false
}

func (w *textWriter) paragraph() {
	for w.nl < 2 {
		w.newline()
	}
	w.space = false
}

func (w *textWriter) String() string {
	lines := strings.Split(w.b.String(), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	return strings.Trim(strings.Join(lines, "\n"), "\n") + "\n"
}
