package gateway

import "strings"

// Limits on the message IDs kept from a mail or from a stranger's extras.
const (
	maxReferences = 20 // message IDs kept in References
	maxMsgIDLen   = 250
)

// Keys of the threading headers in Extra (docs/protocol.md §12, encoding 3 map).
const (
	ExtraMessageID  = "messageid"
	ExtraInReplyTo  = "inreplyto"
	ExtraReferences = "references"
)

// Extra returns the threading headers to carry with the message: message
// IDs without angle brackets, references separated by one space. Empty
// values are left out; nil when there is nothing to carry.
func (o Outgoing) Extra() map[string]string {
	m := map[string]string{}
	if o.MessageID != "" {
		m[ExtraMessageID] = o.MessageID
	}
	if o.InReplyTo != "" {
		m[ExtraInReplyTo] = o.InReplyTo
	}
	if len(o.References) > 0 {
		m[ExtraReferences] = strings.Join(o.References, " ")
	}
	if len(m) == 0 {
		return nil
	}
	return m
}

// ThreadingFromExtra reads the threading headers another node sent. The
// values come from a stranger: every id is checked against the msg-id
// syntax and dropped when it does not match, so nothing but a plain id can
// reach a header we write. Angle brackets around ids are tolerated.
func ThreadingFromExtra(extra map[string]string) (messageID, inReplyTo string, refs []string) {
	if id := strings.Trim(strings.TrimSpace(extra[ExtraMessageID]), "<>"); ValidMsgID(id) {
		messageID = id
	}
	if id := strings.Trim(strings.TrimSpace(extra[ExtraInReplyTo]), "<>"); ValidMsgID(id) {
		inReplyTo = id
	}
	r := extra[ExtraReferences]
	if len(r) > maxReferences*4*(maxMsgIDLen+3) {
		r = "" // absurdly long: do not even split it
	}
	var ids []string
	for _, f := range strings.Fields(r) {
		ids = append(ids, strings.Trim(f, "<>"))
	}
	refs = trimReferences(ids)
	return messageID, inReplyTo, refs
}

// trimReferences keeps the valid ids; of a long list, the first (the
// thread's root) and the most recent ones, as RFC 5322 §3.6.4 suggests.
func trimReferences(ids []string) []string {
	var out []string
	for _, id := range ids {
		if ValidMsgID(id) {
			out = append(out, id)
		}
	}
	if len(out) > maxReferences {
		out = append(out[:1], out[len(out)-maxReferences+1:]...)
	}
	return out
}

// ValidMsgID reports whether id (without angle brackets) is a msg-id that
// is safe to write into a header: id-left "@" id-right, where id-left is
// dot-atom text and id-right is dot-atom text or a no-fold literal
// (RFC 5322 §3.6.4), ASCII only, at most 250 bytes.
func ValidMsgID(id string) bool {
	if len(id) < 3 || len(id) > maxMsgIDLen {
		return false
	}
	left, right, ok := strings.Cut(id, "@")
	if !ok || !dotAtomText(left) {
		return false
	}
	if strings.HasPrefix(right, "[") && strings.HasSuffix(right, "]") && len(right) >= 2 {
		for i := 1; i < len(right)-1; i++ {
			c := right[i]
			if c < 33 || c > 126 || c == '[' || c == ']' || c == '\\' {
				return false
			}
		}
		return true
	}
	return dotAtomText(right)
}

func dotAtomText(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isAtext(s[i]) && s[i] != '.' {
			return false
		}
	}
	return true
}

func isAtext(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}
