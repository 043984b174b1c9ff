package gateway

import (
	"time"

	"github.com/bmgate/bmgate/mailmap"
)

// Recipient is one accepted RCPT TO of a submission.
type Recipient struct {
	Address string             // resolved Bitmessage address, BM-… ("" for a broadcast: the sender's own)
	Orig    string             // the recipient as the client wrote it (ORCPT when given)
	Notify  int                // mailmap.Notify* bits from RFC 3461 NOTIFY; 0 = not given
	Kind    mailmap.OutboxKind // msg, chan or broadcast
}

// Submission is one mail accepted over SMTP, handed to Submit after DATA.
type Submission struct {
	User       mailmap.User
	From       string // sender identity BM-…, from the checked envelope sender
	Recipients []Recipient
	Ret        string // RFC 3461 RET: "FULL", "HDRS" or ""
	EnvID      string // RFC 3461 ENVID, xtext-decoded, or ""
	Raw        []byte // the message as received

	// Set by the XML-RPC API (gateway/pyapi) only: the PyBitmessage-style
	// ackdata it hands back (mailmap.OutboxItem.APIRef; one recipient),
	// and the message's lifetime (0: the configured one).
	APIRef []byte
	TTL    time.Duration
}
