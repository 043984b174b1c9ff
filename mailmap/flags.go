package mailmap

import (
	"slices"
	"sort"
	"strings"
)

// Flags are stored as one space-separated, sorted string: flag names are
// IMAP atoms and never contain spaces (RFC 9051 §9 flag-keyword).

var systemFlags = map[string]string{
	`\seen`:     `\Seen`,
	`\answered`: `\Answered`,
	`\flagged`:  `\Flagged`,
	`\deleted`:  `\Deleted`,
	`\draft`:    `\Draft`,
}

const maxFlagLen = 128

// validKeyword reports whether k is an IMAP atom usable as a keyword:
// ASCII without atom-specials (RFC 9051 §9: atom-specials, and "\" which
// starts system flags).
func validKeyword(k string) bool {
	if k == "" || len(k) > maxFlagLen {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c <= 0x20 || c >= 0x7f || strings.IndexByte(`(){%*"\]`, c) >= 0 {
			return false
		}
	}
	return true
}

// normFlags validates flags and returns them canonical (system flags in
// their RFC spelling), de-duplicated case-insensitively (flags are
// case-insensitive, RFC 9051 §2.3.2) and sorted. \Recent is dropped: it is
// not a stored flag in IMAP4rev2.
func normFlags(in []string) ([]string, error) {
	out := make([]string, 0, len(in))
	for _, f := range in {
		key := strings.ToLower(f)
		if strings.HasPrefix(f, `\`) {
			if key == `\recent` {
				continue
			}
			canon, ok := systemFlags[key]
			if !ok {
				return nil, invalid("unknown system flag " + f)
			}
			f = canon
		} else if !validKeyword(f) {
			return nil, invalid("flag is not an IMAP atom")
		}
		if !hasFlag(out, f) {
			out = append(out, f)
		}
	}
	sort.Strings(out)
	return out, nil
}

// hasFlag reports whether flags holds f, ignoring case.
func hasFlag(flags []string, f string) bool {
	return slices.ContainsFunc(flags, func(x string) bool { return strings.EqualFold(x, f) })
}

// applyFlags computes a message's new flags; all inputs are normalised.
func applyFlags(cur []string, op FlagOp, flags []string) []string {
	var out []string
	switch op {
	case FlagsReplace:
		out = slices.Clone(flags)
	case FlagsAdd:
		out = slices.Clone(cur)
		for _, f := range flags {
			if !hasFlag(out, f) {
				out = append(out, f)
			}
		}
	case FlagsRemove:
		for _, f := range cur {
			if !hasFlag(flags, f) {
				out = append(out, f)
			}
		}
	}
	sort.Strings(out)
	return out
}

func joinFlags(flags []string) string { return strings.Join(flags, " ") }

func splitFlags(s string) []string { return strings.Fields(s) }
