package smtpd

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/bmgate/bmgate/gateway"
	"github.com/bmgate/bmgate/mailmap"
	"github.com/emersion/go-smtp"
)

// TestSMTPReply: gateway.Reply decides the meaning (its own table is in
// gateway's tests); smtpReply carries it onto the wire and lets go-smtp's
// own replies through.
func TestSMTPReply(t *testing.T) {
	internal := errors.New("dial tcp 10.1.2.3:5432: password=hunter2 refused")
	tests := []struct {
		name     string
		err      error
		code     int
		enhanced smtp.EnhancedCode
		text     string // expected message, "" = don't care
	}{
		{"gateway error", gateway.BadRecipient("BM-x is not valid", internal), 550, smtp.EnhancedCode{5, 1, 1}, "BM-x is not valid"},
		{"wrapped gateway error", fmt.Errorf("submit: %w", gateway.BadSender("not yours", nil)), 550, smtp.EnhancedCode{5, 7, 1}, "not yours"},
		{"too large", gateway.TooLarge("too big"), 552, smtp.EnhancedCode{5, 3, 4}, "too big"},
		{"auth unavailable", gateway.AuthUnavailable(internal), 454, smtp.EnhancedCode{4, 7, 0}, ""},
		{"smtp error passes", smtp.ErrDataTooLarge, 552, smtp.EnhancedCode{5, 3, 4}, smtp.ErrDataTooLarge.Message},
		{"wrapped smtp error", fmt.Errorf("read: %w", smtp.ErrDataTooLarge), 552, smtp.EnhancedCode{5, 3, 4}, smtp.ErrDataTooLarge.Message},
		{"gateway error wrapping an smtp error", gateway.BadContent("broken message", smtp.ErrDataTooLarge), 554, smtp.EnhancedCode{5, 6, 0}, "broken message"},
		{"auth failed", fmt.Errorf("login: %w", mailmap.ErrAuthFailed), 535, smtp.EnhancedCode{5, 7, 8}, smtp.ErrAuthFailed.Message},
		{"quota", mailmap.ErrOverQuota, 552, smtp.EnhancedCode{5, 2, 2}, ""},
		{"timeout", fmt.Errorf("enqueue: %w", context.DeadlineExceeded), 451, smtp.EnhancedCode{4, 4, 7}, ""},
		{"unknown", internal, 451, smtp.EnhancedCode{4, 3, 0}, ""},
		{"newline in text", gateway.BadRecipient("line one\r\n250 fake", nil), 550, smtp.EnhancedCode{5, 1, 1}, "line one  250 fake"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := smtpReply(tc.err)
			if got.Code != tc.code || got.EnhancedCode != tc.enhanced {
				t.Fatalf("smtpReply = %d %v %q, want %d %v", got.Code, got.EnhancedCode, got.Message, tc.code, tc.enhanced)
			}
			if tc.text != "" && got.Message != tc.text {
				t.Errorf("message = %q, want %q", got.Message, tc.text)
			}
			if strings.Contains(got.Message, "hunter2") || strings.Contains(got.Message, "10.1.2.3") {
				t.Errorf("internal text leaked: %q", got.Message)
			}
			if strings.ContainsAny(got.Message, "\r\n") {
				t.Errorf("reply text has a line break: %q", got.Message)
			}
		})
	}
	if smtpReply(nil) != nil {
		t.Error("smtpReply(nil) != nil")
	}
}
