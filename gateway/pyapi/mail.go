package pyapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bmgate/bmgate/bmcore/object"
	"github.com/bmgate/bmgate/gateway"
	"github.com/bmgate/bmgate/mailmap"
	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // bodies in any charset
	"github.com/emersion/go-message/mail"
)

// broadcastTo is the toAddress of broadcasts, as PyBitmessage writes it.
const broadcastTo = "[Broadcast subscribers]"

// The inbox: mail that came over Bitmessage (it carries
// X-Bitmessage-Inventory) in INBOX, Chans/* and Subscriptions/*.

type inboxMsg struct {
	mailboxID int64
	uid       uint32
	msgid     []byte
	to, from  string
	subject   string
	body      string
	encoding  int64
	received  time.Time
	read      bool
}

func inboxFolder(name string) bool {
	return name == "INBOX" || strings.HasPrefix(name, gateway.ChanFolderPrefix+"/") ||
		strings.HasPrefix(name, gateway.SubscriptionFolderPrefix+"/")
}

// maxInboxBytes bounds the mail one inbox listing reads.
const maxInboxBytes = 512 << 20

func (s *Server) inbox(ctx context.Context, u mailmap.User) ([]inboxMsg, error) {
	boxes, err := s.cfg.Store.Mailboxes(ctx, u.ID)
	if err != nil {
		return nil, err
	}
	var out []inboxMsg
	var total int64
	for _, mb := range boxes {
		if !inboxFolder(mb.Name) || mb.SpecialUse == mailmap.SpecialTrash {
			continue
		}
		msgs, err := s.cfg.Store.Messages(ctx, u.ID, mb.ID)
		if err != nil {
			return nil, err
		}
		for chunk := range slices.Chunk(msgs, 200) {
			uids := make([]uint32, len(chunk))
			for i, m := range chunk {
				uids[i] = m.UID
				total += m.Size
			}
			if total > maxInboxBytes {
				return nil, fmt.Errorf("the inbox holds more than %d MiB; list fewer messages", maxInboxBytes>>20)
			}
			raws, err := s.cfg.Store.MessagesRaw(ctx, u.ID, mb.ID, uids)
			if err != nil {
				return nil, err
			}
			for _, m := range chunk {
				raw, ok := raws[m.UID]
				if !ok {
					continue
				}
				im, ok := s.parseInbox(raw)
				if !ok {
					continue
				}
				im.mailboxID, im.uid, im.received = mb.ID, m.UID, m.InternalDate
				im.read = slices.Contains(m.Flags, `\Seen`)
				out = append(out, im)
			}
		}
	}
	slices.SortStableFunc(out, func(a, b inboxMsg) int { return a.received.Compare(b.received) })
	return out, nil
}

// parseInbox reads what the API shows of a delivered mail; ok is false
// for a mail that did not come over Bitmessage.
func (s *Server) parseInbox(raw []byte) (inboxMsg, bool) {
	e, err := message.Read(bytes.NewReader(raw))
	if e == nil {
		return inboxMsg{}, false
	}
	_ = err // an unknown charset still gives the header
	h := mail.Header{Header: e.Header}
	inv, err := hex.DecodeString(strings.TrimSpace(h.Get("X-Bitmessage-Inventory")))
	if err != nil || len(inv) != 32 {
		return inboxMsg{}, false
	}
	im := inboxMsg{msgid: inv, from: strings.TrimSpace(h.Get("X-Bitmessage-Sender")), encoding: 2}
	if enc, err := strconv.ParseInt(strings.TrimSpace(h.Get("X-Bitmessage-Encoding")), 10, 64); err == nil {
		im.encoding = enc
	}
	if h.Get("X-Bitmessage-Kind") == string(gateway.IncomingBroadcast) {
		im.to = broadcastTo
	} else if to, err := h.AddressList("To"); err == nil && len(to) > 0 {
		if bm, err := gateway.MailToBM(to[0].Address, s.cfg.Domain); err == nil {
			im.to = bm
		}
	}
	if im.from == "" {
		if from, err := h.AddressList("From"); err == nil && len(from) > 0 {
			im.from, _ = gateway.MailToBM(from[0].Address, s.cfg.Domain)
		}
	}
	if subj, err := h.Subject(); err == nil {
		im.subject = subj
	} else {
		im.subject = h.Get("Subject")
	}
	im.body = strings.ReplaceAll(textBody(e, 0), "\r\n", "\n")
	return im, true
}

