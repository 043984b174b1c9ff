package gateway

import "strings"

// oneLine turns header text into one clean line: control characters
// (CR and LF above all) become spaces and invalid UTF-8 is repaired.
func oneLine(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || r == '\u2028' || r == '\u2029' || (r >= 0x80 && r < 0xa0) {
			return ' '
		}
		return r
	}, s)
	return strings.TrimSpace(s)
}

// cleanBody gives text the form Bitmessage carries: valid UTF-8, LF line
// ends, no control characters but tab and newline. Nothing is dropped from
// the end: the final line end (and any trailing blank lines or spaces the
// writer typed) travels as written.
func cleanBody(s string) string {
	return normalizeText(s)
}

// normalizeText repairs invalid UTF-8, turns every line end into LF and
// drops control characters other than tab and newline.
func normalizeText(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\r':
			return '\n'
		case r == '\n' || r == '\t':
			return r
		case r < ' ' || r == 0x7f:
			return -1
		}
		return r
	}, s)
}
