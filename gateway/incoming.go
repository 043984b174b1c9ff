package gateway

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/bmgate/bmgate/bmcore/object"
	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
)

// IncomingKind says how an incoming message reached the user; it is also
// the value of the X-Bitmessage-Kind header.
type IncomingKind string

// Kinds of incoming message (Incoming.Kind).
const (
	IncomingMsg       IncomingKind = "msg"       // a msg to one of the user's identities
	IncomingChan      IncomingKind = "chan"      // a msg to a chan the user is in
	IncomingBroadcast IncomingKind = "broadcast" // a broadcast from a subscription
)

// Incoming is a received, decrypted and signature-checked Bitmessage
// message, ready to become a mail.
type Incoming struct {
	Domain     string // mail domain of the BM addresses
	From, To   string // Bitmessage addresses BM-…; To is unused for broadcasts
	Subject    string
	Body       string
	Date       time.Time
	InvHash    [32]byte // inventory hash of the object that carried it
	MessageID  string   // carried by the sender (already untrusted text), "" if none
	InReplyTo  string
	References []string
	Kind       IncomingKind
	ChanLabel  string        // the chan's name, for IncomingChan
	Files      []object.File // attachments (encoding 3 "files"), untrusted names and types
	Dropped    []string      // what could not be delivered (malformed attachments), said in the body
}

// Errors of BuildIncoming; they mean the caller passed something it should
// not have, not that the sender did something wrong.
var (
	ErrBadDomain  = errors.New("invalid mail domain")
	ErrBadAddress = errors.New("invalid Bitmessage address text")
	ErrNoDate     = errors.New("no date")
	ErrBadKind    = errors.New("unknown incoming kind")
)

const maxLabelBytes = 200

