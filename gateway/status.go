package gateway

import (
	"context"
	"fmt"
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
		msgs, err := g.store.FindByMessageID(ctx, p.userID, mailmap.SpecialSent, p.messageID)
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
