package gateway

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"net/mail"
	"strings"
	"time"

	"github.com/emersion/go-message"
)

// Action is a delivery status action (RFC 3464 §2.3.3).
type Action string

// The actions a report can give.
const (
	ActionDelivered Action = "delivered" // the recipient's node acknowledged the message
	ActionRelayed   Action = "relayed"   // published; no acknowledgement can come (chan, broadcast, no-ack recipient)
	ActionDelayed   Action = "delayed"   // not acknowledged yet, still trying
	ActionFailed    Action = "failed"    // given up
)

// DSNStatus is an RFC 3463 enhanced status code, class.subject.detail,
// as a delivery report gives it.
type DSNStatus string

// Status codes the gateway reports, each with a plain-language explanation
// in the report's text part. Other codes may be used; they are explained by
// their class only.
const (
	StatusDelivered         DSNStatus = "2.0.0"
	StatusPubkeyPending     DSNStatus = "4.4.1" // delayed: waiting for the recipient's public key
	StatusAckPending        DSNStatus = "4.4.7" // delayed: sent, no acknowledgement yet, resending
	StatusBadMailbox        DSNStatus = "5.1.1" // no such Bitmessage address
	StatusBadAddress        DSNStatus = "5.1.3" // not a valid Bitmessage address
	StatusBadSender         DSNStatus = "5.1.7" // the sending identity is invalid or gone
	StatusTooLarge          DSNStatus = "5.3.4" // the message does not fit in a Bitmessage object
	StatusLocalError        DSNStatus = "5.3.0" // a permanent error on this side
	StatusPubkeyTimeout     DSNStatus = "5.4.4" // the public key never arrived
	StatusAckTimeout        DSNStatus = "5.4.7" // never acknowledged before giving up
	StatusContent           DSNStatus = "5.6.0" // the message could not be encoded
	StatusDifficultyTooHigh DSNStatus = "5.7.0" // the recipient demands more proof of work than allowed
)

// Temporary reports a status of class 4: delivery is delayed, not failed.
func (s DSNStatus) Temporary() bool { return strings.HasPrefix(string(s), "4.") }

var statusText = map[DSNStatus]string{
	StatusPubkeyPending:     "The recipient's public key has not arrived yet. Bitmessage needs it to encrypt the message; it comes only when the recipient's node is online and answers the request.",
	StatusAckPending:        "The message was sent, but the recipient's node has not acknowledged it yet. It is sent again with a longer lifetime, as Bitmessage does.",
	StatusBadMailbox:        "There is no such Bitmessage address.",
	StatusBadAddress:        "The address is not a valid Bitmessage address. Check that it was copied exactly, including upper and lower case letters.",
	StatusBadSender:         "The Bitmessage identity the message was sent from is invalid or no longer exists on this server.",
	StatusTooLarge:          "The message is too large for a Bitmessage object.",
	StatusLocalError:        "A permanent error on this server stopped the message.",
	StatusPubkeyTimeout:     "The recipient's public key never arrived. Bitmessage cannot encrypt a message without it; it comes only when the recipient's node is online and answers the request. The address may be unused or its owner offline for a long time.",
	StatusAckTimeout:        "The recipient's node never acknowledged the message, although it was sent again several times. The recipient may be offline for a long time, or the address may no longer be used.",
	StatusContent:           "The message could not be turned into a Bitmessage message.",
	StatusDifficultyTooHigh: "The recipient demands more proof of work than this server is configured to do. Ask the recipient to lower the difficulty, or the administrator to raise the limit.",
}

// ReportRecipient is the status of one recipient in a report.
type ReportRecipient struct {
	Final          string        // BM-…@domain (or broadcast@domain)
	Orig           string        // the recipient as the client wrote it, "" if unknown
	Action         Action        // ActionDelivered, ActionRelayed, ActionDelayed or ActionFailed
	Status         DSNStatus     // RFC 3463 code, e.g. StatusDelivered
	Diagnostic     string        // technical reason, for delayed and failed
	When           time.Time     // last attempt, or when the ack came
	WillRetryUntil time.Time     // for delayed
	Attempts       int           // sends so far
	PoWDuration    time.Duration // total proof-of-work time
	PoWEstimate    time.Duration // for delayed: the proof of work still to do, as estimated here (0: not shown)
}

