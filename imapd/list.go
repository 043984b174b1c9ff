package imapd

import (
	"sort"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/bmgate/bmgate/mailmap"
)

// List implements imapserver.Session for LIST (with LIST-EXTENDED selection
// and return options, LIST-STATUS) and LSUB.
//
// Special-use attributes are in every response, not only when RETURN
// (SPECIAL-USE) asks (RFC 6154 §5.1 allows it): clients that only send a
// plain LIST still find Sent, Drafts, Trash, Junk and Archive. \HasChildren
// and \HasNoChildren are always computed (CHILDREN, RFC 3348). The store
// creates every superior of a mailbox, so there are no \Noselect levels.
func (s *session) List(w *imapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) error {
	if err := s.active(); err != nil {
		return err
	}
	if len(patterns) == 0 {
		// LIST "" "": the hierarchy delimiter and root (RFC 9051 §6.3.9).
		return w.WriteList(&imap.ListData{Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}, Delim: delim})
	}
	ctx, cancel := s.ctx()
	defer cancel()
	boxes, err := s.srv.store.Mailboxes(ctx, s.user.ID)
	if err != nil {
		return s.fail("LIST", err, "")
	}

	byName := make(map[string]*mailmap.Mailbox, len(boxes))
	for i := range boxes {
		byName[boxes[i].Name] = &boxes[i]
	}
	hasChildren := make(map[string]bool)
	subscribedChild := make(map[string]bool)
	names := make([]string, 0, len(boxes))
	for name, mb := range byName {
		names = append(names, name)
		for i := strings.IndexByte(name, delim); i >= 0; i = nextDelim(name, i) {
			parent := name[:i]
			hasChildren[parent] = true
			if mb.Subscribed {
				subscribedChild[parent] = true
			}
		}
	}
	sort.Slice(names, func(i, j int) bool {
		if (names[i] == "INBOX") != (names[j] == "INBOX") {
			return names[i] == "INBOX"
		}
		return names[i] < names[j]
	})

	ref = normPattern(ref)
	for i := range patterns {
		patterns[i] = normPattern(patterns[i])
	}
	for _, name := range names {
		if !matchAny(name, ref, patterns) {
			continue
		}
		mb := byName[name]
		data := &imap.ListData{Delim: delim, Mailbox: name}
		switch {
		case options.SelectSpecialUse && mb.SpecialUse == "":
			continue
		case options.SelectSubscribed && !mb.Subscribed:
			if !options.SelectRecursiveMatch || !subscribedChild[name] {
				continue
			}
			data.ChildInfo = &imap.ListDataChildInfo{Subscribed: true}
		}
		if hasChildren[name] {
			data.Attrs = append(data.Attrs, imap.MailboxAttrHasChildren)
		} else {
			data.Attrs = append(data.Attrs, imap.MailboxAttrHasNoChildren)
		}
		if mb.Subscribed && (options.ReturnSubscribed || options.SelectSubscribed) {
			data.Attrs = append(data.Attrs, imap.MailboxAttrSubscribed)
		}
		if mb.SpecialUse != "" {
			data.Attrs = append(data.Attrs, imap.MailboxAttr(mb.SpecialUse))
		}
		if options.ReturnStatus != nil {
			st, err := s.status(ctx, *mb, options.ReturnStatus)
			if err != nil {
				return s.fail("LIST", err, "")
			}
			data.Status = st
		}
		if err := w.WriteList(data); err != nil {
			return err
		}
	}
	return nil
}

func nextDelim(name string, i int) int {
	j := strings.IndexByte(name[i+1:], delim)
	if j < 0 {
		return -1
	}
	return i + 1 + j
}

func matchAny(name, ref string, patterns []string) bool {
	for _, p := range patterns {
		if imapserver.MatchList(name, delim, ref, p) {
			return true
		}
	}
	return false
}

// normPattern makes a leading INBOX in a reference or pattern match the
// canonical name whatever its case.
func normPattern(p string) string {
	if len(p) >= 5 && strings.EqualFold(p[:5], "INBOX") && (len(p) == 5 || p[5] == delim) {
		return "INBOX" + p[5:]
	}
	return p
}
