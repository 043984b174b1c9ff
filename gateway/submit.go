package gateway

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/bmgate/bmgate/bmcore/object"
	"github.com/bmgate/bmgate/bmcore/wire"
	"github.com/bmgate/bmgate/mailmap"
	"github.com/emersion/go-message"
)

// Encodings the gateway sends (docs/protocol.md §12).
const (
	encodingSimple   = 2
	encodingExtended = 3
)

func refuse(code int, enhanced [3]int, msg string) *Error {
	return NewError(code, enhanced, msg, nil)
}

// CheckSender checks that an envelope sender belongs to the user and returns
// the identity's BM- address. Aliases (contacts) of the user that point at
// one of the user's own identities count too.
func (g *Gateway) CheckSender(ctx context.Context, u mailmap.User, from string) (string, error) {
	if from == "" {
		return "", refuse(550, [3]int{5, 7, 1}, "a null sender cannot submit mail")
	}
	bm, err := g.ownAddress(ctx, u, from)
	if err != nil {
		return "", err
	}
	return bm, nil
}

// ownAddress maps a mail address to one of the user's identities.
func (g *Gateway) ownAddress(ctx context.Context, u mailmap.User, mailAddr string) (string, error) {
	bm, err := MailToBM(mailAddr, g.cfg.Domain)
	if err != nil {
		alias, aerr := g.store.ResolveAlias(ctx, u.ID, strings.ToLower(mailAddr))
		if aerr != nil {
			if errors.Is(aerr, mailmap.ErrNotFound) {
				return "", refuse(550, [3]int{5, 7, 1}, fmt.Sprintf("sender %s is not one of your Bitmessage identities: %v", mailAddr, err))
			}
			return "", fmt.Errorf("resolve sender alias: %w", aerr)
		}
		bm = alias
	}
	ids, err := g.store.IdentitiesByAddress(ctx, bm)
	if err != nil {
		return "", fmt.Errorf("look up sender identity: %w", err)
	}
	for _, id := range ids {
		if id.UserID == u.ID {
			return id.Address, nil
		}
	}
	return "", refuse(550, [3]int{5, 7, 1}, fmt.Sprintf("sender %s is not one of your Bitmessage identities", mailAddr))
}

// CheckRecipient validates and resolves one recipient. It never accepts an
// address outside the Bitmessage domain: bmgate is not a relay.
func (g *Gateway) CheckRecipient(ctx context.Context, u mailmap.User, rcpt string) (Recipient, error) {
	r := Recipient{Orig: rcpt, Kind: mailmap.OutboxMsg}
	if IsBroadcastAddress(rcpt, g.cfg.Domain) {
		r.Kind = mailmap.OutboxBroadcast
		return r, nil
	}
	bm, err := MailToBM(rcpt, g.cfg.Domain)
	if err != nil {
		alias, aerr := g.store.ResolveAlias(ctx, u.ID, strings.ToLower(rcpt))
		if aerr != nil {
			if errors.Is(aerr, mailmap.ErrNotFound) {
				return r, refuse(550, [3]int{5, 1, 1}, fmt.Sprintf("%s: %v", rcpt, err))
			}
			return r, fmt.Errorf("resolve recipient alias: %w", aerr)
		}
		bm = alias
	}
	r.Address = bm
	id, err := g.store.IdentityByAddress(ctx, bm)
	switch {
	case err == nil && id.Kind == mailmap.KindChan:
		r.Kind = mailmap.OutboxChan
	case err != nil && !errors.Is(err, mailmap.ErrNotFound):
		return r, fmt.Errorf("look up recipient: %w", err)
	}
	return r, nil
}

