package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/bmgate/bmgate/bmcore/address"
	"github.com/bmgate/bmgate/bmcore/identity"
	"github.com/bmgate/bmgate/gateway"
	"github.com/bmgate/bmgate/mailmap"
)

var cmdImportPyBitmessage = &command{
	name: "import pybitmessage",
	args: "--user NAME DIR | --user NAME KEYS.DAT [MESSAGES.DAT]",
	summary: "Move a PyBitmessage user in: the identities of its keys.dat (addresses, chans, labels, difficulty, mailing lists) and, " +
		"from messages.dat, the inbox (INBOX, chan and subscription folders), sent messages (Sent; unsent ones in Drafts; " +
		"those awaiting an ack also in the outbox, so the ack completes them), trash (Trash), subscriptions and the " +
		"address book (contacts, usable as LABEL@domain), the blacklist and whitelist with the list mode. DIR is PyBitmessage's data directory. Everything is checked " +
		"before anything is written, and written in one transaction: a failed import writes nothing; running it again changes nothing. Stop PyBitmessage first.",
	run: func(ctx context.Context, inv *invocation) error {
		user := inv.fs.String("user", "", "the `NAME` of the bmgate user the identities and mail go to")
		dryRun := inv.fs.Bool("dry-run", false, "check and summarise, write nothing")
		cfg, err := inv.parse(1, 2)
		if err != nil {
			return err
		}
		keysPath, msgsPath, err := pybPaths(inv.args)
		if err != nil {
			return err
		}
		if *user == "" {
			return fmt.Errorf("%w: --user is required", errUsage)
		}
		plan, err := readPyb(ctx, cfg, keysPath, msgsPath)
		if err != nil {
			return err
		}
		// PyBitmessage holds singleton.lock in its directory while it runs
		// (and leaves it after a crash).
		if _, err := os.Stat(filepath.Join(filepath.Dir(keysPath), "singleton.lock")); err == nil {
			plan.notes = append(plan.notes, "singleton.lock is in PyBitmessage's directory: if PyBitmessage is running, "+
				"what it receives from now on is not imported (stop it and import again: nothing is imported twice)")
		}
		return withOwner(ctx, inv, cfg, *user, func(st mailmap.Store, u mailmap.User) error {
			if err := plan.check(ctx, st, u); err != nil {
				return err
			}
			if *dryRun {
				plan.summary(inv.stdout, u, true)
				return nil
			}
			if err := plan.write(ctx, st, u); err != nil {
				return err
			}
			plan.summary(inv.stdout, u, false)
			return nil
		})
	},
}

// pybPaths finds keys.dat and messages.dat from the arguments: a directory
// (messages.dat optional in it), or the files.
func pybPaths(args []string) (keys, msgs string, err error) {
	if len(args) == 1 {
		fi, err := os.Stat(args[0])
		if err != nil {
			return "", "", err
		}
		if fi.IsDir() {
			keys = filepath.Join(args[0], "keys.dat")
			if _, err := os.Stat(keys); err != nil {
				return "", "", fmt.Errorf("%s has no keys.dat: %w", args[0], err)
			}
			msgs = filepath.Join(args[0], "messages.dat")
			if _, err := os.Stat(msgs); errors.Is(err, os.ErrNotExist) {
				msgs = ""
			}
			return keys, msgs, nil
		}
		return args[0], "", nil
	}
	for _, p := range args {
		if _, err := os.Stat(p); err != nil {
			return "", "", err
		}
	}
	return args[0], args[1], nil
}

// pybPlan is everything an import will write, checked before any of it is.
type pybPlan struct {
	domain string
	net    struct{ ntpb, extra uint64 }

	ids      []pybIdentity
	settings *iniSection
	msgs     *pybMessages // nil without messages.dat

	// Filled by check.
	newIDs        []mailmap.Identity
	presentIDs    int
	mails         []pybMail
	outbox        []mailmap.OutboxItem
	contacts      []mailmap.Contact
	presentCont   int
	subs          []mailmap.Subscription
	presentSubs   int
	lists         []mailmap.ListEntry
	presentLists  int
	listMode      mailmap.ListKind // PyBitmessage's blackwhitelist; "" without messages.dat
	skipped       []string
	notes         []string
	outboxAlready int
	res           mailmap.ImportResult // what write wrote
}