// textBody returns the first text/plain part of a message, decoded.
func textBody(e *message.Entity, depth int) string {
	if depth > 8 {
		return ""
	}
	if mr := e.MultipartReader(); mr != nil {
		for {
			p, err := mr.NextPart()
			if err != nil {
				return ""
			}
			if t := textBody(p, depth+1); t != "" {
				return t
			}
		}
	}
	t, _, _ := e.Header.ContentType()
	if t != "" && t != "text/plain" {
		return ""
	}
	b, _ := io.ReadAll(io.LimitReader(e.Body, 4<<20))
	return string(b)
}

func (im inboxMsg) json(withRead bool) obj {
	o := obj{{"msgid", hex.EncodeToString(im.msgid)}, {"toAddress", im.to}, {"fromAddress", im.from},
		{"subject", b64(im.subject)}, {"message", b64(im.body)}, {"encodingType", im.encoding},
		{"receivedTime", strconv.FormatInt(im.received.Unix(), 10)}}
	if withRead {
		read := 0
		if im.read {
			read = 1
		}
		o = append(o, kv{"read", read})
	}
	return o
}

func (s *Server) getAllInboxMessages(ctx context.Context, u mailmap.User, _ []any) (any, error) {
	msgs, err := s.inbox(ctx, u)
	if err != nil {
		return nil, err
	}
	items := make([]obj, len(msgs))
	for i, m := range msgs {
		items[i] = m.json(true)
	}
	return framed("inboxMessages", items), nil
}

func (s *Server) getAllInboxMessageIds(ctx context.Context, u mailmap.User, _ []any) (any, error) {
	msgs, err := s.inbox(ctx, u)
	if err != nil {
		return nil, err
	}
	items := make([]obj, len(msgs))
	for i, m := range msgs {
		items[i] = obj{{"msgid", hex.EncodeToString(m.msgid)}}
	}
	return framed("inboxMessageIds", items), nil
}

func (s *Server) getInboxMessageById(ctx context.Context, u mailmap.User, p []any) (any, error) {
	if len(p) == 0 {
		return nil, apiErr(0, "I need parameters!")
	}
	id, err := decodeHex(p[0])
	if err != nil {
		return nil, err
	}
	var setRead *bool
	if len(p) >= 2 {
		b, ok := p[1].(bool)
		if !ok {
			return nil, apiErr(23, "Bool expected in readStatus, saw %s instead.", pyType(p[1]))
		}
		setRead = &b
	}
	msgs, err := s.inbox(ctx, u)
	if err != nil {
		return nil, err
	}
	var items []obj
	for _, m := range msgs {
		if !bytes.Equal(m.msgid, id) {
			continue
		}
		if setRead != nil && *setRead != m.read {
			op := mailmap.FlagsAdd
			if !*setRead {
				op = mailmap.FlagsRemove
			}
			if _, err := s.cfg.Store.UpdateFlags(ctx, u.ID, m.mailboxID, []uint32{m.uid}, op, []string{`\Seen`}); err != nil {
				return nil, err
			}
			m.read = *setRead
		}
		items = append(items, m.json(true))
		break
	}
	return framed("inboxMessage", items), nil
}

func (s *Server) getInboxMessagesByReceiver(ctx context.Context, u mailmap.User, p []any) (any, error) {
	if len(p) == 0 {
		return nil, apiErr(0, "I need parameters!")
	}
	to, err := str(p[0])
	if err != nil {
		return nil, err
	}
	msgs, err := s.inbox(ctx, u)
	if err != nil {
		return nil, err
	}
	var items []obj
	for _, m := range msgs {
		if m.to == to {
			items = append(items, m.json(false))
		}
	}
	return framed("inboxMessages", items), nil
}

