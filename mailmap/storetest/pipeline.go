package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/bmgate/bmgate/mailmap"
)

func testJob(kind string, userID int64) mailmap.PoWJob {
	return mailmap.PoWJob{Kind: kind, Priority: 1, UserID: userID, Publish: true,
		Headless: []byte("0123456789abcdef-" + kind), Target: 1 << 60, Expected: 16}
}

// testOutboxTransitions: the lease owner, the awaited job and the ack data
// are checked, so a stale worker cannot overwrite an ack.
func testOutboxTransitions(t *testing.T, s mailmap.Store) {
	ctx := context.Background()
	u := newUser(t, s, "alice")
	it := testOutboxItem(u.ID, 0)
	it.State, it.NextAttempt = mailmap.OutboxQueued, t0
	out, err := s.EnqueueOutbox(ctx, []mailmap.OutboxItem{it})
	noErr(t, err, "EnqueueOutbox")
	id := out[0].ID
	claimed, err := s.ClaimOutbox(ctx, []mailmap.OutboxState{mailmap.OutboxQueued}, t0, time.Minute, 1, "w1")
	noErr(t, err, "ClaimOutbox")
	if len(claimed) != 1 || claimed[0].LeaseOwner != "w1" {
		t.Fatalf("ClaimOutbox = %+v, want the row leased to w1", claimed)
	}
	// Another owner cannot move it.
	_, err = s.TransitionOutbox(ctx, mailmap.OutboxStep{ID: id, From: []mailmap.OutboxState{mailmap.OutboxQueued}, Owner: "w2", To: mailmap.OutboxAwaitingPubkey})
	wantErr(t, err, mailmap.ErrConflict, "transition by a worker without the lease")
	// The owner starts proof of work: the row waits for its job.
	never := t0.Add(1000 * time.Hour)
	job := testJob("ack", 0)
	job.Publish = false
	got, err := s.TransitionOutbox(ctx, mailmap.OutboxStep{ID: id, From: []mailmap.OutboxState{mailmap.OutboxQueued}, Owner: "w1",
		To: mailmap.OutboxDoingPoW, NextAttempt: &never, Job: &job})
	noErr(t, err, "start proof of work")
	if got.State != mailmap.OutboxDoingPoW || got.PoWJob == 0 || got.LeaseOwner != "" {
		t.Fatalf("after start: %+v", got)
	}
	j, err := s.PoWJob(ctx, got.PoWJob)
	noErr(t, err, "PoWJob")
	if j.OutboxID != id || j.UserID != u.ID || j.State != mailmap.PoWPending || j.Kind != "ack" || j.Publish {
		t.Fatalf("job = %+v", j)
	}
	// While its job exists, the doing_pow row is not claimable.
	if c, err := s.ClaimOutbox(ctx, []mailmap.OutboxState{mailmap.OutboxDoingPoW}, never.Add(time.Hour), time.Minute, 5, "w1"); err != nil || len(c) != 0 {
		t.Fatalf("claim of a row whose job is pending = %v, %v", ids(c), err)
	}
	// The ack arrives during the proof of work: acked, the job is gone.
	ackedAt := t0.Add(time.Minute)
	_, err = s.TransitionOutbox(ctx, mailmap.OutboxStep{ID: id, From: []mailmap.OutboxState{mailmap.OutboxDoingPoW}, AckDataIs: []byte("wrong"), To: mailmap.OutboxAcked, AckedAt: &ackedAt})
	wantErr(t, err, mailmap.ErrConflict, "ack with other ack data")
	got, err = s.TransitionOutbox(ctx, mailmap.OutboxStep{ID: id, From: []mailmap.OutboxState{mailmap.OutboxQueued, mailmap.OutboxAwaitingPubkey, mailmap.OutboxDoingPoW, mailmap.OutboxSent},
		AckDataIs: it.AckData, To: mailmap.OutboxAcked, AckedAt: &ackedAt})
	noErr(t, err, "ack")
	if got.State != mailmap.OutboxAcked || got.PoWJob != 0 {
		t.Fatalf("after ack: %+v", got)
	}
	_, err = s.PoWJob(ctx, j.ID)
	wantErr(t, err, mailmap.ErrNotFound, "the acked row's job")
	// The scheduler's stale completion conflicts and writes nothing.
	_, err = s.TransitionOutbox(ctx, mailmap.OutboxStep{ID: id, From: []mailmap.OutboxState{mailmap.OutboxDoingPoW}, WaitingJob: j.ID, To: mailmap.OutboxSent})
	wantErr(t, err, mailmap.ErrConflict, "completion after the ack")
	// A second ack is a conflict too (no second report).
	_, err = s.TransitionOutbox(ctx, mailmap.OutboxStep{ID: id, From: []mailmap.OutboxState{mailmap.OutboxDoingPoW, mailmap.OutboxSent}, AckDataIs: it.AckData, To: mailmap.OutboxAcked})
	wantErr(t, err, mailmap.ErrConflict, "second ack")

	// Release: the rows a worker leased become due at once.
	it2 := testOutboxItem(u.ID, 1)
	it2.State, it2.NextAttempt = mailmap.OutboxQueued, t0
	out, err = s.EnqueueOutbox(ctx, []mailmap.OutboxItem{it2})
	noErr(t, err, "EnqueueOutbox")
	if c, err := s.ClaimOutbox(ctx, []mailmap.OutboxState{mailmap.OutboxQueued}, t0, time.Hour, 1, "w1"); err != nil || len(c) != 1 {
		t.Fatalf("claim = %v, %v", ids(c), err)
	}
	noErr(t, s.ReleaseOutbox(ctx, "w1", t0.Add(time.Second)), "ReleaseOutbox")
	c, err := s.ClaimOutbox(ctx, []mailmap.OutboxState{mailmap.OutboxQueued}, t0.Add(time.Second), time.Hour, 1, "w2")
	if err != nil || len(c) != 1 || c[0].ID != out[0].ID {
		t.Fatalf("claim after release = %v, %v", ids(c), err)
	}

	// A disabled account's rows wait.
	noErr(t, s.ReleaseOutbox(ctx, "w2", t0.Add(time.Second)), "ReleaseOutbox")
	noErr(t, s.SetDisabled(ctx, u.ID, true), "SetDisabled")
	if c, err := s.ClaimOutbox(ctx, []mailmap.OutboxState{mailmap.OutboxQueued}, t0.Add(time.Hour), time.Hour, 5, "w1"); err != nil || len(c) != 0 {
		t.Fatalf("claim of a disabled user's row = %v, %v", ids(c), err)
	}
	noErr(t, s.SetDisabled(ctx, u.ID, false), "SetDisabled(false)")
	if c, err := s.ClaimOutbox(ctx, []mailmap.OutboxState{mailmap.OutboxQueued}, t0.Add(time.Hour), time.Hour, 5, "w1"); err != nil || len(c) != 1 {
		t.Fatalf("claim after enabling = %v, %v", ids(c), err)
	}
}

