package gateway

import (
	"bytes"
	"fmt"
	"strings"
	"time"

	"github.com/bmgate/bmgate/bmcore/object"
	"github.com/bmgate/bmgate/bmcore/wire"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
)

// MaxTextBytes is the most subject plus body bytes a Bitmessage message may
// carry: PyBitmessage refuses longer text (2^18 − 500, docs/protocol.md §10.5) so
// that the whole object stays within 256 KiB.
const MaxTextBytes = 1<<18 - 500

// msgObjectOverhead bounds what a msg object adds to its encoded message:
// the object header, the sender's key block, the destination, the embedded
// ack (an object packet of about 80 bytes), the signature and the
// encryption (IV, ephemeral key, padding, MAC): about 490 bytes; a
// broadcast adds less. 600 leaves room.
const msgObjectOverhead = 600

// maxObjectContent is the most bytes an encoded (for encoding 3,
// compressed) message may have to fit in one object of at most 2^18 bytes.
const maxObjectContent = wire.MaxObjectSize - msgObjectOverhead

// MaxSubmissionBytes is the largest submission that can fit in one object:
// the decompressed content may not exceed object.MaxDecompressed (1 MiB,
// what receivers accept), and base64 makes files a third larger. smtpd
// advertises it as SIZE; most mail near it is refused after DATA once its
// compressed size is known.
const MaxSubmissionBytes = object.MaxDecompressed*3/2 + 64<<10

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
	// Files are the parts that are not the text (attachments, inline
	// images), carried in encoding 3; Body then ends with a line that lists
	// them, for clients that do not show them (PyBitmessage).
	Files []object.File
}

// ParseOutgoing reads a submitted RFC 5322 message. The text comes from the
// text/plain part (charset and transfer encoding decoded, format=flowed
// joined); an HTML-only mail is turned into readable text. Attachments,
// embedded images (inline) and forwarded messages become Files; encrypted
// MIME is refused with an *Error. The detached signature part of a
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
	if len(x.files) > 0 {
		o.Files = x.files
		o.Body += attachmentNote(o.Body, o.Files)
	}

	if n := len(o.Subject) + len(o.Body); n > MaxTextBytes {
		return Outgoing{}, TooLarge(fmt.Sprintf("message text is %d bytes; Bitmessage carries at most %d bytes of subject and body", n, MaxTextBytes))
	}
	return o, nil
}

// attachmentNote is the line that ends the body of a mail with files, for
// readers whose client shows only subject and body (PyBitmessage, notbit).
// A bmgate receiver shows the files and drops the line (trimAttachmentNote).
func attachmentNote(body string, files []object.File) string {
	var b strings.Builder
	if body != "" {
		if !strings.HasSuffix(body, "\n") {
			b.WriteString("\n")
		}
		b.WriteString("\n")
	}
	if len(files) == 1 {
		b.WriteString("[This message has 1 attachment that your client may not show: ")
	} else {
		fmt.Fprintf(&b, "[This message has %d attachments that your client may not show: ", len(files))
	}
	for i, f := range files {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s (%s)", f.Name, humanBytes(len(f.Data)))
	}
	b.WriteString("]\n")
	return b.String()
}

// trimAttachmentNote removes the attachment line a bmgate sender added,
// when the message shows its files itself. (A body that did not end in a
// line end comes back with one: the two read the same.)
func trimAttachmentNote(body string, files []object.File) string {
	if len(files) == 0 {
		return body
	}
	core := attachmentNote("", files)
	head, ok := strings.CutSuffix(body, core)
	switch {
	case !ok:
		return body
	case head == "":
		return ""
	case strings.HasSuffix(head, "\n\n"):
		return head[:len(head)-1]
	}
	return body
}

// humanBytes writes a size the way a mail client shows it.
func humanBytes(n int) string {
	switch {
	case n < 1000:
		return fmt.Sprintf("%d bytes", n)
	case n < 1000*1000:
		return fmt.Sprintf("%.0f KB", float64(n)/1000)
	}
	return fmt.Sprintf("%.1f MB", float64(n)/1e6)
}
