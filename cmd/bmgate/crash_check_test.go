package main

import (
	"bufio"
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/bmgate/bmgate/bmcore/wire"
	"github.com/bmgate/bmgate/mailmap"
	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// kill9Snapshot is what the stores and B's INBOX say at one moment.
type kill9Snapshot struct {
	err        error
	inbox      map[string]int                  // token → copies in B's INBOX
	rows       map[string][]mailmap.OutboxItem // token → A's outbox rows
	unfinished []mailmap.OutboxItem            // A's rows not acked or failed
	bPending   int                             // objects B has not processed
	missingAtB int                             // objects of A's inventory B lacks
}

func (s kill9Snapshot) quiescent() bool {
	return s.err == nil && len(s.unfinished) == 0 && s.bPending == 0 && s.missingAtB == 0
}

func (s kill9Snapshot) why() string {
	if s.err != nil {
		return s.err.Error()
	}
	var parts []string
	for _, it := range s.unfinished {
		parts = append(parts, fmt.Sprintf("A outbox %d (%s) %s attempts=%d next_attempt=%s last_error=%q",
			it.ID, kill9Token.FindString(it.Subject), it.State, it.Attempts, it.NextAttempt.Format(time.TimeOnly), it.LastError))
	}
	if s.bPending > 0 {
		parts = append(parts, fmt.Sprintf("%d objects pending at B", s.bPending))
	}
	if s.missingAtB > 0 {
		parts = append(parts, fmt.Sprintf("%d of A's objects missing at B", s.missingAtB))
	}
	return strings.Join(parts, "; ")
}

func kill9Take(ctx context.Context, sta, stb mailmap.Store, aliceID int64, bIMAP string) kill9Snapshot {
	s := kill9Snapshot{inbox: map[string]int{}, rows: map[string][]mailmap.OutboxItem{}}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	items, err := sta.UserOutbox(ctx, aliceID)
	if err != nil {
		s.err = fmt.Errorf("A outbox: %w", err)
		return s
	}
	for _, it := range items {
		if tok := kill9Token.FindString(it.Subject); tok != "" {
			s.rows[tok] = append(s.rows[tok], it)
		}
		if it.State != mailmap.OutboxAcked && it.State != mailmap.OutboxFailed {
			s.unfinished = append(s.unfinished, it)
		}
	}
	now := time.Now()
	pending, err := kill9Pending(ctx, stb, now)
	if err != nil {
		s.err = fmt.Errorf("B pending objects: %w", err)
		return s
	}
	s.bPending = pending
	ha, err := sta.Hashes(ctx, 1, now)
	if err != nil {
		s.err = fmt.Errorf("A inventory: %w", err)
		return s
	}
	hb, err := stb.Hashes(ctx, 1, now)
	if err != nil {
		s.err = fmt.Errorf("B inventory: %w", err)
		return s
	}
	atB := map[wire.InvHash]bool{}
	for _, h := range hb {
		atB[h] = true
	}
	for _, h := range ha {
		if !atB[h] {
			s.missingAtB++
		}
	}
	c, err := imapclient.DialInsecure(bIMAP, nil)
	if err != nil {
		s.err = fmt.Errorf("B IMAP: %w", err)
		return s
	}
	defer c.Close()
	if err := c.Login("bob", "bob-secret").Wait(); err != nil {
		s.err = fmt.Errorf("B IMAP login: %w", err)
		return s
	}
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		s.err = fmt.Errorf("B IMAP select: %w", err)
		return s
	}
	if sel.NumMessages > 0 {
		var set imap.SeqSet
		set.AddRange(1, sel.NumMessages)
		msgs, err := c.Fetch(set, &imap.FetchOptions{Envelope: true}).Collect()
		if err != nil {
			s.err = fmt.Errorf("B IMAP fetch: %w", err)
			return s
		}
		for _, m := range msgs {
			if m.Envelope != nil {
				if tok := kill9Token.FindString(m.Envelope.Subject); tok != "" {
					s.inbox[tok]++
				}
			}
		}
	}
	_ = c.Logout().Wait()
	return s
}

// kill9Pending counts the objects the store's gateway has still to process,
// retries that are not due yet included.
func kill9Pending(ctx context.Context, st mailmap.Store, now time.Time) (int, error) {
	objs, err := st.PendingObjects(ctx, now.Add(24*time.Hour), 1000)
	return len(objs), err
}

func kill9Grep(log string, re *regexp.Regexp) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if l := sc.Text(); re.MatchString(l) {
			out = append(out, kill9Trim(l))
		}
	}
	return out
}

func kill9Trim(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}

// kill9KillsAfter lists the kills after a moment, for the failure report.
func kill9KillsAfter(events []kill9Event, from time.Duration) string {
	var out []string
	for _, e := range events {
		if e.at >= from && strings.HasPrefix(e.what, "KILL") {
			out = append(out, fmt.Sprintf("[%s] %s", e.at, e.what))
		}
	}
	if len(out) > 4 {
		out = append(out[:4], fmt.Sprintf("… and %d more", len(out)-4))
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, "\n      ")
}