// Report is an RFC 3464 delivery status notification for one submitted
// mail, delivered to its sender's INBOX.
type Report struct {
	Domain            string
	To                string // the user's mail address (sender identity @domain)
	OriginalMessageID string // without angle brackets
	OriginalSubject   string
	EnvID, Ret        string // RFC 3461 ENVID and RET of the submission
	Original          []byte // the submitted message, for RET
	Recipients        []ReportRecipient
	Arrival           time.Time // when the mail was accepted; zero = not reported
	Now               time.Time
}

// Errors of BuildReport: the caller passed something unusable.
var (
	ErrNoRecipients = errors.New("report has no recipients")
	ErrBadAction    = errors.New("invalid report action")
	ErrBadStatus    = errors.New("invalid report status")
)

const maxDiagnostic = 600 // bytes of Diagnostic-Code text

// BuildReport writes an RFC 3464 report (multipart/report;
// report-type=delivery-status): a human-readable text/plain part, the
// message/delivery-status part, and the original message (RET=FULL) or its
// headers (RET=HDRS or unset) when Original is given. It comes from
// Mail Delivery System <mailer-daemon@domain>, threads under the original
// (In-Reply-To/References) and carries Auto-Submitted: auto-replied so no
// program answers it.
func BuildReport(r Report) ([]byte, error) {
	if !validDomain(r.Domain) {
		return nil, fmt.Errorf("build report: %w %q", ErrBadDomain, r.Domain)
	}
	to, err := mail.ParseAddress(r.To)
	if err != nil {
		return nil, fmt.Errorf("build report: recipient %q: %w", r.To, err)
	}
	if len(r.Recipients) == 0 {
		return nil, fmt.Errorf("build report: %w", ErrNoRecipients)
	}
	for _, rc := range r.Recipients {
		if asciiLine(rc.Final) == "" {
			return nil, fmt.Errorf("build report: %w: no final recipient", ErrNoRecipients)
		}
		switch rc.Action {
		case ActionDelivered, ActionRelayed, ActionDelayed, ActionFailed:
		default:
			return nil, fmt.Errorf("build report: %w %q", ErrBadAction, rc.Action)
		}
		if !validStatus(rc.Status) {
			return nil, fmt.Errorf("build report: %w %q", ErrBadStatus, rc.Status)
		}
	}
	subject := oneLine(r.OriginalSubject)
	quoted := subject
	if quoted == "" {
		quoted = "(no subject)"
	}

	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, fmt.Errorf("build report: message id: %w", err)
	}
	fields := [][2]string{
		{"From", `Mail Delivery System <mailer-daemon@` + r.Domain + `>`},
		{"To", to.String()},
		{"Subject", mime2047(reportPrefix(r.Recipients) + quoted)},
		{"Date", r.Now.Format(time.RFC1123Z)},
		{"Message-ID", "<dsn." + hex.EncodeToString(id[:]) + "@" + r.Domain + ">"},
	}
	if ValidMsgID(r.OriginalMessageID) {
		fields = append(fields,
			[2]string{"In-Reply-To", "<" + r.OriginalMessageID + ">"},
			[2]string{"References", "<" + r.OriginalMessageID + ">"})
	}
	fields = append(fields,
		[2]string{"Auto-Submitted", "auto-replied"},
		[2]string{"MIME-Version", "1.0"},
		[2]string{"Content-Type", "multipart/report; report-type=delivery-status"},
	)
	var buf bytes.Buffer
	mw, err := message.CreateWriter(&buf, headerOf(fields))
	if err != nil {
		return nil, fmt.Errorf("build report: %w", err)
	}

	text, cte := encodeText(humanReport(r, quoted))
	if err := writePart(mw, [][2]string{
		{"Content-Type", "text/plain; charset=utf-8"},
		{"Content-Description", "Notification"},
		{"Content-Transfer-Encoding", cte},
	}, text); err != nil {
		return nil, err
	}
	if err := writePart(mw, [][2]string{
		{"Content-Type", "message/delivery-status"},
		{"Content-Description", "Delivery report"},
	}, deliveryStatus(r)); err != nil {
		return nil, err
	}
	if len(r.Original) > 0 {
		orig := crlf(r.Original)
		ctype, desc := "text/rfc822-headers", "Message headers"
		if strings.EqualFold(r.Ret, "FULL") {
			ctype, desc = "message/rfc822", "Message"
		} else {
			orig = headerBlock(orig)
		}
		enc := "7bit"
		for _, c := range orig {
			if c >= 0x80 {
				enc = "8bit"
				break
			}
		}
		if err := writePart(mw, [][2]string{
			{"Content-Type", ctype},
			{"Content-Description", desc},
			{"Content-Transfer-Encoding", enc},
		}, orig); err != nil {
			return nil, err
		}
	}
	if err := mw.Close(); err != nil {
		return nil, fmt.Errorf("build report: %w", err)
	}
	return buf.Bytes(), nil
}