// Submit turns an accepted mail into outbox rows, one per recipient, and
// returns only after they are committed. The From header must be one of
// the user's identities; it becomes the sending identity.
func (g *Gateway) Submit(ctx context.Context, s Submission) error {
	if len(s.Recipients) == 0 {
		return refuse(554, [3]int{5, 5, 1}, "no valid recipients")
	}
	out, err := ParseOutgoing(s.Raw)
	if err != nil {
		return err
	}
	sender := s.From
	if out.From != "" {
		hdr, err := g.ownAddress(ctx, s.User, out.From)
		if err != nil {
			return refuse(550, [3]int{5, 7, 1}, fmt.Sprintf("From header %s is not one of your Bitmessage identities", out.From))
		}
		sender = hdr
	}
	if sender == "" {
		return refuse(550, [3]int{5, 7, 1}, "no sender identity")
	}
	extra := out.Extra()
	if _, _, err := encodeContent(object.Extended{Subject: out.Subject, Body: out.Body, Extra: extra}); err != nil {
		return refuse(554, [3]int{5, 6, 0}, fmt.Sprintf("message cannot be encoded: %v", err))
	}
	// Encoding 3: files always (nothing else carries them), threading
	// headers to known readers. It carries the parents' inventory hashes
	// where they are known (Jabit threads by them).
	hasFiles := len(out.Files) > 0
	var parents [][32]byte
	var extended []byte
	if hasFiles || needsExtended(out) {
		if parents, err = g.parentsOf(ctx, s.User.ID, out); err != nil {
			return err
		}
		extended, err = object.EncodeExtended(object.Extended{Subject: out.Subject, Body: out.Body, Extra: extra, Files: out.Files, Parents: parents})
		if err != nil {
			return TooLarge(fmt.Sprintf("the message cannot be carried in one Bitmessage message: %v", err))
		}
		if hasFiles && len(extended) > maxObjectContent {
			return TooLarge(fmt.Sprintf("the message with its attachments is %d bytes compressed; one Bitmessage message carries at most %d bytes (objects are limited to 2^18 = %d bytes)",
				len(extended), maxObjectContent, wire.MaxObjectSize))
		}
	}
	rowExtra := map[string]string{}
	for k, v := range extra {
		rowExtra[k] = v
	}
	if hasFiles {
		rowExtra[internalFiles] = "original"
	}
	if len(parents) > 0 {
		hs := make([]string, len(parents))
		for i, p := range parents {
			hs[i] = hex.EncodeToString(p[:])
		}
		rowExtra[internalParents] = strings.Join(hs, " ")
	}
	extraJSON, err := json.Marshal(rowExtra)
	if err != nil {
		return fmt.Errorf("encode extras: %w", err)
	}
	now := g.cfg.Now()
	items := make([]mailmap.OutboxItem, 0, len(s.Recipients))
	var estimate uint64 // expected proof-of-work trials of the whole submission
	for _, r := range s.Recipients {
		encoding, rowExtraJSON, size := uint64(encodingSimple), []byte(nil), len(object.EncodeSimple(out.Subject, out.Body))
		ext := hasFiles
		if !ext && needsExtended(out) {
			if ext, err = g.readsExtended(ctx, r); err != nil {
				return err
			}
		}
		if ext {
			if len(extended) > maxObjectContent {
				return TooLarge(fmt.Sprintf("the message is %d bytes compressed; one Bitmessage message carries at most %d bytes", len(extended), maxObjectContent))
			}
			encoding, rowExtraJSON, size = encodingExtended, extraJSON, len(extended)
		}
		it := mailmap.OutboxItem{
			UserID:      s.User.ID,
			FromAddress: sender,
			ToAddress:   r.Address,
			Kind:        r.Kind,
			Subject:     out.Subject,
			Body:        out.Body,
			Encoding:    encoding,
			Extra:       rowExtraJSON,
			MessageID:   out.MessageID,
			State:       mailmap.OutboxQueued,
			NextAttempt: now,
			TTL:         g.cfg.MsgTTL,
			CreatedAt:   now,
			Notify:      r.Notify,
			Ret:         s.Ret,
			EnvID:       s.EnvID,
			OrigRcpt:    r.Orig,
			Original:    s.Raw,
		}
		if r.Kind == mailmap.OutboxBroadcast {
			it.ToAddress = sender
			it.TTL = g.cfg.BroadcastTTL
		}
		if r.Kind == mailmap.OutboxChan {
			it.TTL = g.cfg.BroadcastTTL
		}
		if s.TTL > 0 {
			it.TTL = s.TTL
		}
		it.APIRef = s.APIRef
		estimate += g.expectedTrials(ctx, it.Kind, it.ToAddress, size, it.TTL)
		items = append(items, it)
	}
	rate, measured := g.powRateEstimate()
	cost := trialsTime(estimate, rate)
	if limit := g.cfg.MaxQueuedPoWPerUser; limit > 0 {
		queued, err := g.queuedPoW(ctx, s.User.ID)
		if err != nil {
			return err
		}
		if total := queued + cost; total > limit {
			return refuse(452, [3]int{4, 3, 1}, fmt.Sprintf("your queued mail already needs about %s of proof of work on this server and this message about %s more; the operator's limit is %s per user. Send it again once some of your mail has gone out",
				roundDuration(queued), roundDuration(cost), roundDuration(limit)))
		}
	}
	if _, err := g.store.EnqueueOutbox(ctx, items); err != nil {
		if errors.Is(err, mailmap.ErrOverQuota) {
			return refuse(552, [3]int{5, 2, 2}, "mailbox quota exceeded")
		}
		if errors.Is(err, mailmap.ErrRateLimited) {
			_, why, _ := strings.Cut(err.Error(), mailmap.ErrRateLimited.Error()+": ")
			return refuse(450, [3]int{4, 7, 1}, "sending rate limit reached ("+why+"); try again later")
		}
		return fmt.Errorf("enqueue outbox: %w", err)
	}
	g.log.Info("queued", "user", s.User.ID, "recipients", len(items), "encoding", items[0].Encoding, "files", len(out.Files),
		"pow_estimate", roundDuration(cost), "pow_rate_measured", measured)
	g.WakeOutbound()
	return nil
}

