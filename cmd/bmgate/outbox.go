package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/bmgate/bmgate/mailmap"
)

// outboxRecent is how long finished rows (acked, failed) stay in the
// default listing.
const outboxRecent = 7 * 24 * time.Hour

// OutboxRow is one outgoing message as `bmgate outbox list` shows it.
type OutboxRow struct {
	ID          int64         `json:"id"`
	User        string        `json:"user"`
	Kind        string        `json:"kind"`
	From        string        `json:"from"`
	To          string        `json:"to"`
	Subject     string        `json:"subject"`
	State       string        `json:"state"`
	Attempts    int           `json:"attempts"`
	LastError   string        `json:"last_error,omitempty"`
	NextAttempt time.Time     `json:"next_attempt"`
	Created     time.Time     `json:"created"`
	Sent        time.Time     `json:"sent,omitzero"`
	Acked       time.Time     `json:"acked,omitzero"`
	PoW         *PoWJobStatus `json:"pow,omitempty"` // the proof of work the row waits for
}

var cmdOutboxList = &command{
	name: "outbox list",
	args: "[--user NAME] [--all] [--json]",
	summary: "List outgoing messages with their state (queued, awaiting_pubkey, doing_pow, sent, acked, failed), attempts, " +
		"last error, next attempt and the progress of their proof of work with the expected time left (from the running " +
		"server's solve rate). Without --all, finished messages older than 7 days are left out.",
	run: func(ctx context.Context, inv *invocation) error {
		user := inv.fs.String("user", "", "only the messages of the user `NAME`")
		all := inv.fs.Bool("all", false, "include messages acked or failed more than 7 days ago")
		asJSON := inv.fs.Bool("json", false, "print the rows as JSON")
		cfg, err := inv.parse(0, 0)
		if err != nil {
			return err
		}
		st, err := inv.openStore(ctx, cfg)
		if err != nil {
			return err
		}
		defer st.Close()
		var users []mailmap.User
		if *user != "" {
			u, err := userByName(ctx, st, *user)
			if err != nil {
				return err
			}
			users = []mailmap.User{u}
		} else if users, err = st.ListUsers(ctx); err != nil {
			return fmt.Errorf("list users: %w", err)
		}
		jobs, err := st.PoWJobs(ctx)
		if err != nil {
			return fmt.Errorf("list proof of work: %w", err)
		}
		var js []PoWJobStatus
		for _, j := range jobs {
			js = append(js, PoWJobStatus{ID: j.ID, Kind: j.Kind, State: string(j.State), OutboxID: j.OutboxID,
				UserID: j.UserID, Trials: j.Trials, Expected: j.Expected})
		}
		// The expected times need the running server's solve rate.
		if live, err := serverStatus(ctx, cfg); err == nil {
			for i, j := range js {
				for _, l := range live.PoWJobs {
					if l.ID == j.ID {
						js[i].Trials = max(j.Trials, l.Trials)
					}
				}
			}
			estimatePoW(js, live.PoW.SolveRate, cfg.PoWConcurrency)
		}
		now := time.Now()
		var rows []OutboxRow
		for _, u := range users {
			items, err := st.UserOutbox(ctx, u.ID)
			if err != nil {
				return fmt.Errorf("outbox of %s: %w", u.Name, err)
			}
			for _, it := range items {
				finished := it.State == mailmap.OutboxAcked || it.State == mailmap.OutboxFailed
				if finished && !*all && now.Sub(lastChange(it)) > outboxRecent {
					continue
				}
				r := OutboxRow{ID: it.ID, User: u.Name, Kind: string(it.Kind), From: it.FromAddress, To: it.ToAddress,
					Subject: it.Subject, State: string(it.State), Attempts: it.Attempts, LastError: it.LastError,
					NextAttempt: it.NextAttempt, Created: it.CreatedAt, Sent: it.SentAt, Acked: it.AckedAt}
				for i := range js {
					if js[i].OutboxID == it.ID {
						r.PoW = &js[i]
					}
				}
				rows = append(rows, r)
			}
		}
		slices.SortFunc(rows, func(a, b OutboxRow) int { return int(a.ID - b.ID) })
		if *asJSON {
			enc := json.NewEncoder(inv.stdout)
			enc.SetIndent("", "  ")
			if rows == nil {
				rows = []OutboxRow{}
			}
			return enc.Encode(rows)
		}
		printOutbox(inv.stdout, rows, now)
		return nil
	},
}

// lastChange is when a finished row finished, as near as the row tells.
func lastChange(it mailmap.OutboxItem) time.Time {
	for _, t := range []time.Time{it.AckedAt, it.NextAttempt, it.SentAt} {
		if !t.IsZero() {
			return t
		}
	}
	return it.CreatedAt
}

func printOutbox(w io.Writer, rows []OutboxRow, now time.Time) {
	if len(rows) == 0 {
		fmt.Fprintln(w, "no outgoing messages")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tUSER\tSTATE\tTRIES\tTO\tSUBJECT\tNEXT\tPROOF OF WORK\tLAST ERROR")
	for _, r := range rows {
		next := "-"
		open := r.State != string(mailmap.OutboxAcked) && r.State != string(mailmap.OutboxFailed)
		switch {
		case r.State == string(mailmap.OutboxAcked):
			next = "acked " + r.Acked.Local().Format(time.DateTime)
		case open && !r.NextAttempt.After(now):
			next = "now"
		case open:
			next = "in " + r.NextAttempt.Sub(now).Round(time.Second).String()
		}
		pow := "-"
		if j := r.PoW; j != nil {
			pct := 0.0
			if j.Expected > 0 {
				pct = min(100*float64(j.Trials)/float64(j.Expected), 999)
			}
			pow = fmt.Sprintf("%s %s %.0f%%", j.Kind, j.State, pct)
			if j.Remaining > 0 {
				pow += ", ~" + j.Remaining.Round(time.Second).String() + " left"
			}
		}
		to := r.To
		if r.Kind == string(mailmap.OutboxBroadcast) {
			to = "(broadcast)"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.User, r.State, r.Attempts, to,
			oneLine(r.Subject, 40), next, pow, oneLine(r.LastError, 80))
	}
	tw.Flush()
}
