package main

import (
	"slices"
	"testing"
)

// sendmailT runs what sendmail -t does to a message: the recipients from
// its header and the message without Bcc.
func sendmailT(t *testing.T, msg string) ([]string, string) {
	t.Helper()
	h, body, err := splitMessage(normalizeCRLF([]byte(msg)))
	if err != nil {
		t.Fatalf("splitMessage: %v", err)
	}
	rcpts, err := headerRecipients(h)
	if err != nil {
		t.Fatalf("headerRecipients: %v", err)
	}
	h.Del("Bcc")
	out, err := joinMessage(h, body)
	if err != nil {
		t.Fatalf("joinMessage: %v", err)
	}
	return rcpts, string(out)
}

func TestSendmailFoldedHeader(t *testing.T) {
	msg := "From: a@example.org\n" +
		"To: b@example.org,\n" +
		"\tc@example.org\n" +
		"Subject: a long\n" +
		" subject\n" +
		"\n" +
		"Body.\n"
	rcpts, out := sendmailT(t, msg)
	if want := []string{"b@example.org", "c@example.org"}; !slices.Equal(rcpts, want) {
		t.Errorf("recipients = %q, want %q", rcpts, want)
	}
	// Without a Bcc the message comes back as it was read, folding kept.
	if want := string(normalizeCRLF([]byte(msg))); out != want {
		t.Errorf("message = %q, want %q", out, want)
	}
}

func TestSendmailBccRemoved(t *testing.T) {
	msg := "From: a@example.org\n" +
		"Bcc: hidden@example.org,\n" +
		" other@example.org\n" +
		"To: b@example.org\n" +
		"bcc: third@example.org\n" +
		"Subject: Hi\n" +
		"\n" +
		"Bcc: not a header\n"
	rcpts, out := sendmailT(t, msg)
	want := []string{"b@example.org", "hidden@example.org", "other@example.org", "third@example.org"}
	if !slices.Equal(rcpts, want) {
		t.Errorf("recipients = %q, want %q", rcpts, want)
	}
	wantMsg := "From: a@example.org\r\n" +
		"To: b@example.org\r\n" +
		"Subject: Hi\r\n" +
		"\r\n" +
		"Bcc: not a header\r\n"
	if out != wantMsg {
		t.Errorf("message = %q, want %q", out, wantMsg)
	}
}

func TestSendmailHeaderErrors(t *testing.T) {
	if _, _, err := splitMessage([]byte(" leading space\r\n\r\n")); err == nil {
		t.Error("splitMessage accepted a header starting with a continuation line")
	}
	h, _, err := splitMessage([]byte("To: <broken\r\n\r\n"))
	if err != nil {
		t.Fatalf("splitMessage: %v", err)
	}
	if _, err := headerRecipients(h); err == nil {
		t.Error("headerRecipients accepted a malformed To field")
	}
}
