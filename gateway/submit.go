package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/bmgate/bmgate/bmcore/object"
	"github.com/bmgate/bmgate/mailmap"
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
	extraJSON, err := json.Marshal(extra)
	if err != nil {
		return fmt.Errorf("encode extras: %w", err)
	}
	now := g.cfg.Now()
	items := make([]mailmap.OutboxItem, 0, len(s.Recipients))
	for _, r := range s.Recipients {
		encoding, rowExtra := uint64(encodingSimple), []byte(nil)
		if needsExtended(out) {
			ok, err := g.readsExtended(ctx, r)
			if err != nil {
				return err
			}
			if ok {
				encoding, rowExtra = encodingExtended, extraJSON
			}
		}
		it := mailmap.OutboxItem{
			UserID:      s.User.ID,
			FromAddress: sender,
			ToAddress:   r.Address,
			Kind:        r.Kind,
			Subject:     out.Subject,
			Body:        out.Body,
			Encoding:    encoding,
			Extra:       rowExtra,
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
		items = append(items, it)
	}
	if _, err := g.store.EnqueueOutbox(ctx, items); err != nil {
		if errors.Is(err, mailmap.ErrOverQuota) {
			return refuse(552, [3]int{5, 2, 2}, "mailbox quota exceeded")
		}
		return fmt.Errorf("enqueue outbox: %w", err)
	}
	g.WakeOutbound()
	return nil
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
	return object.EncodeExtended(object.Extended{Subject: it.Subject, Body: it.Body, Extra: extra})
}
