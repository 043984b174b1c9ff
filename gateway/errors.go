package gateway

import (
	"context"
	"errors"
	"strings"

	"github.com/bmgate/bmgate/mailmap"
)

// Error is a refusal with its protocol meaning: an SMTP reply code, an RFC
// 3463 enhanced status code, a text that is safe to show the client, and
// whether trying again later may succeed. Err is the internal cause; it is
// for logs and errors.Is/As, never for the client.
type Error struct {
	Code      int    // SMTP reply code, e.g. 550
	Enhanced  [3]int // RFC 3463 enhanced status code, e.g. {5, 1, 1}
	Message   string // generic client text, one line, no internal detail
	Temporary bool   // a 4xx answer: the client may retry
	Err       error  // internal cause, may be nil
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// NewError returns an Error; Temporary follows from the reply code class.
func NewError(code int, enhanced [3]int, message string, cause error) *Error {
	return &Error{Code: code, Enhanced: enhanced, Message: message, Temporary: code/100 == 4, Err: cause}
}

// Constructors for the refusals the gateway and smtpd give. Each message is
// shown to the client as is, so it must not contain internal detail.

// BadRecipient refuses a recipient that is not a usable Bitmessage address
// (550 5.1.1, RFC 3463 "bad destination mailbox address").
func BadRecipient(message string, cause error) *Error {
	return NewError(550, [3]int{5, 1, 1}, message, cause)
}

// BadSender refuses an envelope sender or From header that is not one of
// the user's identities (550 5.7.1, "delivery not authorized").
func BadSender(message string, cause error) *Error {
	return NewError(550, [3]int{5, 7, 1}, message, cause)
}

// MediaUnsupported refuses content Bitmessage cannot carry, such as
// attachments (554 5.6.1, "media not supported").
func MediaUnsupported(message string, cause error) *Error {
	return NewError(554, [3]int{5, 6, 1}, message, cause)
}

// BadContent refuses a message whose MIME structure or encoding is broken
// (554 5.6.0, "other or undefined media error").
func BadContent(message string, cause error) *Error {
	return NewError(554, [3]int{5, 6, 0}, message, cause)
}

// TooLarge refuses a message over a size limit (552 5.3.4).
func TooLarge(message string) *Error {
	return NewError(552, [3]int{5, 3, 4}, message, nil)
}

// TemporaryFailure answers a failure on our side that may pass, such as a
// database that is down (451 4.3.0). The cause stays internal.
func TemporaryFailure(cause error) *Error {
	return NewError(451, [3]int{4, 3, 0}, msgTemporary, cause)
}

// AuthUnavailable answers an authentication attempt that could not be
// checked because of a failure on our side (454 4.7.0, RFC 4954 §6).
func AuthUnavailable(cause error) *Error {
	return NewError(454, [3]int{4, 7, 0}, "Temporary authentication failure, try again later", cause)
}

const msgTemporary = "Temporary local problem, try again later"

// Reply maps any error to the refusal the client sees. It is the only
// place that gives an error its meaning: an *Error keeps its code and its
// client text (made safe for a reply line), the store's sentinel errors get
// theirs, and anything else becomes a generic temporary failure whose text
// reveals nothing internal. The result's Err is the error given. A nil
// error gives nil.
//
// smtpd turns the result into the SMTP reply it sends (the SMTP library's
// types stay there); a reply the SMTP library made itself, such as the one
// for a message over the size limit, passes through smtpd unchanged.
func Reply(err error) *Error {
	if err == nil {
		return nil
	}
	var ge *Error
	if errors.As(err, &ge) {
		r := *ge
		r.Message, r.Err = replyText(ge.Message), err
		return &r
	}
	switch {
	case errors.Is(err, mailmap.ErrAuthFailed), errors.Is(err, mailmap.ErrDisabled):
		// A disabled account is answered like a wrong password so that
		// account state does not leak to someone guessing.
		return NewError(535, [3]int{5, 7, 8}, "Authentication failed", err)
	case errors.Is(err, mailmap.ErrOverQuota):
		return NewError(552, [3]int{5, 2, 2}, "Mailbox quota exceeded", err)
	case errors.Is(err, context.DeadlineExceeded):
		return NewError(451, [3]int{4, 4, 7}, "Timed out, try again later", err)
	}
	return TemporaryFailure(err)
}

// replyText makes a client text safe for a reply line: an embedded newline
// would become a multi-line SMTP reply (or a forged one), control
// characters have no place on the wire, and replies are ASCII (we do not
// offer SMTPUTF8).
func replyText(s string) string {
	s = strings.Map(func(r rune) rune {
		switch {
		case r < ' ' || r == 0x7f:
			return ' '
		case r > 0x7e:
			return '?'
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	const max = 400 // RFC 5321 §4.5.3.1.5: reply lines ≤ 512 octets
	if len(s) > max {
		s = truncateUTF8(s, max)
	}
	if s == "" {
		return "Refused"
	}
	return s
}

// truncateUTF8 cuts s to at most n bytes without splitting a character.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}