// testOutboxReports: a report commits with its transition, once.
func testOutboxReports(t *testing.T, s mailmap.Store) {
	ctx := context.Background()
	u := newUser(t, s, "alice")
	it := testOutboxItem(u.ID, 0)
	it.State, it.Reported, it.DelayReported = mailmap.OutboxSent, false, false
	out, err := s.EnqueueOutbox(ctx, []mailmap.OutboxItem{it})
	noErr(t, err, "EnqueueOutbox")
	id := out[0].ID
	inbox, err := s.Mailbox(ctx, u.ID, "INBOX")
	noErr(t, err, "Mailbox")
	count := func() int {
		ms, err := s.Messages(ctx, u.ID, inbox.ID)
		noErr(t, err, "Messages")
		return len(ms)
	}
	raw := []byte("Subject: delayed\r\n\r\nstill trying\r\n")
	for i := range 2 {
		got, err := s.TransitionOutbox(ctx, mailmap.OutboxStep{ID: id, From: []mailmap.OutboxState{mailmap.OutboxSent}, To: mailmap.OutboxSent,
			Report: &mailmap.OutboxReport{Raw: raw, Delay: true}})
		noErr(t, err, "transition with a delay report")
		if !got.DelayReported || got.Reported || count() != 1 {
			t.Fatalf("after delay report %d: delay=%v final=%v, %d messages; want one report", i, got.DelayReported, got.Reported, count())
		}
	}
	// A transition that conflicts files no report.
	_, err = s.TransitionOutbox(ctx, mailmap.OutboxStep{ID: id, From: []mailmap.OutboxState{mailmap.OutboxQueued}, To: mailmap.OutboxFailed,
		Report: &mailmap.OutboxReport{Raw: raw}})
	wantErr(t, err, mailmap.ErrConflict, "conflicting transition")
	if count() != 1 {
		t.Fatalf("a conflicting transition filed a report")
	}
	// A nil Raw sets the flag only; a later report is then not filed.
	got, err := s.TransitionOutbox(ctx, mailmap.OutboxStep{ID: id, From: []mailmap.OutboxState{mailmap.OutboxSent}, To: mailmap.OutboxAcked, Report: &mailmap.OutboxReport{}})
	noErr(t, err, "final flag without a report")
	if !got.Reported || count() != 1 {
		t.Fatalf("flag only: reported=%v, %d messages", got.Reported, count())
	}
	_, err = s.TransitionOutbox(ctx, mailmap.OutboxStep{ID: id, From: []mailmap.OutboxState{mailmap.OutboxAcked}, To: mailmap.OutboxAcked, Report: &mailmap.OutboxReport{Raw: raw}})
	noErr(t, err, "report after the flag")
	if count() != 1 {
		t.Fatalf("a report was filed twice")
	}
	// Over quota: the transition commits, the report is dropped.
	it2 := testOutboxItem(u.ID, 1)
	it2.State, it2.Reported = mailmap.OutboxSent, false
	out, err = s.EnqueueOutbox(ctx, []mailmap.OutboxItem{it2})
	noErr(t, err, "EnqueueOutbox")
	noErr(t, s.SetQuota(ctx, u.ID, 1), "SetQuota")
	got, err = s.TransitionOutbox(ctx, mailmap.OutboxStep{ID: out[0].ID, From: []mailmap.OutboxState{mailmap.OutboxSent}, To: mailmap.OutboxFailed, Report: &mailmap.OutboxReport{Raw: raw}})
	noErr(t, err, "transition with a report over quota")
	if got.State != mailmap.OutboxFailed || !got.Reported || count() != 1 {
		t.Fatalf("over quota: %+v, %d messages", got, count())
	}
}

