package imapd

import (
	"slices"
	"strings"

	"github.com/emersion/go-imap/v2"
)

// flagRecent is the IMAP4rev1 session flag. It is never stored (RFC 9051
// dropped it) and a client cannot set it (RFC 3501 §2.3.2).
const flagRecent = `\recent`

// systemFlags maps the lower-cased system flags to their canonical spelling.
// RFC 9051 §2.3.2: flags are case-insensitive; clients such as mutt compare
// the spelling, so the server always answers with the canonical one.
var systemFlags = map[string]imap.Flag{
	`\seen`:     imap.FlagSeen,
	`\answered`: imap.FlagAnswered,
	`\flagged`:  imap.FlagFlagged,
	`\deleted`:  imap.FlagDeleted,
	`\draft`:    imap.FlagDraft,
}

// baseFlags is the FLAGS list of every mailbox before keywords are added.
var baseFlags = []imap.Flag{imap.FlagAnswered, imap.FlagFlagged, imap.FlagDeleted, imap.FlagSeen, imap.FlagDraft}

func flagKey(f string) string { return strings.ToLower(f) }

// canonFlags returns the store's flags in canonical spelling, sorted and
// without duplicates or \Recent.
func canonFlags(in []string) []imap.Flag {
	out := make([]imap.Flag, 0, len(in))
	for _, f := range in {
		k := flagKey(f)
		if k == flagRecent || f == "" {
			continue
		}
		if sf, ok := systemFlags[k]; ok {
			out = append(out, sf)
		} else {
			out = append(out, imap.Flag(f))
		}
	}
	slices.SortFunc(out, func(a, b imap.Flag) int { return strings.Compare(flagKey(string(a)), flagKey(string(b))) })
	return slices.CompactFunc(out, func(a, b imap.Flag) bool { return strings.EqualFold(string(a), string(b)) })
}

// hasFlag reports whether flags holds f, ignoring case.
func hasFlag(flags []imap.Flag, f imap.Flag) bool {
	for _, g := range flags {
		if strings.EqualFold(string(g), string(f)) {
			return true
		}
	}
	return false
}

// sameFlags compares two canonical flag lists.
func sameFlags(a, b []imap.Flag) bool {
	return slices.EqualFunc(a, b, func(x, y imap.Flag) bool { return strings.EqualFold(string(x), string(y)) })
}

// isKeyword reports whether f is a keyword rather than a system flag.
func isKeyword(f imap.Flag) bool { return !strings.HasPrefix(string(f), `\`) }