// trashInbox moves the user's inbox messages with that msgid to Trash.
func (s *Server) trashInbox(ctx context.Context, u mailmap.User, id []byte) error {
	msgs, err := s.inbox(ctx, u)
	if err != nil {
		return err
	}
	var trash *mailmap.Mailbox
	for _, m := range msgs {
		if !bytes.Equal(m.msgid, id) {
			continue
		}
		if trash == nil {
			t, err := s.cfg.Store.MailboxBySpecialUse(ctx, u.ID, mailmap.SpecialTrash)
			if err != nil {
				return fmt.Errorf("find Trash: %w", err)
			}
			trash = &t
		}
		if _, _, err := s.cfg.Store.MoveMessages(ctx, u.ID, m.mailboxID, []uint32{m.uid}, trash.ID); err != nil && !errors.Is(err, mailmap.ErrNotFound) {
			return err
		}
	}
	return nil
}

func (s *Server) trashInboxMessage(ctx context.Context, u mailmap.User, p []any) (any, error) {
	if len(p) == 0 {
		return nil, apiErr(0, "I need parameters!")
	}
	id, err := decodeHex(p[0])
	if err != nil {
		return nil, err
	}
	if err := s.trashInbox(ctx, u, id); err != nil {
		return nil, err
	}
	return "Trashed inbox message (assuming message existed).", nil
}

func (s *Server) trashMessage(ctx context.Context, u mailmap.User, p []any) (any, error) {
	if len(p) == 0 {
		return nil, apiErr(0, "I need parameters!")
	}
	id, err := decodeHex(p[0])
	if err != nil {
		return nil, err
	}
	if err := s.trashInbox(ctx, u, id); err != nil {
		return nil, err
	}
	if err := s.trashSent(ctx, u, func(it mailmap.OutboxItem) bool { return len(id) > 0 && bytes.Equal(it.InvHash, id) }); err != nil {
		return nil, err
	}
	return "Trashed message (assuming message existed).", nil
}

// The sent list: the user's outbox rows.

// sentAckData is the ackdata the API shows for a row: the one it handed
// back, else the pipeline's.
func sentAckData(it mailmap.OutboxItem) []byte {
	if len(it.APIRef) > 0 {
		return it.APIRef
	}
	return it.AckData
}

// sentStatus is PyBitmessage's status of a sent row.
func sentStatus(it mailmap.OutboxItem) string {
	bc := it.Kind == mailmap.OutboxBroadcast
	switch it.State {
	case mailmap.OutboxQueued:
		if bc {
			return "broadcastqueued"
		}
		return "msgqueued"
	case mailmap.OutboxAwaitingPubkey:
		return "awaitingpubkey"
	case mailmap.OutboxDoingPoW:
		if bc {
			return "doingbroadcastpow"
		}
		return "doingmsgpow"
	case mailmap.OutboxSent:
		switch {
		case bc:
			return "broadcastsent"
		case it.Kind == mailmap.OutboxMsg && len(it.AckData) > 0:
			return "msgsent"
		}
		return "msgsentnoackexpected"
	case mailmap.OutboxAcked:
		return "ackreceived"
	case mailmap.OutboxFailed:
		return "msgfailed"
	}
	return "notfound"
}

func lastAction(it mailmap.OutboxItem) int64 {
	t := it.CreatedAt
	for _, x := range []time.Time{it.SentAt, it.AckedAt} {
		if x.After(t) {
			t = x
		}
	}
	return t.Unix()
}

func sentJSON(it mailmap.OutboxItem) obj {
	to := it.ToAddress
	if it.Kind == mailmap.OutboxBroadcast {
		to = broadcastTo
	}
	return obj{{"msgid", hex.EncodeToString(it.InvHash)}, {"toAddress", to}, {"fromAddress", it.FromAddress},
		{"subject", b64(it.Subject)}, {"message", b64(it.Body)}, {"encodingType", it.Encoding},
		{"lastActionTime", lastAction(it)}, {"status", sentStatus(it)}, {"ackData", hex.EncodeToString(sentAckData(it))}}
}