// Keys of an outbox row's extras that are bmgate's own and never sent:
// internalFiles says the row's files are those of its Original (parsed
// again when the message is built, so they are stored once),
// internalParents lists the parents' inventory hashes in hex.
const (
	internalFiles   = "_files"
	internalParents = "_parents"
)

// parentsOf finds the inventory hashes of the messages a mail answers: an
// id of the form <hex(hash)@domain> (what a bmgate names a message that
// came without a Message-ID: every Jabit, PyBitmessage and notbit
// message), or the id of a message in the user's folders that arrived
// over Bitmessage (its X-Bitmessage-Inventory header).
func (g *Gateway) parentsOf(ctx context.Context, userID int64, o Outgoing) ([][32]byte, error) {
	ids := append([]string(nil), o.References...)
	if o.InReplyTo != "" && !slices.Contains(ids, o.InReplyTo) {
		ids = append(ids, o.InReplyTo)
	}
	var out [][32]byte
	add := func(h [32]byte) {
		if !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	for i, id := range ids {
		left, _, _ := strings.Cut(id, "@")
		if b, err := hex.DecodeString(left); err == nil && len(b) == 32 {
			add([32]byte(b))
			continue
		}
		if i >= 8 && id != o.InReplyTo {
			continue // a long References list: look up the last few only
		}
		msgs, err := g.store.FindByMessageID(ctx, userID, "", id)
		if err != nil {
			return nil, fmt.Errorf("find the replied-to message: %w", err)
		}
		for _, m := range msgs {
			raw, err := g.store.MessageRaw(ctx, userID, m.MailboxID, m.UID)
			if err != nil {
				continue // expunged meanwhile
			}
			if h := inventoryHeader(raw); h != nil {
				add([32]byte(h))
				break
			}
		}
	}
	return out, nil
}

// inventoryHeader returns the X-Bitmessage-Inventory of a delivered mail.
func inventoryHeader(raw []byte) []byte {
	e, _ := message.ReadWithOptions(bytes.NewReader(raw), &message.ReadOptions{MaxHeaderBytes: maxHeaderBytes})
	if e == nil {
		return nil
	}
	b, err := hex.DecodeString(strings.TrimSpace(e.Header.Get("X-Bitmessage-Inventory")))
	if err != nil || len(b) != 32 {
		return nil
	}
	return b
}

// Which encoding a mail goes out in (docs/compatibility.md, "Which encoding
// bmgate sends"). Encoding 2 (subject and body) is read by every client;
// encoding 3 (a zlib'd msgpack map) only by some: notbit shows its zlib
// bytes as the body, with no subject. So a mail goes as encoding 2 unless it
// carries something only encoding 3 can carry AND the recipient is known to
// read it. A Message-ID alone is not such a thing: the receiving bmgate
// makes <hex(inventory hash)@domain> for a msg without one, and a reply
// naming that id is resolved back to the Sent copy's Message-ID
// (resolveOwnIDs); acks and reports are matched by outbox row.

// needsExtended reports whether a mail carries something only encoding 3
// can: threading headers that name another message.
func needsExtended(o Outgoing) bool {
	return o.InReplyTo != "" || len(o.References) > 0
}

// readsExtended reports whether the recipient is known to read encoding 3:
// a personal address of this gateway, or an address (a person or a chan)
// from which a msg in encoding 3 has arrived. A broadcast's readers are
// unknown, so never.
func (g *Gateway) readsExtended(ctx context.Context, r Recipient) (bool, error) {
	switch r.Kind {
	case mailmap.OutboxBroadcast:
		return false, nil
	case mailmap.OutboxMsg:
		_, err := g.store.IdentityByAddress(ctx, r.Address)
		switch {
		case err == nil:
			return true, nil
		case !errors.Is(err, mailmap.ErrNotFound):
			return false, fmt.Errorf("look up recipient: %w", err)
		}
	}
	seen, err := g.store.EncodingSeen(ctx, r.Address)
	if err != nil {
		return false, fmt.Errorf("look up the recipient's encoding: %w", err)
	}
	return seen >= encodingExtended, nil
}

// encodeContent encodes a message: extended (3) when it has extras to
// carry, else simple (2). PyBitmessage shows encoding 3 correctly because
// the subject and body are packed as msgpack bin.
func encodeContent(c object.Extended) (uint64, []byte, error) {
	if len(c.Extra) > 0 {
		b, err := object.EncodeExtended(c)
		return encodingExtended, b, err
	}
	return encodingSimple, object.EncodeSimple(c.Subject, c.Body), nil
}

// contentOf rebuilds the encoded message of an outbox row.
func contentOf(it mailmap.OutboxItem) ([]byte, error) {
	if it.Encoding == encodingSimple {
		return object.EncodeSimple(it.Subject, it.Body), nil
	}
	var extra map[string]string
	if len(it.Extra) > 0 {
		if err := json.Unmarshal(it.Extra, &extra); err != nil {
			return nil, fmt.Errorf("decode outbox extras: %w", err)
		}
	}
	c := object.Extended{Subject: it.Subject, Body: it.Body}
	if extra[internalFiles] != "" {
		o, err := ParseOutgoing(it.Original)
		if err != nil {
			return nil, fmt.Errorf("read the attachments again: %w", err)
		}
		c.Files = o.Files
	}
	for _, h := range strings.Fields(extra[internalParents]) {
		if b, err := hex.DecodeString(h); err == nil && len(b) == 32 {
			c.Parents = append(c.Parents, [32]byte(b))
		}
	}
	for k, v := range extra {
		if !strings.HasPrefix(k, "_") {
			if c.Extra == nil {
				c.Extra = map[string]string{}
			}
			c.Extra[k] = v
		}
	}
	return object.EncodeExtended(c)
}