// BuildIncoming writes the RFC 5322 message a mail client will see:
//
//   - From: the sender as BM-…@domain.
//   - To: the recipient identity as BM-…@domain; for a chan, the chan's
//     address with the chan's label as display name; for a broadcast the
//     group "undisclosed-recipients:;", because a broadcast is addressed to
//     nobody in particular and reads the same in every subscriber's folder.
//   - Subject (RFC 2047 encoded when not ASCII), Date.
//   - Message-ID: the one the sender carried when it is a valid msg-id,
//     else <hex(inventory hash)@domain>, stable across deliveries.
//   - In-Reply-To / References when carried and valid.
//   - text/plain; charset=utf-8 in 7bit, quoted-printable or base64,
//     whichever keeps the lines legal and the size small.
//   - X-Bitmessage-Sender, X-Bitmessage-Verified, X-Bitmessage-Inventory
//     and X-Bitmessage-Kind, for filters and scripts.
//
// Every text from the sender is made one line (subject, label) or valid
// UTF-8 with CRLF line ends (body) before it is written, so a subject with
// CR/LF cannot add a header.
func BuildIncoming(in Incoming) ([]byte, error) {
	if !validDomain(in.Domain) {
		return nil, fmt.Errorf("build incoming mail: %w %q", ErrBadDomain, in.Domain)
	}
	if !validBMText(in.From) {
		return nil, fmt.Errorf("build incoming mail: sender: %w", ErrBadAddress)
	}
	if in.Date.IsZero() {
		return nil, fmt.Errorf("build incoming mail: %w", ErrNoDate)
	}
	var to string
	switch in.Kind {
	case IncomingMsg, IncomingChan:
		if !validBMText(in.To) {
			return nil, fmt.Errorf("build incoming mail: recipient: %w", ErrBadAddress)
		}
		a := mail.Address{Address: BMToMail(in.To, in.Domain)}
		if in.Kind == IncomingChan {
			a.Name = truncateUTF8(oneLine(in.ChanLabel), maxLabelBytes)
		}
		to = a.String()
	case IncomingBroadcast:
		to = "undisclosed-recipients:;"
	default:
		return nil, fmt.Errorf("build incoming mail: %w %q", ErrBadKind, in.Kind)
	}

	msgID := in.MessageID
	if !ValidMsgID(msgID) {
		msgID = hex.EncodeToString(in.InvHash[:]) + "@" + in.Domain
	}
	var refs []string
	for _, id := range trimReferences(in.References) {
		if id != msgID {
			refs = append(refs, id)
		}
	}
	text := in.Body
	if len(in.Dropped) > 0 {
		text = strings.TrimRight(text, "\n") + "\n\n" + droppedNote(in.Dropped)
	}
	body, cte := encodeText(text)

	// Fields in the order they are written.
	fields := [][2]string{
		{"From", (&mail.Address{Address: BMToMail(in.From, in.Domain)}).String()},
		{"To", to},
		{"Subject", mime2047(oneLine(in.Subject))},
		{"Date", in.Date.Format(time.RFC1123Z)},
		{"Message-ID", "<" + msgID + ">"},
	}
	if ValidMsgID(in.InReplyTo) && in.InReplyTo != msgID {
		fields = append(fields, [2]string{"In-Reply-To", "<" + in.InReplyTo + ">"})
	}
	if len(refs) > 0 {
		fields = append(fields, [2]string{"References", "<" + strings.Join(refs, "> <") + ">"})
	}
	fields = append(fields, [2]string{"MIME-Version", "1.0"})
	if len(in.Files) == 0 {
		fields = append(fields,
			[2]string{"Content-Type", "text/plain; charset=utf-8"},
			[2]string{"Content-Transfer-Encoding", cte})
	} else {
		fields = append(fields, [2]string{"Content-Type", mime.FormatMediaType("multipart/mixed", map[string]string{"boundary": boundaryFor(in.InvHash)})})
	}
	fields = append(fields,
		[2]string{"X-Bitmessage-Sender", in.From},
		[2]string{"X-Bitmessage-Verified", "signature ok"},
		[2]string{"X-Bitmessage-Inventory", hex.EncodeToString(in.InvHash[:])},
		[2]string{"X-Bitmessage-Kind", string(in.Kind)},
	)
	var buf bytes.Buffer
	w, err := message.CreateWriter(&buf, headerOf(fields))
	if err != nil {
		return nil, fmt.Errorf("build incoming mail: %w", err)
	}
	if len(in.Files) == 0 {
		if _, err := w.Write(body); err != nil {
			return nil, fmt.Errorf("build incoming mail: %w", err)
		}
	} else if err := writeParts(w, body, cte, in.Files); err != nil {
		return nil, fmt.Errorf("build incoming mail: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("build incoming mail: %w", err)
	}
	return buf.Bytes(), nil
}

// writeParts writes the text and the attachments as the parts of a
// multipart/mixed: each file with its (cleaned) name, RFC 2231-encoded when
// not ASCII, its MIME type and disposition, in base64, bytes unchanged.
func writeParts(w *message.Writer, body []byte, cte string, files []object.File) error {
	var th message.Header
	th.Set("Content-Type", "text/plain; charset=utf-8")
	th.Set("Content-Transfer-Encoding", cte)
	pw, err := w.CreatePart(th)
	if err != nil {
		return err
	}
	if _, err := pw.Write(body); err != nil {
		return err
	}
	if err := pw.Close(); err != nil {
		return err
	}
	for _, f := range files {
		name := cleanFileName(f.Name)
		disp := object.DispositionAttachment
		if f.Disposition == object.DispositionInline {
			disp = object.DispositionInline
		}
		var h message.Header
		h.Set("Content-Type", mime.FormatMediaType(cleanMediaType(f.Type), map[string]string{"name": name}))
		h.Set("Content-Disposition", mime.FormatMediaType(disp, map[string]string{"filename": name}))
		h.Set("Content-Transfer-Encoding", "base64")
		pw, err := w.CreatePart(h)
		if err != nil {
			return err
		}
		if _, err := pw.Write(f.Data); err != nil {
			return err
		}
		if err := pw.Close(); err != nil {
			return err
		}
	}
	return nil
}

// droppedNote tells the reader what was left out of a message.
func droppedNote(dropped []string) string {
	var b strings.Builder
	b.WriteString("[bmgate: part of this message could not be delivered:\n")
	for i, d := range dropped {
		if i == 20 {
			fmt.Fprintf(&b, "  … and %d more\n", len(dropped)-i)
			break
		}
		b.WriteString("  - " + oneLine(d) + "\n")
	}
	b.WriteString("]\n")
	return b.String()
}

// cleanFileName makes a sender's file name safe to offer: no directories,
// no control characters, at most 200 bytes, never empty.
func cleanFileName(name string) string {
	if i := strings.LastIndexAny(name, "/\\"); i >= 0 {
		name = name[i+1:]
	}
	name = truncateUTF8(oneLine(name), 200)
	if strings.Trim(name, ". ") == "" {
		return "attachment"
	}
	return name
}

// cleanMediaType keeps a sender's MIME type when it is a plain type/subtype
// (parameters dropped), else application/octet-stream.
func cleanMediaType(t string) string {
	mt, _, err := mime.ParseMediaType(t)
	if err != nil || strings.Count(mt, "/") != 1 || strings.HasPrefix(mt, "multipart/") || strings.HasPrefix(mt, "/") || strings.HasSuffix(mt, "/") {
		return "application/octet-stream"
	}
	return mt
}

// boundaryFor is the multipart boundary of a delivered message: derived
// from the inventory hash, so the same object builds the same bytes.
func boundaryFor(h [32]byte) string {
	return "bmgate-" + hex.EncodeToString(h[:12])
}

// headerOf builds a header whose fields are written in the given order
// (go-message writes the most recently added field first).
func headerOf(fields [][2]string) message.Header {
	var h message.Header
	for i := len(fields) - 1; i >= 0; i-- {
		h.Add(fields[i][0], fields[i][1])
	}
	return h
}

// mime2047 encodes header text as RFC 2047 encoded words when it is not
// plain ASCII, or when it contains "=?": a reader would decode text that
// merely looks like an encoded word, so such text is encoded whole and
// reads back as written.
func mime2047(s string) string {
	if !strings.Contains(s, "=?") {
		var h mail.Header
		h.SetSubject(s)
		return h.Get("Subject")
	}
	var words []string
	for len(s) > 0 {
		n := min(len(s), 45) // 60 base64 characters: words stay under 75
		for n > 1 && n < len(s) && !utf8.RuneStart(s[n]) {
			n--
		}
		words = append(words, "=?utf-8?b?"+base64.StdEncoding.EncodeToString([]byte(s[:n]))+"?=")
		s = s[n:]
	}
	return strings.Join(words, " ")
}

// encodeText gives the body in CRLF canonical form (every line the sender
// wrote, trailing blank lines included) with the transfer
// encoding to declare: 7bit when it is plain ASCII with legal line
// lengths, base64 when most of it is not ASCII (Cyrillic, CJK…: smaller),
// quoted-printable otherwise. go-message's writer applies the encoding.
func encodeText(s string) ([]byte, string) {
	s = normalizeText(s)
	if !strings.HasSuffix(s, "\n") {
		s += "\n" // a MIME body ends with a line end; nothing is dropped
	}
	b := []byte(strings.ReplaceAll(s, "\n", "\r\n"))

	nonASCII, line, longest := 0, 0, 0
	for _, c := range b {
		switch {
		case c == '\n':
			line = 0
			continue
		case c >= 0x80:
			nonASCII++
		}
		line++
		longest = max(longest, line)
	}
	switch {
	case nonASCII == 0 && longest <= 998-1: // -1: the CR counted in line
		return b, "7bit"
	case nonASCII*3 > len(b):
		return b, "base64"
	}
	return b, "quoted-printable"
}

// validBMText checks that s looks like a Bitmessage address: BM- and base58
// characters. It is a syntax check for what goes into headers, not a
// checksum check (the dispatcher built the address from keys).
func validBMText(s string) bool {
	if !strings.HasPrefix(s, "BM-") || len(s) < 4 || len(s) > 3+64 {
		return false
	}
	for i := 3; i < len(s); i++ {
		c := s[i]
		ok := '1' <= c && c <= '9' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z'
		if !ok || c == 'I' || c == 'O' || c == 'l' {
			return false
		}
	}
	return true
}

// validDomain checks a mail domain: dot-separated labels of letters,
// digits and hyphens.
func validDomain(d string) bool {
	if d == "" || len(d) > 253 {
		return false
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(isASCIILetter(c) || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

func isASCIILetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