// pybMail is one message to file.
type pybMail struct {
	folder  string
	special string // the folder's special use, for one bmgate creates
	key     []byte // DeliverOnce key
	msgID   string // its Message-ID
	raw     []byte
	flags   []string
	date    time.Time
}

func readPyb(ctx context.Context, cfg Config, keysPath, msgsPath string) (*pybPlan, error) {
	p := &pybPlan{domain: cfg.Domain}
	if n := cfg.NetworkParams(); n != nil {
		p.net.ntpb, p.net.extra = n.NonceTrialsPerByte, n.ExtraBytes
	}
	data, err := os.ReadFile(keysPath)
	if err != nil {
		return nil, fmt.Errorf("read keys.dat: %w", err)
	}
	ids, settings, problems, err := parseKeysDat(data, p.net.ntpb, p.net.extra)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keysPath, err)
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%s: nothing imported, %d identit%s refused:\n  %s", keysPath, len(problems),
			plural(len(problems), "y", "ies"), strings.Join(problems, "\n  "))
	}
	if v, ok := settings.get("keysencrypted"); ok {
		if b, _ := pybBool(v); b {
			return nil, fmt.Errorf("%s: its keys are encrypted (keysencrypted = true), which PyBitmessage 0.6 never implemented; nothing imported", keysPath)
		}
	}
	p.ids, p.settings = ids, settings
	if msgsPath != "" {
		if p.msgs, err = readMessagesDat(ctx, msgsPath); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// check compares the plan with the store, decides what is new, builds
// every mail, and refuses the whole import when an identity belongs to
// another user. It writes nothing.
func (p *pybPlan) check(ctx context.Context, st mailmap.Store, u mailmap.User) error {
	own := map[string]mailmap.Identity{}
	mine, err := st.Identities(ctx, u.ID)
	if err != nil {
		return fmt.Errorf("list identities: %w", err)
	}
	for _, id := range mine {
		own[id.Address] = id
	}
	labels := map[string]string{} // address → label of the user's identities after the import
	kinds := map[string]mailmap.IdentityKind{}
	for _, id := range mine {
		labels[id.Address], kinds[id.Address] = id.Label, id.Kind
	}
	var refused []string
	for _, pi := range p.ids {
		kind := mailmap.KindNormal
		if pi.Chan {
			kind = mailmap.KindChan
		}
		others, err := st.IdentitiesByAddress(ctx, pi.Address)
		if err != nil {
			return fmt.Errorf("look up %s: %w", pi.Address, err)
		}
		for _, o := range others {
			if o.UserID != u.ID && (o.Kind != mailmap.KindChan || kind != mailmap.KindChan) {
				owner := fmt.Sprintf("user #%d", o.UserID)
				if ou, err := st.User(ctx, o.UserID); err == nil {
					owner = fmt.Sprintf("user %q", ou.Name)
				}
				refused = append(refused, fmt.Sprintf("%s belongs to %s", pi.Address, owner))
			}
		}
		if _, ok := own[pi.Address]; ok {
			p.presentIDs++
			continue
		}
		m := mailmap.Identity{
			UserID:             u.ID,
			Address:            pi.Address,
			Label:              oneLineLabel(pi.Label),
			Kind:               kind,
			SigningKey:         pi.Signing,
			EncryptionKey:      pi.Encryption,
			PublishPubkey:      kind == mailmap.KindNormal,
			NonceTrialsPerByte: pi.NonceTrials,
			ExtraBytes:         pi.ExtraBytes,
			LastPubkeySent:     pi.LastPubkeySent,
		}
		if kind == mailmap.KindChan {
			// PyBitmessage labels a chan "[chan] <passphrase>". When the
			// passphrase gives the address it is the chan's passphrase:
			// bmgate keeps it sealed and never in a label.
			name, isPP := strings.CutPrefix(pi.Label, "[chan] ")
			if a, err := address.Decode(pi.Address); err == nil && isPP && name != "" {
				if _, err := identity.JoinChan(name, a); err == nil {
					m.ChanPassphrase = name
					m.Label = mailmap.DefaultChanName(pi.Address)
				}
			}
			if m.ChanPassphrase == "" {
				p.notes = append(p.notes, fmt.Sprintf("chan %s: its label is not its passphrase, so bmgate has the keys only (posts work; joining again needs the passphrase)", pi.Address))
			}
			// Each chan of a user has a folder of its own (as chan join
			// makes sure).
			folder := gateway.ChanFolder(m.Label, m.Address)
			for addr, l := range labels {
				if kinds[addr] == mailmap.KindChan && (l == m.Label || gateway.ChanFolder(l, addr) == folder) {
					p.notes = append(p.notes, fmt.Sprintf("chan %s: named %s, since another chan of %s is named %q", pi.Address,
						mailmap.DefaultChanName(pi.Address), u.Name, m.Label))
					m.Label = mailmap.DefaultChanName(pi.Address)
					break
				}
			}
		}
		if pi.MailingList && kind != mailmap.KindChan {
			// bmgate address set … mailinglist: the same relaying.
			m.MailingList, m.MailingListName = true, pi.MailingListName
			p.notes = append(p.notes, fmt.Sprintf("%s is a PyBitmessage mailing list (%q): it stays one, every msg it receives is broadcast again (bmgate address set … mailinglist off stops that)", pi.Address, pi.MailingListName))
		}
		if !pi.Enabled {
			p.notes = append(p.notes, fmt.Sprintf("%s is disabled in keys.dat: bmgate has no disabled addresses, it is imported active (delete it with bmgate if unwanted)", pi.Address))
		}
		if pi.Decoy {
			p.notes = append(p.notes, fmt.Sprintf("%s is a decoy in keys.dat: bmgate has no decoys, it is imported as a normal address", pi.Address))
		}
		p.newIDs = append(p.newIDs, m)
		labels[m.Address], kinds[m.Address] = m.Label, m.Kind
	}
	if len(refused) > 0 {
		return fmt.Errorf("nothing imported: %s", strings.Join(refused, "; "))
	}
	if p.msgs == nil {
		return nil
	}
	if err := p.checkLists(ctx, st, u); err != nil {
		return err
	}
	return p.checkMail(ctx, st, u, labels, kinds)
}

func oneLineLabel(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > 1024 {
		s = strings.ToValidUTF8(s[:1024], "")
	}
	return s
}

// checkLists plans the subscriptions and contacts, and reports the black
// and white lists.
func (p *pybPlan) checkLists(ctx context.Context, st mailmap.Store, u mailmap.User) error {
	subs, err := st.Subscriptions(ctx, u.ID)
	if err != nil {
		return fmt.Errorf("list subscriptions: %w", err)
	}
	have := map[string]bool{}
	for _, s := range subs {
		have[s.Address] = true
	}
	for _, s := range p.msgs.Subscriptions {
		a, err := address.Decode(s.Address)
		switch {
		case err != nil:
			p.skipped = append(p.skipped, fmt.Sprintf("subscription %q (%s): %v", s.Label, s.Address, err))
		case !s.Enabled:
			p.skipped = append(p.skipped, fmt.Sprintf("subscription %q (%s): disabled in PyBitmessage", s.Label, s.Address))
		case have[a.String()]:
			p.presentSubs++
		default:
			have[a.String()] = true
			p.subs = append(p.subs, mailmap.Subscription{UserID: u.ID, Address: a.String(), Label: oneLineLabel(s.Label)})
		}
	}

	contacts, err := st.Contacts(ctx, u.ID)
	if err != nil {
		return fmt.Errorf("list contacts: %w", err)
	}
	aliases := map[string]string{} // alias → address
	for _, c := range contacts {
		aliases[c.Alias] = c.Address
	}
	for _, e := range p.msgs.AddressBook {
		a, err := address.Decode(e.Address)
		if err != nil {
			p.skipped = append(p.skipped, fmt.Sprintf("address book entry %q (%s): %v", e.Label, e.Address, err))
			continue
		}
		local := aliasLocal(e.Label)
		if local == "" {
			p.skipped = append(p.skipped, fmt.Sprintf("address book entry %q (%s): its label gives no mail name", e.Label, e.Address))
			continue
		}
		// The first free alias among local, local-2, local-3…; one that
		// already names this address means the entry is there.
		for n := 1; ; n++ {
			alias := local + "@" + strings.ToLower(p.domain)
			if n > 1 {
				alias = fmt.Sprintf("%s-%d@%s", local, n, strings.ToLower(p.domain))
			}
			if got, ok := aliases[alias]; ok {
				if got == a.String() {
					p.presentCont++
					break
				}
				continue
			}
			aliases[alias] = a.String()
			p.contacts = append(p.contacts, mailmap.Contact{UserID: u.ID, Alias: alias, Address: a.String()})
			break
		}
	}
	return p.checkSenderLists(ctx, st, u)
}

// checkSenderLists plans the black and white lists and the mode
// (blackwhitelist in keys.dat, black when unset): the user's lists become
// PyBitmessage's, entries already there counted.
func (p *pybPlan) checkSenderLists(ctx context.Context, st mailmap.Store, u mailmap.User) error {
	existing, err := st.ListEntries(ctx, u.ID)
	if err != nil {
		return fmt.Errorf("read sender lists: %w", err)
	}
	have := map[mailmap.ListKind]map[string]bool{mailmap.Blacklist: {}, mailmap.Whitelist: {}}
	for _, e := range existing {
		have[e.Kind][e.Address] = true
	}
	for _, l := range []struct {
		kind mailmap.ListKind
		rows []pybListRow
	}{{mailmap.Blacklist, p.msgs.Blacklist}, {mailmap.Whitelist, p.msgs.Whitelist}} {
		for _, r := range l.rows {
			a, err := address.Decode(r.Address)
			switch {
			case err != nil:
				p.skipped = append(p.skipped, fmt.Sprintf("%slist entry %q (%s): %v", l.kind, r.Label, r.Address, err))
			case have[l.kind][a.String()]:
				p.presentLists++
			default:
				have[l.kind][a.String()] = true
				p.lists = append(p.lists, mailmap.ListEntry{UserID: u.ID, Kind: l.kind, Address: a.String(),
					Label: oneLineLabel(r.Label), Enabled: r.Enabled})
			}
		}
	}
	p.listMode = mailmap.Blacklist
	if mode, _ := p.settings.get("blackwhitelist"); mailmap.ListKind(mode) == mailmap.Whitelist {
		p.listMode = mailmap.Whitelist
		p.notes = append(p.notes, "PyBitmessage used its whitelist: so does bmgate for "+u.Name+
			" now, only senders on it get through (bmgate list mode --user "+u.Name+" black to change that)")
	}
	return nil
}

// aliasLocal makes a mail local part of an address book label: lower
// case letters and digits, other runs of characters become one '.'.
func aliasLocal(label string) string {
	var b strings.Builder
	dot := false
	for _, r := range strings.ToLower(label) {
		if t, ok := latinASCII[r]; ok {
			if dot && b.Len() > 0 {
				b.WriteByte('.')
			}
			dot = false
			b.WriteString(t)
			continue
		}
		switch {
		case r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_':
			if dot && b.Len() > 0 {
				b.WriteByte('.')
			}
			dot = false
			b.WriteRune(r)
		default:
			dot = true
		}
	}
	s := b.String()
	if len(s) > 64 {
		s = strings.TrimRight(s[:64], ".")
	}
	if strings.HasPrefix(s, "bm-") || s == gateway.BroadcastLocalPart {
		s = "contact." + s // would read as a Bitmessage address or the broadcast address
	}
	return s
}

// latinASCII spells the lower-case Latin letters with diacritics of
// Latin-1 and Latin Extended-A in ASCII, for aliases ("Zoë" → zoe).
var latinASCII = func() map[rune]string {
	m := map[rune]string{'ß': "ss", 'æ': "ae", 'œ': "oe", 'ø': "o", 'ð': "d", 'þ': "th", 'ł': "l", 'đ': "d", 'ħ': "h", 'ı': "i", 'ŀ': "l", 'ŋ': "n", 'ĸ': "k"}
	for base, letters := range map[string]string{
		"a": "àáâãäåāăą", "c": "çćĉċč", "d": "ď", "e": "èéêëēĕėęě", "g": "ĝğġģ", "h": "ĥ", "i": "ìíîïĩīĭį",
		"j": "ĵ", "k": "ķ", "l": "ĺļľ", "n": "ñńņňŉ", "o": "òóôõöōŏő", "r": "ŕŗř", "s": "śŝşšſ", "t": "ţťŧ",
		"u": "ùúûüũūŭůűų", "w": "ŵ", "y": "ýÿŷ", "z": "źżž",
	} {
		for _, r := range letters {
			if r >= 0x80 {
				m[r] = base
			}
		}
	}
	return m
}()

// Sent statuses of PyBitmessage 0.6.3.2 (class_singleWorker, class_objectProcessor).
var (
	// The message left this node; an ack may still come.
	pybAwaitingAck = "msgsent"
	// Sent, and nothing more will happen.
	pybDone = []string{"msgsentnoackexpected", "ackreceived", "broadcastsent"}
)

// checkMail builds every mail of the plan and decides which are already
// there.
func (p *pybPlan) checkMail(ctx context.Context, st mailmap.Store, u mailmap.User, labels map[string]string, kinds map[string]mailmap.IdentityKind) error {
	subLabel := map[string]string{}
	for _, s := range p.msgs.Subscriptions {
		subLabel[s.Address] = oneLineLabel(s.Label)
	}
	build := func(from, to string, inv [32]byte, subject, body string, date time.Time) ([]byte, string, error) {
		in := gateway.Incoming{Domain: p.domain, From: from, To: to, Subject: subject, Body: body, Date: date,
			InvHash: inv, Kind: gateway.IncomingMsg}
		switch {
		case to == broadcastTo:
			in.Kind, in.To = gateway.IncomingBroadcast, ""
		case kinds[to] == mailmap.KindChan:
			in.Kind, in.ChanLabel = gateway.IncomingChan, labels[to]
		}
		raw, err := gateway.BuildIncoming(in)
		return raw, hex.EncodeToString(inv[:]) + "@" + p.domain, err
	}
	for _, r := range p.msgs.Inbox {
		what := fmt.Sprintf("inbox message %x from %s", r.MsgID, r.From)
		if r.problem != "" {
			p.skipped = append(p.skipped, what+": "+r.problem)
			continue
		}
		var inv [32]byte
		key := r.MsgID
		if len(r.MsgID) == 32 {
			copy(inv[:], r.MsgID)
		} else {
			inv = sha256.Sum256(append([]byte("pybitmessage inbox\x00"), r.MsgID...))
			key = inv[:]
		}
		raw, msgID, err := build(r.From, r.To, inv, r.Subject, r.Body, r.Received)
		if err != nil {
			p.skipped = append(p.skipped, fmt.Sprintf("%s: %v", what, err))
			continue
		}
		m := pybMail{folder: "INBOX", key: key, msgID: msgID, raw: raw, date: r.Received}
		switch {
		case r.Folder == "trash":
			m.folder, m.special = "Trash", mailmap.SpecialTrash
		case r.To == broadcastTo:
			if l, ok := subLabel[r.From]; ok {
				m.folder = gateway.SubscriptionFolder(l, r.From)
			}
		case kinds[r.To] == mailmap.KindChan:
			m.folder = gateway.ChanFolder(labels[r.To], r.To)
		}
		if r.Read {
			m.flags = []string{`\Seen`}
		}
		p.mails = append(p.mails, m)
	}
	for _, r := range p.msgs.Sent {
		what := fmt.Sprintf("sent message %q to %s", r.Subject, r.To)
		if r.problem != "" {
			p.skipped = append(p.skipped, what+": "+r.problem)
			continue
		}
		if len(r.AckData) == 0 {
			p.skipped = append(p.skipped, what+": no ackdata (the row's key)")
			continue
		}
		// The Message-ID of a sent message is its inventory hash's, as
		// the recipient's bmgate would make it; a message not yet sent has
		// none, so one is made of its ackdata.
		var inv [32]byte
		if len(r.MsgID) == 32 {
			copy(inv[:], r.MsgID)
		} else {
			inv = sha256.Sum256(append([]byte("pybitmessage sent\x00"), r.AckData...))
		}
		key := sha256.Sum256(append([]byte("pybitmessage sent\x00"), r.AckData...))
		raw, msgID, err := build(r.From, r.To, inv, r.Subject, r.Body, r.SentTime)
		if err != nil {
			p.skipped = append(p.skipped, fmt.Sprintf("%s: %v", what, err))
			continue
		}
		m := pybMail{folder: "Sent", special: mailmap.SpecialSent, key: key[:], msgID: msgID, raw: raw,
			date: r.SentTime, flags: []string{`\Seen`}}
		sent := r.Status == pybAwaitingAck || slices.Contains(pybDone, r.Status)
		switch {
		case r.Folder == "trash":
			m.folder, m.special = "Trash", mailmap.SpecialTrash
		case !sent:
			m.folder, m.special = "Drafts", mailmap.SpecialDrafts
			p.notes = append(p.notes, fmt.Sprintf("%s was not sent by PyBitmessage (status %s): filed in Drafts, send it again from your mail client", what, r.Status))
		}
		if r.Status == "ackreceived" {
			m.flags = append(m.flags, "$Delivered")
		}
		p.mails = append(p.mails, m)
		if r.Status == pybAwaitingAck {
			it, err := p.outboxItem(u, r, msgID, kinds)
			if err != nil {
				p.skipped = append(p.skipped, fmt.Sprintf("%s: not put in the outbox: %v", what, err))
				continue
			}
			switch _, err := st.OutboxByAckData(ctx, r.AckData); {
			case err == nil:
				p.outboxAlready++
			case errors.Is(err, mailmap.ErrNotFound):
				p.outbox = append(p.outbox, it)
			default:
				return fmt.Errorf("look up outbox: %w", err)
			}
		}
	}
	// A message sent to one's own address is in PyBitmessage twice, a sent
	// and a received row with one msgid (so one Message-ID here): when both
	// go to one folder (Trash), one copy is enough.
	seen := map[string]bool{}
	kept := p.mails[:0]
	for _, m := range p.mails {
		k := m.folder + "\x00" + m.msgID
		if seen[k] {
			p.notes = append(p.notes, fmt.Sprintf("message <%s> is both a sent and a received row in %s: filed once", m.msgID, m.folder))
			continue
		}
		seen[k] = true
		kept = append(kept, m)
	}
	p.mails = kept
	return nil
}

// outboxItem is a sent message that awaits its ack: in the outbox in state
// sent, with PyBitmessage's ackdata, so the ack completes it, and resent by
// bmgate (doubling the TTL) when none comes, as PyBitmessage would.
func (p *pybPlan) outboxItem(u mailmap.User, r pybSentRow, msgID string, kinds map[string]mailmap.IdentityKind) (mailmap.OutboxItem, error) {
	if _, err := address.Decode(r.To); err != nil {
		return mailmap.OutboxItem{}, err
	}
	if kinds[r.From] == "" {
		return mailmap.OutboxItem{}, fmt.Errorf("its sender %s is not in keys.dat", r.From)
	}
	ttl := r.TTL
	if ttl <= 0 {
		ttl = 4 * 24 * time.Hour
	}
	next := r.SleepTill
	if next.IsZero() {
		next = r.LastActionTime.Add(ttl)
	}
	return mailmap.OutboxItem{
		UserID:      u.ID,
		FromAddress: r.From,
		ToAddress:   r.To,
		Kind:        mailmap.OutboxMsg,
		Subject:     r.Subject,
		Body:        r.Body,
		Encoding:    2,
		MessageID:   msgID,
		State:       mailmap.OutboxSent,
		Attempts:    int(max(r.Retries, 1)),
		NextAttempt: next,
		TTL:         ttl,
		AckData:     r.AckData,
		InvHash:     r.MsgID,
		CreatedAt:   r.SentTime,
		SentAt:      r.LastActionTime,
	}, nil
}

// write stores the plan in one transaction (Store.Import): all of it, or
// nothing. What is already there (identities by address, messages by
// PyBitmessage's msgid or ackdata and by Message-ID, contacts by alias,
// subscriptions by address, outbox rows by ackdata) is counted, not
// written again.
func (p *pybPlan) write(ctx context.Context, st mailmap.Store, u mailmap.User) error {
	b := mailmap.ImportBatch{UserID: u.ID, Identities: p.newIDs, Subscriptions: p.subs, Contacts: p.contacts, Outbox: p.outbox,
		ListEntries: p.lists, ListMode: p.listMode}
	for _, id := range p.newIDs {
		if id.Kind == mailmap.KindChan {
			b.Folders = append(b.Folders, mailmap.ImportFolder{Name: gateway.ChanFolder(id.Label, id.Address)})
		}
	}
	for _, s := range p.subs {
		b.Folders = append(b.Folders, mailmap.ImportFolder{Name: gateway.SubscriptionFolder(s.Label, s.Address)})
	}
	for _, m := range p.mails {
		b.Messages = append(b.Messages, mailmap.ImportMessage{Folder: mailmap.ImportFolder{Name: m.folder, SpecialUse: m.special},
			Key: m.key, Raw: m.raw, Flags: m.flags, Date: m.date})
	}
	res, err := st.Import(ctx, b)
	if err != nil {
		return fmt.Errorf("nothing imported: %w", err)
	}
	p.res = res
	return nil
}

// summary prints what the import did (or, with dry, would do).
func (p *pybPlan) summary(w io.Writer, u mailmap.User, dry bool) {
	verb := "imported"
	// n is what was written (dry: what would be) and what was there already.
	n := func(planned, written, present, presentThen int) (int, int) {
		if dry {
			return planned, present
		}
		return written, present + presentThen
	}
	if dry {
		verb = "would import"
	}
	kinds := map[string]int{}
	for _, id := range p.newIDs {
		kinds[string(id.Kind)]++
	}
	ids, idsThere := n(len(p.newIDs), p.res.Identities, p.presentIDs, p.res.IdentitiesPresent)
	fmt.Fprintf(w, "%s for %s: %d identit%s (%d address%s, %d chan%s), %d already there\n", verb, u.Name,
		ids, plural(ids, "y", "ies"), kinds["normal"], plural(kinds["normal"], "", "es"),
		kinds["chan"], plural(kinds["chan"], "", "s"), idsThere)
	if p.msgs == nil {
		fmt.Fprintf(w, "no messages.dat: messages, subscriptions and the address book not imported\n")
	} else {
		if dry {
			folders := map[string]int{}
			for _, m := range p.mails {
				folders[m.folder]++
			}
			fmt.Fprintf(w, "messages (some may be there already):\n")
			for _, f := range sortedKeys(folders) {
				fmt.Fprintf(w, "  %s: %d\n", f, folders[f])
			}
		} else {
			fmt.Fprintf(w, "messages:\n")
			names := sortedKeys(p.res.Filed)
			for _, f := range sortedKeys(p.res.Present) {
				if !slices.Contains(names, f) {
					names = append(names, f)
				}
			}
			slices.Sort(names)
			for _, f := range names {
				fmt.Fprintf(w, "  %s: %d new, %d already there\n", f, p.res.Filed[f], p.res.Present[f])
			}
		}
		o, oThere := n(len(p.outbox), p.res.Outbox, p.outboxAlready, p.res.OutboxPresent)
		fmt.Fprintf(w, "outbox (awaiting an ack): %d new, %d already there\n", o, oThere)
		sb, sbThere := n(len(p.subs), p.res.Subscriptions, p.presentSubs, p.res.SubscriptionsPresent)
		fmt.Fprintf(w, "subscriptions: %d new, %d already there\n", sb, sbThere)
		c, cThere := n(len(p.contacts), p.res.Contacts, p.presentCont, p.res.ContactsPresent)
		fmt.Fprintf(w, "contacts: %d new, %d already there\n", c, cThere)
		l, lThere := n(len(p.lists), p.res.ListEntries, p.presentLists, p.res.ListEntriesPresent)
		fmt.Fprintf(w, "sender lists (%slist mode): %d new, %d already there\n", p.listMode, l, lThere)
		for _, c := range p.contacts {
			fmt.Fprintf(w, "  %s → %s\n", c.Alias, c.Address)
		}
	}
	if len(p.notes) > 0 {
		fmt.Fprintf(w, "notes:\n")
		for _, n := range p.notes {
			fmt.Fprintf(w, "  %s\n", n)
		}
	}
	if len(p.skipped) > 0 {
		fmt.Fprintf(w, "skipped:\n")
		for _, s := range p.skipped {
			fmt.Fprintf(w, "  %s\n", s)
		}
	}
}

func sortedKeys(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

var cmdExportKeys = &command{
	name: "export keys.dat",
	args: "--user NAME [-o FILE]",
	summary: "Write a PyBitmessage 0.6 keys.dat holding the user's identities (addresses and chans, with labels, " +
		"difficulty and private keys), to standard output or FILE (mode 0600). It holds private keys: keep it safe.",
	run: func(ctx context.Context, inv *invocation) error {
		user := inv.fs.String("user", "", "the `NAME` of the user whose identities to export")
		out := inv.fs.String("o", "", "write to `FILE` (created with mode 0600; an existing file is refused)")
		cfg, err := inv.parse(0, 0)
		if err != nil {
			return err
		}
		return withOwner(ctx, inv, cfg, *user, func(st mailmap.Store, u mailmap.User) error {
			ids, err := st.Identities(ctx, u.ID)
			if err != nil {
				return fmt.Errorf("list identities: %w", err)
			}
			data := writeKeysDat(ids)
			if *out == "" {
				_, err := inv.stdout.Write(data)
				return err
			}
			f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return err
			}
			if _, err := f.Write(data); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			fmt.Fprintf(inv.stderr, "wrote %d identit%s of %s to %s\n", len(ids), plural(len(ids), "y", "ies"), u.Name, *out)
			return nil
		})
	},
}

// writeKeysDat writes a keys.dat that PyBitmessage 0.6.3.2 loads as an
// existing configuration.
func writeKeysDat(ids []mailmap.Identity) []byte {
	var b strings.Builder
	b.WriteString("[bitmessagesettings]\n")
	for _, kv := range pybSettings {
		fmt.Fprintf(&b, "%s = %s\n", kv[0], kv[1])
	}
	fmt.Fprintf(&b, "identiconsuffix = %s\n", identiconSuffix())
	for _, id := range ids {
		label := id.Label
		if id.Kind == mailmap.KindChan && id.ChanPassphrase != "" {
			// PyBitmessage's chans are labelled by their passphrase.
			label = "[chan] " + id.ChanPassphrase
		}
		fmt.Fprintf(&b, "\n[%s]\n", id.Address)
		fmt.Fprintf(&b, "label = %s\n", iniValue(label))
		b.WriteString("enabled = true\ndecoy = false\n")
		if id.Kind == mailmap.KindChan {
			b.WriteString("chan = true\n")
		}
		if id.MailingList {
			fmt.Fprintf(&b, "mailinglist = true\nmailinglistname = %s\n", iniValue(id.MailingListName))
		}
		fmt.Fprintf(&b, "noncetrialsperbyte = %d\n", id.NonceTrialsPerByte)
		fmt.Fprintf(&b, "payloadlengthextrabytes = %d\n", id.ExtraBytes)
		fmt.Fprintf(&b, "privsigningkey = %s\n", identity.EncodeWIF(id.SigningKey))
		fmt.Fprintf(&b, "privencryptionkey = %s\n", identity.EncodeWIF(id.EncryptionKey))
		if !id.LastPubkeySent.IsZero() {
			fmt.Fprintf(&b, "lastpubkeysendtime = %d\n", id.LastPubkeySent.Unix())
		} else if id.Kind == mailmap.KindNormal {
			b.WriteString("lastpubkeysendtime = 0\n")
		}
	}
	return []byte(b.String())
}

// identiconSuffix is the twelve random characters PyBitmessage salts its
// identicons with (helper_startup.loadConfig).
func identiconSuffix() string {
	const alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
	var buf [12]byte
	if _, err := rand.Read(buf[:]); err != nil {
		panic(err)
	}
	for i, c := range buf {
		buf[i] = alphabet[int(c)%len(alphabet)]
	}
	return string(buf[:])
}
