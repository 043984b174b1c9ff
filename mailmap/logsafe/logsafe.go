// Package logsafe makes strings a peer sent fit for a log attribute, and
// names connections so that every line about one can be found.
package logsafe

import (
	"crypto/rand"
	"encoding/base32"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxLen bounds a cleaned string, in bytes, before the truncation mark.
const MaxLen = 256

// String returns s for a log: invalid UTF-8 and control characters (CR,
// LF, ESC, DEL, C1, the bidi and other format characters) each become
// U+FFFD, and anything past MaxLen bytes is cut and marked with "…".
// A string with nothing to clean is returned as it is.
func String(s string) string {
	clean := len(s) <= MaxLen
	for _, r := range s {
		if !clean {
			break
		}
		if r == utf8.RuneError || bad(r) {
			clean = false
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i, r := range s {
		if i >= MaxLen {
			b.WriteString("…")
			break
		}
		if r == utf8.RuneError || bad(r) {
			r = utf8.RuneError
		}
		b.WriteRune(r)
	}
	return b.String()
}

func bad(r rune) bool {
	return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029'
}

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewID returns a short random connection id: 8 base32 characters (40
// bits), enough to tell apart a server's connections in its logs.
func NewID() string {
	var b [5]byte
	rand.Read(b[:])
	return idEncoding.EncodeToString(b[:])
}
