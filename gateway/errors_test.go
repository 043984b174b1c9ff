package gateway

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/bmgate/bmgate/mailmap"
)

func TestReply(t *testing.T) {
	internal := errors.New("dial tcp 10.1.2.3:5432: password=hunter2 refused")
	tests := []struct {
		name     string
		err      error
		code     int
		enhanced [3]int
		text     string // expected message, "" = don't care
	}{
		{"gateway error", BadRecipient("BM-x is not valid", internal), 550, [3]int{5, 1, 1}, "BM-x is not valid"},
		{"wrapped gateway error", fmt.Errorf("submit: %w", BadSender("not yours", nil)), 550, [3]int{5, 7, 1}, "not yours"},
		{"media", MediaUnsupported("no attachments", nil), 554, [3]int{5, 6, 1}, "no attachments"},
		{"too large", TooLarge("too big"), 552, [3]int{5, 3, 4}, "too big"},
		{"temporary", TemporaryFailure(internal), 451, [3]int{4, 3, 0}, msgTemporary},
		{"auth unavailable", AuthUnavailable(internal), 454, [3]int{4, 7, 0}, ""},
		{"auth failed", fmt.Errorf("login: %w", mailmap.ErrAuthFailed), 535, [3]int{5, 7, 8}, ""},
		{"disabled looks like auth failed", mailmap.ErrDisabled, 535, [3]int{5, 7, 8}, ""},
		{"quota", mailmap.ErrOverQuota, 552, [3]int{5, 2, 2}, ""},
		{"timeout", fmt.Errorf("enqueue: %w", context.DeadlineExceeded), 451, [3]int{4, 4, 7}, ""},
		{"unknown", internal, 451, [3]int{4, 3, 0}, msgTemporary},
		{"newline in text", BadRecipient("line one\r\n250 fake", nil), 550, [3]int{5, 1, 1}, "line one  250 fake"},
		{"non-ASCII text", BadRecipient("Grüße", nil), 550, [3]int{5, 1, 1}, "Gr??e"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Reply(tc.err)
			if got.Code != tc.code || got.Enhanced != tc.enhanced {
				t.Fatalf("Reply = %d %v %q, want %d %v", got.Code, got.Enhanced, got.Message, tc.code, tc.enhanced)
			}
			if got.Temporary != (tc.code/100 == 4) {
				t.Errorf("Temporary = %v for %d", got.Temporary, tc.code)
			}
			if !errors.Is(got, tc.err) {
				t.Errorf("Reply(err) does not wrap err")
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
	if Reply(nil) != nil {
		t.Error("Reply(nil) != nil")
	}
}

func TestErrorWrapping(t *testing.T) {
	cause := errors.New("cause")
	e := BadContent("broken", cause)
	if !errors.Is(e, cause) {
		t.Error("errors.Is does not reach the cause")
	}
	if e.Error() != "broken: cause" {
		t.Errorf("Error() = %q", e.Error())
	}
	if e.Temporary || !TemporaryFailure(nil).Temporary {
		t.Error("Temporary does not follow the reply class")
	}
	var ge *Error
	if !errors.As(fmt.Errorf("x: %w", e), &ge) || ge.Code != 554 {
		t.Error("errors.As does not find *Error")
	}
	if got := replyText(strings.Repeat("é", 400)); len(got) > 400 {
		t.Errorf("reply text not bounded: %d bytes", len(got))
	}
}
