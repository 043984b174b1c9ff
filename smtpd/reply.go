package smtpd

import (
	"errors"

	"github.com/bmgate/bmgate/gateway"
	"github.com/emersion/go-smtp"
)

// smtpReply is the SMTP reply for err; every refusal goes through it. A
// reply go-smtp made itself (smtp.ErrDataTooLarge from the DATA reader)
// passes through as it is, unless a gateway refusal wraps it; everything
// else gets its meaning from gateway.Reply, the one place that decides what
// an error tells the client. A nil error gives nil.
func smtpReply(err error) *smtp.SMTPError {
	if err == nil {
		return nil
	}
	var ge *gateway.Error
	var se *smtp.SMTPError
	if !errors.As(err, &ge) && errors.As(err, &se) {
		return se
	}
	r := gateway.Reply(err)
	return &smtp.SMTPError{Code: r.Code, EnhancedCode: smtp.EnhancedCode(r.Enhanced), Message: r.Message}
}
