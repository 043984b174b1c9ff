package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/bmgate/bmgate/mailmap"
)

// DeliveredKeyword marks the Sent copy of a message whose ack came back.
const DeliveredKeyword = "$Delivered"

// deliveredWatch is how long after an ack the gateway keeps looking for a
// Sent copy to mark: a client files its copy by APPEND after the SMTP
// transaction, and on a fast network the ack can come first.
const deliveredWatch = time.Hour

// buildReport builds a delivery status report for one outbox row, for the
// sender's INBOX (RFC 3464). willRetry is for ActionDelayed reports. It is
// filed by the transition that sets the row's report flag.
func (g *Gateway) buildReport(it mailmap.OutboxItem, action Action, status DSNStatus, diagnostic string, willRetry time.Time) ([]byte, error) {
	now := g.cfg.Now()
	final := BMToMail(it.ToAddress, g.cfg.Domain)
	if it.Kind == mailmap.OutboxBroadcast {
		final = BroadcastLocalPart + "@" + g.cfg.Domain
	}
	when := now
	if action == ActionDelivered && !it.AckedAt.IsZero() {
		when = it.AckedAt
	}
	var estimate time.Duration
	if action == ActionDelayed {
		rate, _ := g.powRateEstimate()
		estimate = trialsTime(g.expectedTrials(context.Background(), it.Kind, it.ToAddress, rowContentBytes(it), it.TTL), rate)
	}
	raw, err := BuildReport(Report{
		Domain:            g.cfg.Domain,
		To:                BMToMail(it.FromAddress, g.cfg.Domain),
		OriginalMessageID: it.MessageID,
		OriginalSubject:   it.Subject,
		EnvID:             it.EnvID,
		Ret:               it.Ret,
		Original:          it.Original,
		Arrival:           it.CreatedAt,
		Now:               now,
		Recipients: []ReportRecipient{{
			Final:          final,
			Orig:           it.OrigRcpt,
			Action:         action,
			Status:         status,
			Diagnostic:     diagnostic,
			When:           when,
			WillRetryUntil: willRetry,
			Attempts:       it.Attempts,
			PoWDuration:    it.PoWDuration,
			PoWEstimate:    estimate,
		}},
	})
	if err != nil {
		return nil, fmt.Errorf("build %s report: %w", action, err)
	}
	return raw, nil
}

// markDelivered puts $Delivered on the Sent copies of acked messages,
// including copies APPENDed after the ack arrived.
func (g *Gateway) markDelivered(ctx context.Context) {
	now := g.cfg.Now()
	g.deliveredMu.Lock()
	pending := make(map[int64]pendingDelivered, len(g.delivered))
	for id, p := range g.delivered {
		if now.After(p.until) {
			delete(g.delivered, id)
			continue
		}
		pending[id] = p
	}
	g.deliveredMu.Unlock()
	for id, p := range pending {
		msgs, err := g.sentCopies(ctx, p)
		if err != nil {
			g.log.Warn("find Sent copy", "err", err)
			continue
		}
		done := len(msgs) > 0
		for _, m := range msgs {
			if hasFlag(m.Flags, DeliveredKeyword) {
				continue
			}
			if _, err := g.store.UpdateFlags(ctx, p.userID, m.MailboxID, []uint32{m.UID}, mailmap.FlagsAdd, []string{DeliveredKeyword}); err != nil {
				g.log.Warn("set $Delivered", "err", err)
				done = false
			}
		}
		if done {
			g.deliveredMu.Lock()
			delete(g.delivered, id)
			g.deliveredMu.Unlock()
		}
	}
}

func hasFlag(flags []string, f string) bool {
	for _, x := range flags {
		if x == f {
			return true
		}
	}
	return false
}

// sentCopyWindow bounds the Sent copies looked at for a mail without a
// Message-ID: the newest ones, filed since shortly before it was submitted.
const (
	sentCopyCandidates = 50
	sentCopySlack      = 5 * time.Minute
)

// sentCopies finds the Sent copies of an acked row: by Message-ID when the
// mail had one; otherwise (or when no copy has it) among the newest copies
// without one, those with the bytes that were submitted or, parsed as a
// submission is, the same subject and body.
func (g *Gateway) sentCopies(ctx context.Context, p pendingDelivered) ([]mailmap.Message, error) {
	if p.messageID != "" {
		msgs, err := g.store.FindByMessageID(ctx, p.userID, mailmap.SpecialSent, p.messageID)
		if err != nil || len(msgs) > 0 {
			return msgs, err
		}
		// The copy may lack the Message-ID the row has: bmgate sendmail
		// gives a script's mail one, and the script's own copy has none.
		// Only copies without a Message-ID are compared, so a client's
		// copy (which has its own) is never taken for another mail.
	}
	mb, err := g.store.MailboxBySpecialUse(ctx, p.userID, mailmap.SpecialSent)
	if errors.Is(err, mailmap.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	all, err := g.store.Messages(ctx, p.userID, mb.ID)
	if err != nil {
		return nil, err
	}
	var cands []mailmap.Message
	var uids []uint32
	for i := len(all) - 1; i >= 0 && len(cands) < sentCopyCandidates; i-- {
		m := all[i]
		if m.MessageID != "" || m.InternalDate.Before(p.created.Add(-sentCopySlack)) {
			continue
		}
		cands = append(cands, m)
		uids = append(uids, m.UID)
	}
	if len(cands) == 0 {
		return nil, nil
	}
	slices.Sort(uids)
	raws, err := g.store.MessagesRaw(ctx, p.userID, mb.ID, uids)
	if err != nil {
		return nil, err
	}
	var out []mailmap.Message
	for _, m := range cands {
		if raw, ok := raws[m.UID]; ok && sentCopyMatches(p, raw) {
			out = append(out, m)
		}
	}
	return out, nil
}

// sentCopyMatches reports whether raw is the Sent copy of a mail without
// a Message-ID.
func sentCopyMatches(p pendingDelivered, raw []byte) bool {
	if len(p.original) > 0 && bytes.Equal(raw, p.original) {
		return true
	}
	o, err := ParseOutgoing(raw)
	return err == nil && o.MessageID == "" && o.Subject == p.subject && o.Body == p.body
}
