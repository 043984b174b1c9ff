package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/bmgate/bmgate/mailmap"
)

// TestOutboxList: `bmgate outbox list` shows each queued or recent
// message's state, attempts, last error, next attempt and the proof of
// work it waits for; old finished messages only with --all; --user keeps
// one user's.
func TestOutboxList(t *testing.T) {
	env := testEnv(t)
	ctx := context.Background()
	mustRun(t, env, "pw\npw\n", "user", "add", "alice")
	mustRun(t, env, "pw\npw\n", "user", "add", "bob")
	st := openTestStore(t, env)
	alice, err := st.UserByName(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	bob, err := st.UserByName(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if out := mustRun(t, env, "", "outbox", "list"); !strings.Contains(out, "no outgoing messages") {
		t.Errorf("empty outbox:\n%s", out)
	}
	now := time.Now()
	const from, to = "BM-2cWzSnwjJ7yRP3nLEWUV5LisTZyREWSzUK", "BM-2cTux3PGRqHTEH6wyUP2sWeT4LrsGgy63z"
	item := func(u mailmap.User, subject string, state mailmap.OutboxState, created time.Time) mailmap.OutboxItem {
		return mailmap.OutboxItem{UserID: u.ID, FromAddress: from, ToAddress: to, Kind: mailmap.OutboxMsg, Subject: subject,
			Body: "b", Encoding: 2, State: state, NextAttempt: now.Add(90 * time.Second), TTL: time.Hour, CreatedAt: created}
	}
	items, err := st.EnqueueOutbox(ctx, []mailmap.OutboxItem{
		item(alice, "waiting for a key", mailmap.OutboxQueued, now),
		item(alice, "long ago", mailmap.OutboxQueued, now.Add(-30*24*time.Hour)),
		item(bob, "bob's", mailmap.OutboxQueued, now),
	})
	if err != nil {
		t.Fatal(err)
	}
	// The second one failed long ago.
	errText := "no acknowledgement"
	past := now.Add(-20 * 24 * time.Hour)
	if _, err := st.TransitionOutbox(ctx, mailmap.OutboxStep{ID: items[1].ID, From: []mailmap.OutboxState{mailmap.OutboxQueued},
		To: mailmap.OutboxFailed, LastError: &errText, NextAttempt: &past}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.EnqueuePoW(ctx, mailmap.PoWJob{Kind: "msg", Priority: 1, UserID: alice.ID, OutboxID: items[0].ID,
		Headless: []byte("headless object"), Target: 1 << 40, Expected: 1000, State: mailmap.PoWPending, CreatedAt: now}); err != nil {
		t.Fatal(err)
	}

	out := mustRun(t, env, "", "outbox", "list")
	for _, want := range []string{"waiting for a key", "bob's", "msg pending 0%", "in 1m"} {
		if !strings.Contains(out, want) {
			t.Errorf("outbox list lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "long ago") {
		t.Errorf("outbox list shows a message that failed 20 days ago:\n%s", out)
	}
	out = mustRun(t, env, "", "outbox", "list", "--all", "--user", "alice")
	if !strings.Contains(out, "long ago") || !strings.Contains(out, "no acknowledgement") || strings.Contains(out, "bob's") {
		t.Errorf("outbox list --all --user alice:\n%s", out)
	}
	var rows []OutboxRow
	if err := json.Unmarshal([]byte(mustRun(t, env, "", "outbox", "list", "--json")), &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].PoW == nil || rows[0].PoW.Expected != 1000 || rows[1].User != "bob" {
		t.Errorf("outbox list --json = %+v", rows)
	}
	mustFail(t, env, 1, `no user "carol"`, "outbox", "list", "--user", "carol")
}