// testPoWJobs: dedupe, fairness between users, leases.
func testPoWJobs(t *testing.T, s mailmap.Store) {
	ctx := context.Background()
	a := newUser(t, s, "alice")
	b := newUser(t, s, "bob")
	now := t0
	// Alice queues three jobs, then Bob one: Bob's is second, not fourth.
	var aj []mailmap.PoWJob
	for range 3 {
		j, err := s.EnqueuePoW(ctx, testJob("msg", a.ID))
		noErr(t, err, "EnqueuePoW")
		aj = append(aj, j)
	}
	bj, err := s.EnqueuePoW(ctx, testJob("msg", b.ID))
	noErr(t, err, "EnqueuePoW")
	// A pubkey asked for twice is one job, ahead of mail by priority.
	pk := testJob("pubkey", 0)
	pk.Priority, pk.DedupeKey = 3, "pubkey:BM-x"
	p1, err := s.EnqueuePoW(ctx, pk)
	noErr(t, err, "EnqueuePoW pubkey")
	p2, err := s.EnqueuePoW(ctx, pk)
	noErr(t, err, "EnqueuePoW pubkey again")
	if p1.ID != p2.ID {
		t.Fatalf("a deduplicated job was queued twice: %d, %d", p1.ID, p2.ID)
	}
	if got, err := s.PoWJobByKey(ctx, "pubkey:BM-x"); err != nil || got.ID != p1.ID {
		t.Fatalf("PoWJobByKey = %+v, %v; want job %d", got, err, p1.ID)
	}
	_, err = s.PoWJobByKey(ctx, "pubkey:BM-none")
	wantErr(t, err, mailmap.ErrNotFound, "PoWJobByKey of an unknown key")
	var order []int64
	for range 5 {
		j, ok, err := s.ClaimPoW(ctx, "w1", now, time.Minute)
		noErr(t, err, "ClaimPoW")
		if !ok {
			t.Fatalf("ClaimPoW found nothing after %v", order)
		}
		if j.State != mailmap.PoWSolving || j.LeaseOwner != "w1" {
			t.Fatalf("claimed job %+v", j)
		}
		order = append(order, j.ID)
	}
	want := []int64{p1.ID, aj[0].ID, bj.ID, aj[1].ID, aj[2].ID}
	if len(order) != len(want) {
		t.Fatalf("claim order %v, want %v", order, want)
	}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("claim order %v, want %v (priority, then users in turn)", order, want)
		}
	}
	if _, ok, err := s.ClaimPoW(ctx, "w2", now, time.Minute); err != nil || ok {
		t.Fatalf("ClaimPoW with every job leased = %v, %v", ok, err)
	}
	// Lease: renew by the owner only; after it runs out, another worker takes over.
	noErr(t, s.RenewPoW(ctx, aj[0].ID, "w1", now.Add(2*time.Minute), 5), "RenewPoW")
	wantErr(t, s.RenewPoW(ctx, aj[0].ID, "w2", now.Add(2*time.Minute), 5), mailmap.ErrConflict, "RenewPoW by another worker")
	j, ok, err := s.ClaimPoW(ctx, "w2", now.Add(90*time.Second), time.Minute)
	noErr(t, err, "ClaimPoW after leases ran out")
	if !ok || j.ID == aj[0].ID {
		t.Fatalf("ClaimPoW after leases ran out = %+v, %v; want a job other than the renewed one", j, ok)
	}
	wantErr(t, s.SolvedPoW(ctx, j.ID, "w1", 42, 7, now), mailmap.ErrConflict, "SolvedPoW by the worker that lost the lease")
	noErr(t, s.SolvedPoW(ctx, j.ID, "w2", 42, 7, now), "SolvedPoW")
	got, err := s.PoWJob(ctx, j.ID)
	noErr(t, err, "PoWJob")
	if got.State != mailmap.PoWSolved || got.Nonce != 42 || got.Trials != 7 {
		t.Fatalf("solved job = %+v", got)
	}
	// A graceful shutdown releases: the solved job comes back first, to be published.
	noErr(t, s.ReleasePoW(ctx, "w2"), "ReleasePoW")
	noErr(t, s.ReleasePoW(ctx, "w1"), "ReleasePoW")
	j, ok, err = s.ClaimPoW(ctx, "w3", now.Add(90*time.Second), time.Minute)
	noErr(t, err, "ClaimPoW after release")
	if !ok || j.ID != got.ID || j.State != mailmap.PoWSolved || j.Nonce != 42 {
		t.Fatalf("ClaimPoW after release = %+v, want the solved job %d", j, got.ID)
	}
	wantErr(t, s.DeletePoW(ctx, j.ID, "w1"), mailmap.ErrConflict, "DeletePoW by another worker")
	noErr(t, s.DeletePoW(ctx, j.ID, "w3"), "DeletePoW")
	all, err := s.PoWJobs(ctx)
	noErr(t, err, "PoWJobs")
	if len(all) != 4 {
		t.Fatalf("PoWJobs = %d jobs, want 4", len(all))
	}
	// A disabled user's jobs wait.
	noErr(t, s.ReleasePoW(ctx, "w3"), "ReleasePoW")
	noErr(t, s.SetDisabled(ctx, a.ID, true), "SetDisabled")
	noErr(t, s.SetDisabled(ctx, b.ID, true), "SetDisabled")
	for {
		j, ok, err := s.ClaimPoW(ctx, "w4", now.Add(time.Hour), time.Minute)
		noErr(t, err, "ClaimPoW")
		if !ok {
			break
		}
		if j.UserID != 0 {
			t.Fatalf("claimed job %d of a disabled user", j.ID)
		}
	}
}

