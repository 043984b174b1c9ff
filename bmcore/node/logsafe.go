package node

import (
	"crypto/rand"
	"encoding/base32"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxLogString bounds a peer-supplied string in a log attribute, in bytes.
const maxLogString = 256

// logSafe returns a string a peer sent (a user agent, a command name, an
// error text) fit for a log attribute: invalid UTF-8 and control or format
// characters (CR, LF, ESC, bidi overrides) become U+FFFD, and it is cut at
// maxLogString bytes, marked with "…".
func logSafe(s string) string {
	var b strings.Builder
	for i, r := range s {
		if i >= maxLogString {
			b.WriteString("…")
			break
		}
		if r == utf8.RuneError || unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029' {
			r = utf8.RuneError
		}
		b.WriteRune(r)
	}
	return b.String()
}

var connIDEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// newConnID returns a short random id (8 base32 characters) that every
// log line of one peer connection carries as "conn".
func newConnID() string {
	var b [5]byte
	rand.Read(b[:])
	return connIDEncoding.EncodeToString(b[:])
}