// sent returns the user's rows, by last action; trashed ones only with all.
func (s *Server) sent(ctx context.Context, u mailmap.User, all bool) ([]mailmap.OutboxItem, error) {
	rows, err := s.cfg.Store.UserOutbox(ctx, u.ID)
	if err != nil {
		return nil, err
	}
	if !all {
		rows = slices.DeleteFunc(rows, func(it mailmap.OutboxItem) bool { return it.Trashed })
	}
	slices.SortStableFunc(rows, func(a, b mailmap.OutboxItem) int { return int(lastAction(a) - lastAction(b)) })
	return rows, nil
}

func (s *Server) sentList(ctx context.Context, u mailmap.User, keep func(mailmap.OutboxItem) bool) ([]obj, error) {
	rows, err := s.sent(ctx, u, false)
	if err != nil {
		return nil, err
	}
	items := []obj{}
	for _, it := range rows {
		if keep == nil || keep(it) {
			items = append(items, sentJSON(it))
		}
	}
	return items, nil
}

func (s *Server) getAllSentMessages(ctx context.Context, u mailmap.User, _ []any) (any, error) {
	items, err := s.sentList(ctx, u, nil)
	if err != nil {
		return nil, err
	}
	return framed("sentMessages", items), nil
}

func (s *Server) getAllSentMessageIds(ctx context.Context, u mailmap.User, _ []any) (any, error) {
	rows, err := s.sent(ctx, u, false)
	if err != nil {
		return nil, err
	}
	items := make([]obj, len(rows))
	for i, it := range rows {
		items[i] = obj{{"msgid", hex.EncodeToString(it.InvHash)}}
	}
	return framed("sentMessageIds", items), nil
}

func (s *Server) getSentMessagesBySender(ctx context.Context, u mailmap.User, p []any) (any, error) {
	if len(p) == 0 {
		return nil, apiErr(0, "I need parameters!")
	}
	from, err := str(p[0])
	if err != nil {
		return nil, err
	}
	items, err := s.sentList(ctx, u, func(it mailmap.OutboxItem) bool { return it.FromAddress == from })
	if err != nil {
		return nil, err
	}
	return framed("sentMessages", items), nil
}

func (s *Server) getSentMessageById(ctx context.Context, u mailmap.User, p []any) (any, error) {
	if len(p) == 0 {
		return nil, apiErr(0, "I need parameters!")
	}
	id, err := decodeHex(p[0])
	if err != nil {
		return nil, err
	}
	rows, err := s.sent(ctx, u, true)
	if err != nil {
		return nil, err
	}
	var items []obj
	for _, it := range rows {
		if len(id) > 0 && bytes.Equal(it.InvHash, id) {
			items = append(items, sentJSON(it))
			break
		}
	}
	return framed("sentMessage", items), nil
}

// matchAck reports whether a row carries that ackdata: the full one
// (api_ref or the pipeline's), or with tail its last 32 bytes.
func matchAck(it mailmap.OutboxItem, ack []byte, tail bool) bool {
	for _, a := range [][]byte{it.APIRef, it.AckData} {
		if len(a) == 0 {
			continue
		}
		if bytes.Equal(a, ack) || (tail && len(a) >= 32 && bytes.Equal(a[len(a)-32:], ack)) {
			return true
		}
	}
	return false
}

func (s *Server) getSentMessageByAckData(ctx context.Context, u mailmap.User, p []any) (any, error) {
	if len(p) == 0 {
		return nil, apiErr(0, "I need parameters!")
	}
	ack, err := decodeHex(p[0])
	if err != nil {
		return nil, err
	}
	rows, err := s.sent(ctx, u, true)
	if err != nil {
		return nil, err
	}
	var items []obj
	for _, it := range rows {
		if len(ack) > 0 && matchAck(it, ack, len(ack) == 32) {
			items = append(items, sentJSON(it))
			break
		}
	}
	return framed("sentMessage", items), nil
}

