package gateway

import (
	"bytes"
	"fmt"
	"time"

	"github.com/emersion/go-message"
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