// testPoWJobsOfOutbox: a job replaced by the next one (ack, then msg) and
// dropped with its row's final transition.
func testPoWJobsOfOutbox(t *testing.T, s mailmap.Store) {
	ctx := context.Background()
	u := newUser(t, s, "alice")
	it := testOutboxItem(u.ID, 0)
	it.State, it.NextAttempt = mailmap.OutboxQueued, t0
	out, err := s.EnqueueOutbox(ctx, []mailmap.OutboxItem{it})
	noErr(t, err, "EnqueueOutbox")
	id := out[0].ID
	ack := testJob("ack", 0)
	ack.Publish = false
	row, err := s.TransitionOutbox(ctx, mailmap.OutboxStep{ID: id, From: []mailmap.OutboxState{mailmap.OutboxQueued}, To: mailmap.OutboxDoingPoW, Job: &ack})
	noErr(t, err, "start ack")
	j, ok, err := s.ClaimPoW(ctx, "w1", t0, time.Minute)
	noErr(t, err, "ClaimPoW")
	if !ok || j.ID != row.PoWJob {
		t.Fatalf("ClaimPoW = %+v", j)
	}
	noErr(t, s.SolvedPoW(ctx, j.ID, "w1", 1, 1, t0), "SolvedPoW")
	// A solved ack is not the scheduler's any more: the outbound worker claims the row.
	if _, ok, err := s.ClaimPoW(ctx, "w2", t0.Add(time.Hour), time.Minute); err != nil || ok {
		t.Fatalf("ClaimPoW of a solved ack = %v, %v", ok, err)
	}
	c, err := s.ClaimOutbox(ctx, []mailmap.OutboxState{mailmap.OutboxDoingPoW}, t0.Add(time.Hour), time.Minute, 1, "o1")
	if err != nil || len(c) != 1 || c[0].PoWJob != j.ID {
		t.Fatalf("ClaimOutbox of a row with a solved ack = %+v, %v", c, err)
	}
	msg := testJob("msg", 0)
	row, err = s.TransitionOutbox(ctx, mailmap.OutboxStep{ID: id, From: []mailmap.OutboxState{mailmap.OutboxDoingPoW}, Owner: "o1", WaitingJob: j.ID,
		To: mailmap.OutboxDoingPoW, Job: &msg})
	noErr(t, err, "ack → msg")
	if row.PoWJob == j.ID || row.PoWJob == 0 {
		t.Fatalf("row waits for job %d after the ack's %d", row.PoWJob, j.ID)
	}
	_, err = s.PoWJob(ctx, j.ID)
	wantErr(t, err, mailmap.ErrNotFound, "the replaced ack job")
	// The stale ack job's owner cannot move the row again.
	_, err = s.TransitionOutbox(ctx, mailmap.OutboxStep{ID: id, From: []mailmap.OutboxState{mailmap.OutboxDoingPoW}, WaitingJob: j.ID, To: mailmap.OutboxSent})
	wantErr(t, err, mailmap.ErrConflict, "completion of a replaced job")
	row, err = s.TransitionOutbox(ctx, mailmap.OutboxStep{ID: id, From: []mailmap.OutboxState{mailmap.OutboxDoingPoW}, WaitingJob: row.PoWJob, To: mailmap.OutboxSent})
	noErr(t, err, "completion")
	all, err := s.PoWJobs(ctx)
	noErr(t, err, "PoWJobs")
	if len(all) != 0 || row.PoWJob != 0 {
		t.Fatalf("jobs after completion: %+v, row job %d", all, row.PoWJob)
	}
}