func (s *Server) trashSent(ctx context.Context, u mailmap.User, match func(mailmap.OutboxItem) bool) error {
	rows, err := s.sent(ctx, u, false)
	if err != nil {
		return err
	}
	var ids []int64
	for _, it := range rows {
		if match(it) {
			ids = append(ids, it.ID)
		}
	}
	_, err = s.cfg.Store.TrashOutbox(ctx, u.ID, ids)
	return err
}

func (s *Server) trashSentMessage(ctx context.Context, u mailmap.User, p []any) (any, error) {
	if len(p) == 0 {
		return nil, apiErr(0, "I need parameters!")
	}
	id, err := decodeHex(p[0])
	if err != nil {
		return nil, err
	}
	if err := s.trashSent(ctx, u, func(it mailmap.OutboxItem) bool { return len(id) > 0 && bytes.Equal(it.InvHash, id) }); err != nil {
		return nil, err
	}
	return "Trashed sent message (assuming message existed).", nil
}

func (s *Server) trashSentMessageByAckData(ctx context.Context, u mailmap.User, p []any) (any, error) {
	if len(p) == 0 {
		return nil, apiErr(0, "I need parameters!")
	}
	ack, err := decodeHex(p[0])
	if err != nil {
		return nil, err
	}
	if err := s.trashSent(ctx, u, func(it mailmap.OutboxItem) bool { return len(ack) > 0 && matchAck(it, ack, false) }); err != nil {
		return nil, err
	}
	return "Trashed sent message (assuming message existed).", nil
}

func (s *Server) getStatus(ctx context.Context, u mailmap.User, p []any) (any, error) {
	if len(p) != 1 {
		return nil, apiErr(0, "I need one parameter!")
	}
	text, err := str(p[0])
	if err != nil {
		return nil, err
	}
	// PyBitmessage 0.6.3 wants 64 hex digits, though sendMessage hands
	// back 76 (the whole ackdata): both are taken.
	if len(text) != 64 && (len(text) < 76 || len(text) > 92) {
		return nil, apiErr(15, "The length of ackData should be 32 bytes (encoded in hex thus 64 characters).")
	}
	ack, err := decodeHex(text)
	if err != nil {
		return nil, err
	}
	rows, err := s.sent(ctx, u, true)
	if err != nil {
		return nil, err
	}
	for _, it := range rows {
		if matchAck(it, ack, len(ack) == 32) {
			return sentStatus(it), nil
		}
	}
	return "notfound", nil
}

// Sending.

// maxContent is PyBitmessage's bound on subject + message (error 27).
const maxContent = 1<<18 - 500

func (s *Server) sendMessage(ctx context.Context, u mailmap.User, p []any) (any, error) {
	if len(p) < 4 || len(p) > 6 {
		return nil, apiErr(0, "I need parameters!")
	}
	return s.send(ctx, u, p[0], p[1], p[2], p[3], p[4:], false)
}

func (s *Server) sendBroadcast(ctx context.Context, u mailmap.User, p []any) (any, error) {
	if len(p) < 3 || len(p) > 5 {
		return nil, apiErr(0, "I need parameters!")
	}
	return s.send(ctx, u, nil, p[0], p[1], p[2], p[3:], true)
}

