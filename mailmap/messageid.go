package mailmap

import (
	"bytes"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxHeaderScan bounds how much of a message is searched for the header
// section; Message-ID is near the top in practice.
const maxHeaderScan = 256 << 10

// maxMessageID bounds a stored Message-ID (RFC 5322 §2.1.1 line limit).
const maxMessageID = 998

// parseMessageID returns the Message-ID of an RFC 5322 message without
// angle brackets, or "" if it has none. It reads only the header section
// (up to the first empty line), handles folded lines and CRLF or LF line
// ends, and never fails: the message comes from strangers.
func parseMessageID(raw []byte) string {
	if len(raw) > maxHeaderScan {
		raw = raw[:maxHeaderScan]
	}
	var value []byte
	in := false // collecting a Message-ID field's folded lines
	for len(raw) > 0 {
		line := raw
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			line, raw = raw[:i], raw[i+1:]
		} else {
			raw = nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			break // end of the header section
		}
		if line[0] == ' ' || line[0] == '\t' {
			if in {
				value = append(value, line...)
			}
			continue
		}
		if in {
			break // the field ended; the first Message-ID wins
		}
		name, rest, ok := bytes.Cut(line, []byte(":"))
		if ok && strings.EqualFold(string(bytes.TrimRight(name, " \t")), "Message-ID") {
			in = true
			value = append(value[:0], rest...)
		}
	}
	if !in {
		return ""
	}
	return cleanMessageID(string(value))
}

// cleanMessageID turns a Message-ID field value (or an id given by a
// caller, with or without brackets) into the stored form: the text between
// the first '<' and the following '>', without angle brackets, whitespace
// or control characters, valid UTF-8, at most maxMessageID bytes. Cleaning
// a cleaned id changes nothing, so stored ids can be looked up again.
func cleanMessageID(v string) string {
	if i := strings.IndexByte(v, '<'); i >= 0 {
		v = v[i+1:]
		if j := strings.IndexByte(v, '>'); j >= 0 {
			v = v[:j]
		}
	}
	v = strings.Map(func(r rune) rune {
		if r == utf8.RuneError || r == '<' || r == '>' || unicode.IsSpace(r) || unicode.IsControl(r) {
			return -1
		}
		return r
	}, strings.ToValidUTF8(v, ""))
	if len(v) > maxMessageID {
		v = v[:maxMessageID]
		v = strings.ToValidUTF8(v, "") // the cut may split a rune
	}
	return v
}