func writePart(mw *message.Writer, fields [][2]string, body []byte) error {
	pw, err := mw.CreatePart(headerOf(fields))
	if err != nil {
		return fmt.Errorf("build report: %w", err)
	}
	if _, err := pw.Write(body); err != nil {
		return fmt.Errorf("build report: %w", err)
	}
	if err := pw.Close(); err != nil {
		return fmt.Errorf("build report: %w", err)
	}
	return nil
}

// reportPrefix names the worst outcome among the recipients.
func reportPrefix(rs []ReportRecipient) string {
	var worst Action
	rank := map[Action]int{ActionRelayed: 1, ActionDelivered: 2, ActionDelayed: 3, ActionFailed: 4}
	for _, rc := range rs {
		if rank[rc.Action] > rank[worst] {
			worst = rc.Action
		}
	}
	switch worst {
	case ActionFailed:
		return "Undelivered: "
	case ActionDelayed:
		return "Delayed: "
	case ActionDelivered:
		return "Delivered: "
	}
	return "Sent: "
}

// humanReport is the text a person reads first.
func humanReport(r Report, subject string) string {
	var b strings.Builder
	b.WriteString("This is the mail system at " + r.Domain + ".\n\n")
	for i, rc := range r.Recipients {
		if i > 0 {
			b.WriteString("\n")
		}
		who := oneLine(rc.Final)
		when := fmtTime(rc.When)
		b.WriteString("Your message \"" + subject + "\" to " + who + " ")
		switch rc.Action {
		case ActionDelivered:
			b.WriteString("was received by the recipient's node")
			if when != "" {
				b.WriteString(" at " + when)
			}
			b.WriteString(".\n")
		case ActionRelayed:
			b.WriteString("was published to the Bitmessage network")
			if when != "" {
				b.WriteString(" at " + when)
			}
			b.WriteString(". Chans and broadcasts are not acknowledged, so this is as far as delivery can be confirmed.\n")
		case ActionDelayed:
			b.WriteString("has not been delivered yet.")
			if until := fmtTime(rc.WillRetryUntil); until != "" {
				b.WriteString(" This server keeps trying until " + until + "; you do not need to send it again.")
			}
			b.WriteString("\n")
		case ActionFailed:
			b.WriteString("could not be delivered.\n")
		}
		if rc.Action == ActionDelayed || rc.Action == ActionFailed {
			b.WriteString(explain(rc.Status) + "\n")
			if d := oneLine(rc.Diagnostic); d != "" {
				b.WriteString("Technical detail: " + truncateUTF8(d, maxDiagnostic) + "\n")
			}
		}
		if effort := effortText(rc.Attempts, rc.PoWDuration); effort != "" {
			b.WriteString(effort + "\n")
		}
		if rc.Action == ActionDelayed && rc.PoWEstimate > 0 {
			b.WriteString("Sending it again needs about " + fmtSeconds(rc.PoWEstimate) + " of proof of work on this server.\n")
		}
	}
	return b.String()
}

// explain gives the plain-language reason for a status code.
func explain(status DSNStatus) string {
	if t, ok := statusText[status]; ok {
		return t
	}
	if status.Temporary() {
		return "A temporary problem delays delivery."
	}
	return "Delivery failed permanently."
}