func (s *Server) send(ctx context.Context, u mailmap.User, toArg, fromArg, subjArg, bodyArg any, opt []any, broadcast bool) (any, error) {
	if len(opt) >= 1 {
		enc, err := num(opt[0])
		if err != nil || (enc != 2 && enc != 3) {
			return nil, apiErr(6, "The encoding type must be 2 or 3.")
		}
	}
	var ttl time.Duration // not given: the configured message_ttl/broadcast_ttl (4 days by default, as PyBitmessage's)
	if len(opt) >= 2 {
		secs, err := num(opt[1])
		if err != nil {
			return nil, err
		}
		ttl = time.Duration(min(max(secs, 3600), 28*24*3600)) * time.Second
	}
	subject, err := decodeB64(subjArg)
	if err != nil {
		return nil, err
	}
	body, err := decodeB64(bodyArg)
	if err != nil {
		return nil, err
	}
	if len(subject)+len(body) > maxContent {
		return nil, apiErr(27, "Message is too long.")
	}
	var toAddr string
	if !broadcast {
		text, err := str(toArg)
		if err != nil {
			return nil, err
		}
		if _, toAddr, err = verifyAddress(addBM(text)); err != nil {
			return nil, err
		}
	}
	text, err := str(fromArg)
	if err != nil {
		return nil, err
	}
	_, fromAddr, err := verifyAddress(addBM(text))
	if err != nil {
		return nil, err
	}
	notMine := apiErr(13, "Could not find your fromAddress in the keys.dat file.")
	if broadcast {
		notMine = apiErr(13, "could not find your fromAddress in the keys.dat file.")
	}
	fromMail := gateway.BMToMail(fromAddr, s.cfg.Domain)
	sender, err := s.cfg.Gateway.CheckSender(ctx, u, fromMail)
	if err != nil {
		var ge *gateway.Error
		if errors.As(err, &ge) {
			return nil, notMine
		}
		return nil, err
	}
	toMail := gateway.BroadcastLocalPart + "@" + s.cfg.Domain
	if !broadcast {
		toMail = gateway.BMToMail(toAddr, s.cfg.Domain)
	}
	rcpt, err := s.cfg.Gateway.CheckRecipient(ctx, u, toMail)
	if err != nil {
		return nil, refused(err)
	}
	raw, err := s.buildMail(fromMail, toMail, string(subject), string(body))
	if err != nil {
		return nil, err
	}
	ref := object.NewAckData(1, nil)
	if ref == nil {
		return nil, errors.New("no randomness for the ackdata")
	}
	if err := s.cfg.Gateway.Submit(ctx, gateway.Submission{User: u, From: sender, Recipients: []gateway.Recipient{rcpt},
		Raw: raw, APIRef: ref, TTL: ttl}); err != nil {
		return nil, refused(err)
	}
	// The Sent copy a mail client would file, so that mail sent here
	// shows in IMAP as mail sent over SMTP does.
	if sentBox, err := s.cfg.Store.MailboxBySpecialUse(ctx, u.ID, mailmap.SpecialSent); err != nil {
		s.log.Warn("api: no Sent folder for the copy", "user", u.Name, "err", err)
	} else if _, err := s.cfg.Store.AppendMessage(ctx, u.ID, sentBox.ID, raw, []string{`\Seen`}, s.cfg.Now()); err != nil {
		s.log.Warn("api: Sent copy not filed", "user", u.Name, "err", err)
	}
	return hex.EncodeToString(ref), nil
}

// refused turns the gateway's refusal into error 21 with its text.
func refused(err error) error {
	var ge *gateway.Error
	if errors.As(err, &ge) {
		return unexpected(errors.New(ge.Message))
	}
	return err
}

// buildMail writes the mail a client would submit: text/plain UTF-8.
func (s *Server) buildMail(from, to, subject, body string) ([]byte, error) {
	var h mail.Header
	h.SetAddressList("From", []*mail.Address{{Address: from}})
	h.SetAddressList("To", []*mail.Address{{Address: to}})
	h.Set("Subject", mime.QEncoding.Encode("utf-8", oneLine(subject)))
	h.SetDate(s.cfg.Now())
	var rnd [16]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, err
	}
	h.SetMessageID(hex.EncodeToString(rnd[:]) + "@" + s.cfg.Domain)
	h.Set("MIME-Version", "1.0")
	h.SetContentType("text/plain", map[string]string{"charset": "utf-8"})
	h.Set("Content-Transfer-Encoding", "base64")
	var buf bytes.Buffer
	w, err := message.CreateWriter(&buf, h.Header)
	if err != nil {
		return nil, err
	}
	body = strings.ToValidUTF8(body, "\uFFFD")
	body = strings.ReplaceAll(strings.ReplaceAll(body, "\r\n", "\n"), "\n", "\r\n")
	if _, err := io.WriteString(w, body); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// oneLine keeps a subject to one line of valid UTF-8.
func oneLine(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
}
