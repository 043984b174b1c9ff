package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"strings"
	"unicode/utf8"

	"github.com/bmgate/bmgate/bmcore/object"
	"github.com/emersion/go-message"
	"github.com/emersion/go-message/charset"
	"github.com/emersion/go-message/mail"
)

// The MIME side of ParseOutgoing: it walks the entity tree of a submitted
// mail, picks the text Bitmessage will carry and collects every other part
// as a file (encoding 3 "files", Jabit's layout).

// Part ranks inside multipart/alternative: the client's own plain text is
// preferred to our rendering of its HTML. rankFile is a part that became a
// file: no rendering at all.
const (
	rankFile = iota - 1
	rankNone
	rankHTML
	rankPlain
)

// errAttachments is the refusal for a part that cannot travel.
func errAttachments(what string) *Error {
	return MediaUnsupported(what+" cannot be carried over Bitmessage; send the text alone", nil)
}

type extractor struct {
	parts     int
	files     []object.File
	fileBytes int
}

// file collects a non-text part as an attachment. disposition is the one to
// use when the part does not say (inline for the resources of a
// multipart/related, else attachment).
func (x *extractor) file(e *message.Entity, decodeErr error, mediaType string, params map[string]string, disposition string) (string, int, error) {
	if message.IsUnknownEncoding(decodeErr) {
		return "", 0, BadContent(fmt.Sprintf("unsupported Content-Transfer-Encoding %q", oneLine(e.Header.Get("Content-Transfer-Encoding"))), decodeErr)
	}
	data, err := io.ReadAll(io.LimitReader(e.Body, maxPartBytes+1))
	if err != nil {
		return "", 0, BadContent("an attachment cannot be decoded (broken MIME structure or transfer encoding)", err)
	}
	if len(data) > maxPartBytes || x.fileBytes+len(data) > object.MaxDecompressed {
		return "", 0, TooLarge(fmt.Sprintf("the attachments are over %d bytes; one Bitmessage message carries at most %d bytes before compression (and %d after)",
			object.MaxDecompressed, object.MaxDecompressed, maxObjectContent))
	}
	x.fileBytes += len(data)
	typ := mediaType
	if cs, ok := params["charset"]; ok && strings.HasPrefix(mediaType, "text/") {
		// go-message turned the text into UTF-8, unless it did not know the charset.
		if !message.IsUnknownCharset(decodeErr) {
			cs = "utf-8"
		}
		typ = mime.FormatMediaType(mediaType, map[string]string{"charset": cs})
		if typ == "" {
			typ = mediaType
		}
	}
	if e.Header.Get("Content-Disposition") != "" {
		if d, _, err := e.Header.ContentDisposition(); err == nil {
			switch strings.ToLower(d) {
			case object.DispositionInline:
				disposition = object.DispositionInline
			case object.DispositionAttachment:
				disposition = object.DispositionAttachment
			}
		}
	}
	if disposition == "" {
		disposition = object.DispositionAttachment
	}
	name, _ := (&mail.AttachmentHeader{Header: e.Header}).Filename()
	if name == "" {
		name = params["name"]
	}
	name = strings.ToValidUTF8(oneLine(name), "\uFFFD")
	if name == "" {
		name = fmt.Sprintf("part%d", len(x.files)+1)
		if exts, _ := mime.ExtensionsByType(mediaType); len(exts) > 0 {
			name += exts[0]
		} else if mediaType == "message/rfc822" {
			name += ".eml"
		}
	}
	x.files = append(x.files, object.File{Name: name, Type: typ, Disposition: disposition, Data: data})
	return "", rankFile, nil
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
		return x.file(e, decodeErr, mediaType, params, "")
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
	}
	return x.file(e, decodeErr, mediaType, params, "")
}

// mixed joins the text parts of a multipart/mixed (or unknown multipart)
// in order: a body followed by an inline text part such as a signature or a
// list footer is one text. Anything else in it is an attachment.
func (x *extractor) mixed(e *message.Entity, depth int) (string, int, error) {
	var texts []string
	rank := rankNone
	tail := "" // the line ends after the last text, kept as they were
	err := x.eachPart(e, func(p *message.Entity, perr error) error {
		t, r, err := x.entity(p, perr, depth+1)
		if err != nil {
			return err
		}
		if r == rankFile {
			return nil
		}
		if r < rank || rank == rankNone {
			rank = r
		}
		if trimmed := strings.TrimRight(t, "\r\n"); trimmed != "" {
			texts = append(texts, trimmed)
			tail = t[len(trimmed):]
		}
		return nil
	})
	if err != nil {
		return "", 0, err
	}
	if len(texts) == 0 {
		rank = rankPlain // an empty multipart is an empty text
	}
	return strings.Join(texts, "\n\n") + tail, rank, nil
}

// alternative picks the best rendering the client offered. Parts that are
// not picked do not matter, not even if they cannot be read: the client
// itself judged the picked one a complete rendering of the message.
func (x *extractor) alternative(e *message.Entity, depth int) (string, int, error) {
	var best string
	bestRank := rankNone
	var firstErr error
	err := x.eachPart(e, func(p *message.Entity, perr error) error {
		files, fileBytes := len(x.files), x.fileBytes
		t, r, err := x.entity(p, perr, depth+1)
		var ge *Error
		switch {
		case err == nil && r == rankFile:
			// A non-text alternative (a calendar invitation, say) is not
			// a rendering of the text and is not sent. Resources inside a
			// multipart alternative (the images of an HTML rendering) are.
			x.files, x.fileBytes = x.files[:files], fileBytes
			if firstErr == nil {
				mt, _, _ := contentType(p.Header)
				firstErr = errAttachments(fmt.Sprintf("a multipart/alternative whose only rendering is %s", mt))
			}
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
// images: the root gives the text (HTML made text), the resources travel
// as inline files.
func (x *extractor) related(e *message.Entity, params map[string]string, depth int) (string, int, error) {
	var text string
	rank := rankNone
	n := 0
	err := x.eachPart(e, func(p *message.Entity, perr error) error {
		n++
		if n > 1 {
			x.parts++
			if x.parts > maxMIMEParts {
				return BadContent(fmt.Sprintf("the message has more than %d MIME parts", maxMIMEParts), nil)
			}
			mt, ps, err := contentType(p.Header)
			if err != nil {
				return BadContent("a Content-Type header cannot be parsed", err)
			}
			if strings.HasPrefix(mt, "multipart/") {
				return errAttachments("a multipart inside the resources of a multipart/related")
			}
			_, _, err = x.file(p, perr, mt, ps, object.DispositionInline)
			return err
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
		_, _, err := x.entity(p, perr, depth+1)
		return err
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
