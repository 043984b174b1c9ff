package logsafe

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestString(t *testing.T) {
	for in, want := range map[string]string{
		"mail.example.org":  "mail.example.org",
		"héllo":             "héllo",
		"a\r\nb":            "a\ufffd\ufffdb",
		"x\x1b[31mred":      "x\ufffd[31mred",
		"bad\xffutf8":       "bad\ufffdutf8",
		"nul\x00":           "nul\ufffd",
		"rtl\u202eoverride": "rtl\ufffdoverride",
		"del\x7f":           "del\ufffd",
		"":                  "",
	} {
		if got := String(in); got != want {
			t.Errorf("String(%q) = %q, want %q", in, got, want)
		}
	}
	long := String(strings.Repeat("é", 1000))
	if len(long) > MaxLen+len("…")+utf8.UTFMax || !utf8.ValidString(long) || !strings.HasSuffix(long, "…") {
		t.Errorf("long string cleaned to %d bytes: %q", len(long), long)
	}
}

func TestNewID(t *testing.T) {
	a, b := NewID(), NewID()
	if len(a) != 8 || a == b {
		t.Errorf("ids %q, %q", a, b)
	}
}