func effortText(attempts int, pow time.Duration) string {
	var parts []string
	switch {
	case attempts == 1:
		parts = append(parts, "1 attempt")
	case attempts > 1:
		parts = append(parts, fmt.Sprintf("%d attempts", attempts))
	}
	if pow > 0 {
		parts = append(parts, "proof of work took "+fmtSeconds(pow))
	}
	if len(parts) == 0 {
		return ""
	}
	s := strings.Join(parts, "; ")
	return strings.ToUpper(s[:1]) + s[1:] + "."
}

func fmtSeconds(d time.Duration) string {
	s := d.Seconds()
	if s < 10 {
		return fmt.Sprintf("%.1f s", s)
	}
	return fmt.Sprintf("%.0f s", math.Round(s))
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Format(time.RFC1123Z)
}

// deliveryStatus writes the message/delivery-status body (RFC 3464 §2.1):
// the per-message fields, then one block per recipient, each block ended by
// a blank line. Every value is ASCII on one line.
func deliveryStatus(r Report) []byte {
	var b bytes.Buffer
	field := func(name, value string) {
		b.WriteString(name + ": " + value + "\r\n")
	}
	field("Reporting-MTA", "dns; "+r.Domain)
	if env := asciiLine(r.EnvID); env != "" {
		field("Original-Envelope-Id", xtext(env))
	}
	if !r.Arrival.IsZero() {
		field("Arrival-Date", r.Arrival.Format(time.RFC1123Z))
	}
	b.WriteString("\r\n")
	for _, rc := range r.Recipients {
		if orig := asciiLine(rc.Orig); orig != "" {
			field("Original-Recipient", "rfc822; "+orig)
		}
		field("Final-Recipient", "rfc822; "+asciiLine(rc.Final))
		field("Action", string(rc.Action))
		field("Status", string(rc.Status))
		if d := asciiLine(rc.Diagnostic); d != "" && (rc.Action == ActionFailed || rc.Action == ActionDelayed) {
			field("Diagnostic-Code", "X-Bitmessage; "+truncateUTF8(d, maxDiagnostic))
		}
		if !rc.When.IsZero() {
			field("Last-Attempt-Date", rc.When.Format(time.RFC1123Z))
		}
		if rc.Action == ActionDelayed && !rc.WillRetryUntil.IsZero() {
			field("Will-Retry-Until", rc.WillRetryUntil.Format(time.RFC1123Z))
		}
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

// validStatus checks an RFC 3463 status code: class.subject.detail with
// class 2, 4 or 5 and numbers of at most three digits.
func validStatus(s DSNStatus) bool {
	parts := strings.Split(string(s), ".")
	if len(parts) != 3 || (parts[0] != "2" && parts[0] != "4" && parts[0] != "5") {
		return false
	}
	for _, p := range parts[1:] {
		if p == "" || len(p) > 3 {
			return false
		}
		for i := 0; i < len(p); i++ {
			if p[i] < '0' || p[i] > '9' {
				return false
			}
		}
	}
	return true
}

// asciiLine makes text safe for a delivery-status field: one line of
// printable ASCII (others become "?").
func asciiLine(s string) string {
	s = oneLine(s)
	return strings.Map(func(r rune) rune {
		if r > 0x7e {
			return '?'
		}
		return r
	}, s)
}

// xtext encodes an ENVID for Original-Envelope-Id (RFC 3461 §4).
func xtext(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= '!' && c <= '~' && c != '+' && c != '=' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "+%02X", c)
		}
	}
	return b.String()
}

// crlf gives text CRLF line ends throughout.
func crlf(b []byte) []byte {
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	return bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n"))
}

// headerBlock returns the header section of a message, up to and including
// the blank line that ends it (all of it if there is none), at most 64 KiB.
func headerBlock(msg []byte) []byte {
	const maxHeaders = 64 << 10
	r := bufio.NewReader(bytes.NewReader(msg))
	var out bytes.Buffer
	for out.Len() < maxHeaders {
		line, err := r.ReadBytes('\n')
		out.Write(line)
		if len(bytes.TrimRight(line, "\r\n")) == 0 || err == io.EOF {
			break
		}
	}
	b := out.Bytes()
	if !bytes.HasSuffix(b, []byte("\r\n")) {
		b = append(b, '\r', '\n')
	}
	return b
}
