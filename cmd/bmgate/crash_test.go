package main

// TestKill9: crash consistency of the whole mail path. Two real `bmgate
// serve` processes on the test network (A sends, B receives; A on SQLite, B
// on PostgreSQL when BMGATE_TEST_PG is set) are SIGKILLed at chosen moments
// while mail flows, and restarted on the same data. Every mail that got a
// 250 must reach B's INBOX exactly once and be acked at A; a mail that did
// not get its 250 may be lost but must not arrive twice.
//
// The kill moments come from a seeded math/rand (the seed is logged; set
// BMGATE_KILL9_SEED to replay a plan). Set BMGATE_KILL9_LOGDIR to keep the
// instances' logs.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bmgate/bmgate/mailmap"
)

// kill9Mails is how many mails must get a 250.
const kill9Mails = 12

// killKind is a moment at which the test kills an instance.
type killKind string

const (
	killADataMid   killKind = "A-mid-DATA"     // A, half the message body sent
	killADataEnd   killKind = "A-end-of-DATA"  // A, racing the commit and the 250 after the final "."
	killAPipeline  killKind = "A-pipeline"     // A, just after a 250: claim, doing_pow, proof of work
	killAPublished killKind = "A-published"    // A, on its "published" log line (before the row is marked sent)
	killAAcked     killKind = "A-acknowledged" // A, on its "acknowledged" log line (before the row is marked acked)
	killBDelivered killKind = "B-delivered"    // B, on its "delivered msg" log line (before ack and processed mark)
	killBReceived  killKind = "B-received"     // B, when its received-object counter moves (ingest)
	killBRandom    killKind = "B-random"       // B, a random moment after a 250
)

func (k killKind) target() string {
	if strings.HasPrefix(string(k), "A") {
		return "A"
	}
	return "B"
}

func (k killKind) dataHook() bool { return k == killADataMid || k == killADataEnd }

// killStep is one planned kill: wait until gate mails have their 250, then
// for the kind's event, then kill.
type killStep struct {
	kind killKind
	gate int
}

var kill9Token = regexp.MustCompile(`kill9-[0-9a-f]+-\d+`)

type kill9Event struct {
	at   time.Duration
	what string
}

func TestKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary, kills it many times")
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("BMGATE_KILL9_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("BMGATE_KILL9_SEED: %v", err)
		}
		seed = v
	}
	t.Logf("seed %d (replay the plan with BMGATE_KILL9_SEED=%d)", seed, seed)
	bmgateBinary(t) // build before the clock starts
	t0 := time.Now()
	since := func() time.Duration { return time.Since(t0).Truncate(time.Millisecond) }
	testDeadline := t0.Add(150 * time.Second)
	if d, ok := t.Deadline(); ok && d.Add(-15*time.Second).Before(testDeadline) {
		testDeadline = d.Add(-15 * time.Second)
	}

	var bdb string
	if os.Getenv("BMGATE_TEST_PG") != "" {
		bdb = testPostgres(t)
	}
	logDir := os.Getenv("BMGATE_KILL9_LOGDIR")
	if logDir == "" {
		logDir = t.TempDir()
	} else if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	bName := "B(sqlite)"
	if bdb != "" {
		bName = "B(postgres)"
	}
	a := &crashNode{t: t, in: newInstance(t, "A(sqlite)", ""), admin: freePort(t)}
	b := &crashNode{t: t, in: newInstance(t, bName, bdb), admin: freePort(t)}
	if os.Getenv("BMGATE_KILL9_LOGDIR") != "" { // keep the data directories with the logs
		a.in.data, b.in.data = filepath.Join(logDir, "a-data"), filepath.Join(logDir, "b-data")
	}
	a.peer, b.peer = b.in.p2p, a.in.p2p // both dial: a restarted node reconnects at once
	for _, n := range []*crashNode{a, b} {
		lw, err := newLogWatch(filepath.Join(logDir, strings.ToLower(n.in.name[:1])+".log"))
		if err != nil {
			t.Fatal(err)
		}
		n.logw = lw
		t.Cleanup(func() {
			n.kill9("test cleanup")
			lw.f.Close()
			n.mu.Lock()
			unexpected := n.unexpected
			n.mu.Unlock()
			for _, u := range unexpected {
				t.Errorf("%s: %s", n.in.name, u)
			}
			if t.Failed() {
				t.Logf("%s log (%s):\n%s", n.in.name, lw.path, lw.content())
			}
		})
	}

	a.in.cli("alice-secret\n", "user", "add", "alice")
	b.in.cli("bob-secret\n", "user", "add", "bob")
	aliceBM := strings.TrimSpace(a.in.cli("", "address", "new", "--user", "alice"))
	bobBM := strings.TrimSpace(b.in.cli("", "address", "new", "--user", "bob"))
	alice, bob := aliceBM+"@bm.test", bobBM+"@bm.test"
	for _, n := range []*crashNode{a, b} {
		if err := n.start(); err != nil {
			t.Fatalf("%v:\n%s", err, n.logw.content())
		}
	}

	var (
		evMu   sync.Mutex
		events []kill9Event
	)
	event := func(format string, args ...any) {
		evMu.Lock()
		events = append(events, kill9Event{since(), fmt.Sprintf(format, args...)})
		evMu.Unlock()
	}

	// The plan: one kill of each kind that matters most, then random ones,
	// gates spread over the mails.
	rng := rand.New(rand.NewPCG(seed, 1))
	kinds := []killKind{killADataMid, killADataEnd, killAPipeline, killAPublished, killBDelivered, killBReceived}
	all := []killKind{killADataMid, killADataEnd, killAPipeline, killAPublished, killAAcked, killBDelivered, killBReceived, killBRandom}
	nKills := 6 + rng.IntN(5)
	for len(kinds) < nKills {
		kinds = append(kinds, all[rng.IntN(len(all))])
	}
	rng.Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
	plan := make([]killStep, nKills)
	for i := range plan {
		// Gates in [1, kill9Mails-3], so DATA hooks find a mail to stop in.
		plan[i] = killStep{kind: kinds[i], gate: 1 + i*(kill9Mails-3)/nKills}
	}
	var planText []string
	for _, st := range plan {
		planText = append(planText, fmt.Sprintf("%s@%d", st.kind, st.gate))
	}
	t.Logf("kill plan (%d kills, kind@after-Nth-250): %s", nKills, strings.Join(planText, " "))

	// The sender: one SMTP transaction per mail, a fresh token each time a
	// transaction reached DATA.
	var (
		recMu    sync.Mutex
		recs     []*sendRec
		okCount  atomic.Int32
		stepDone atomic.Int32
	)
	hooks := make(chan *dataHook)
	senderDone := make(chan struct{})
	stop := make(chan struct{}) // the test is over (a t.Fatal included)
	t.Cleanup(func() {
		close(stop)
		<-senderDone
	})
	sendDeadline := t0.Add(100 * time.Second)
	stepsBelow := func(k int) int32 { // steps the sender lets finish before its (k+1)th 250
		n := int32(0)
		for _, st := range plan {
			if st.gate < k-1 {
				n++
			}
		}
		return n
	}
	go func() {
		defer close(senderDone)
		srng := rand.New(rand.NewPCG(seed, 2))
		var hook *dataHook
		idx := 0
		for int(okCount.Load()) < kill9Mails && idx < kill9Mails+len(plan)+8 && time.Now().Before(sendDeadline) {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(50+srng.IntN(300)) * time.Millisecond):
			}
			// Stay at most a mail or two ahead of the kill plan.
			for wait := time.Now().Add(20 * time.Second); hook == nil && stepDone.Load() < stepsBelow(int(okCount.Load())) && time.Now().Before(wait); {
				select {
				case hook = <-hooks:
				case <-time.After(10 * time.Millisecond):
				}
			}
			if hook == nil {
				select {
				case hook = <-hooks:
				default:
				}
			}
			c, err := kill9Dial(a.in.smtp, sendDeadline, stop)
			if err != nil {
				event("sender: %v", err)
				continue
			}
			rec := &sendRec{idx: idx, token: fmt.Sprintf("kill9-%x-%02d", seed&0xffffff, idx), start: since()}
			rec.msgID = rec.token + "@client.test"
			started, err := kill9SendOne(c, alice, bob, rec, hook)
			c.Close()
			if !started { // nothing of this mail reached DATA: retry, same hook
				continue
			}
			if hook != nil {
				rec.hook = hook.kind
				hook = nil
			}
			idx++
			rec.end = since()
			if err == nil {
				rec.got250 = true
				okCount.Add(1)
				event("%s: 250", rec.token)
			} else {
				rec.err = err.Error()
				event("%s: no 250: %v", rec.token, err)
			}
			recMu.Lock()
			recs = append(recs, rec)
			recMu.Unlock()
		}
	}()

	// The executor: runs the plan.
	krng := rand.New(rand.NewPCG(seed, 3))
	jitter := func(max time.Duration) time.Duration {
		if max <= 0 {
			return 0
		}
		return time.Duration(krng.Int64N(int64(max)))
	}
	killPhaseEnd := t0.Add(90 * time.Second)
	waitOK := func(n int, d time.Duration) {
		for end := time.Now().Add(d); int(okCount.Load()) < n && time.Now().Before(end); {
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitLine := func(n *crashNode, substr string, d time.Duration) (string, bool) {
		ch, cancel := n.logw.watch(substr)
		defer cancel()
		select {
		case line := <-ch:
			return line, true
		case <-time.After(d):
			return "", false
		}
	}
	for i, st := range plan {
		if time.Now().After(killPhaseEnd) {
			t.Logf("kill phase over its time: %d of %d kills done", i, len(plan))
			break
		}
		waitOK(st.gate, 30*time.Second)
		target := a
		if st.kind.target() == "B" {
			target = b
		}
		var how string
		switch st.kind {
		case killADataMid, killADataEnd:
			h := &dataHook{kind: st.kind, reached: make(chan struct{}), proceed: make(chan struct{})}
			select {
			case hooks <- h:
				select {
				case <-h.reached:
					how = "sender stopped in DATA"
					if st.kind == killADataEnd {
						d := jitter(15 * time.Millisecond)
						time.Sleep(d)
						how = fmt.Sprintf("%s after the final dot", d)
					}
				case <-time.After(15 * time.Second):
					how = "fallback: the sender never reached DATA"
				}
			case <-time.After(8 * time.Second):
				how = "fallback: the sender took no hook"
				close(h.reached)
			}
			target.kill9(string(st.kind))
			close(h.proceed)
		case killAPipeline:
			base := int(okCount.Load())
			waitOK(base+1, 8*time.Second)
			window := jitter(600 * time.Millisecond)
			how = fmt.Sprintf("%s window after a 250 ran out", window)
			for end := time.Now().Add(window); time.Now().Before(end); {
				if s, err := a.status(); err == nil && (s.Outbox[string(mailmap.OutboxDoingPoW)] > 0 || s.PoW.InProgress > 0) {
					how = fmt.Sprintf("saw doing_pow=%d pow_in_progress=%d", s.Outbox[string(mailmap.OutboxDoingPoW)], s.PoW.InProgress)
					break
				}
				time.Sleep(3 * time.Millisecond)
			}
			target.kill9(string(st.kind) + ": " + how)
		case killAPublished, killAAcked, killBDelivered:
			substr := map[killKind]string{killAPublished: "msg=published", killAAcked: "msg=acknowledged", killBDelivered: `msg="delivered msg"`}[st.kind]
			line, ok := waitLine(target, substr, 8*time.Second)
			// The windows after these lines last a millisecond or two (one
			// or two database writes): kill at once.
			if ok {
				how = fmt.Sprintf("at once on log line %q", kill9Trim(line))
			} else {
				how = "fallback: no " + substr + " line within 8 s"
			}
			target.kill9(string(st.kind) + ": " + how)
		case killBReceived:
			s0, _ := b.status()
			how = "fallback: no object received within 8 s"
			for end := time.Now().Add(8 * time.Second); time.Now().Before(end); {
				if s, err := b.status(); err == nil && s.Objects.Received > s0.Objects.Received {
					d := jitter(20 * time.Millisecond)
					time.Sleep(d)
					how = fmt.Sprintf("%s after objects.received %d→%d", d, s0.Objects.Received, s.Objects.Received)
					break
				}
				time.Sleep(3 * time.Millisecond)
			}
			target.kill9(string(st.kind) + ": " + how)
		case killBRandom:
			d := jitter(700 * time.Millisecond)
			time.Sleep(d)
			how = fmt.Sprintf("%s after the gate", d)
			target.kill9(string(st.kind) + ": " + how)
		}
		event("KILL #%d %s (%s) [%d×250 so far]: %s", i+1, target.in.name, st.kind, okCount.Load(), how)
		time.Sleep(jitter(300 * time.Millisecond))
		if err := target.start(); err != nil {
			t.Fatalf("restart after kill #%d: %v\n%s", i+1, err, target.logw.content())
		}
		event("restarted %s", target.in.name)
		// Let the pair reconnect before the next step (not an assertion).
		for end := time.Now().Add(10 * time.Second); time.Now().Before(end); {
			sa, ea := a.status()
			sb, eb := b.status()
			if ea == nil && eb == nil && len(sa.Peers) > 0 && len(sb.Peers) > 0 {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		stepDone.Add(1)
	}
	select {
	case <-senderDone:
	case <-time.After(time.Until(sendDeadline) + 20*time.Second):
		t.Fatal("the sender is stuck")
	}
	recMu.Lock()
	sent := slices.Clone(recs)
	recMu.Unlock()
	event("kill phase over: %d kills, %d transactions, %d got 250", stepDone.Load(), len(sent), okCount.Load())
	if int(okCount.Load()) < kill9Mails {
		t.Errorf("A accepted only %d of %d mails within the sending time (%d transactions)", okCount.Load(), kill9Mails, len(sent))
	}

	// Convergence: wait until the system is quiescent (nothing A still
	// has to send, every object A has is at B and processed there), twice
	// in a row, or the deadline.
	ctx := context.Background()
	sta, err := a.openStore(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer sta.Close()
	stb, err := b.openStore(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer stb.Close()
	aliceU, err := sta.UserByName(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	var snap kill9Snapshot
	quiet := 0
	for {
		snap = kill9Take(ctx, sta, stb, aliceU.ID, b.in.imap)
		if snap.err == nil && snap.quiescent() {
			quiet++
		} else {
			quiet = 0
		}
		if quiet >= 2 {
			event("quiescent")
			break
		}
		if time.Now().After(testDeadline) {
			event("deadline: not quiescent (%s)", snap.why())
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("runtime %s (kills and convergence, build excluded)", since())

	evMu.Lock()
	var tl strings.Builder
	for _, e := range events {
		fmt.Fprintf(&tl, "  %8s %s\n", e.at, e.what)
	}
	evMu.Unlock()
	t.Logf("timeline:\n%s", tl.String())

	if snap.err != nil {
		t.Fatalf("reading the final state: %v", snap.err)
	}
	var summary strings.Builder
	for _, r := range sent {
		states := []string{}
		for _, it := range snap.rows[r.token] {
			states = append(states, fmt.Sprintf("%d:%s", it.ID, it.State))
		}
		fmt.Fprintf(&summary, "  %s 250=%-5v hook=%-14s inbox=%d outbox=%v\n", r.token, r.got250, r.hook, snap.inbox[r.token], states)
	}
	t.Logf("mails:\n%s", summary.String())
	aLog, bLog := a.logw.content(), b.logw.content()
	var failures []string
	for _, r := range sent {
		rows := snap.rows[r.token]
		n := snap.inbox[r.token]
		var probs []string
		if r.got250 {
			switch {
			case n == 0:
				probs = append(probs, "LOST: not in B's INBOX")
			case n > 1:
				probs = append(probs, fmt.Sprintf("DUPLICATED: %d copies in B's INBOX", n))
			}
			switch {
			case len(rows) == 0:
				probs = append(probs, "NO OUTBOX ROW at A although it got 250")
			case len(rows) > 1:
				probs = append(probs, fmt.Sprintf("%d outbox rows at A", len(rows)))
			}
			for _, it := range rows {
				if it.State != mailmap.OutboxAcked {
					probs = append(probs, fmt.Sprintf("NOT ACKED: outbox %d is %s", it.ID, it.State))
				}
			}
		} else {
			if n > 1 {
				probs = append(probs, fmt.Sprintf("DUPLICATED (mail without 250): %d copies in B's INBOX", n))
			}
			if len(rows) > 1 {
				probs = append(probs, fmt.Sprintf("%d outbox rows at A for a mail without 250", len(rows)))
			}
		}
		if len(probs) == 0 {
			continue
		}
		var d strings.Builder
		fmt.Fprintf(&d, "%s (sent %s–%s, 250=%v, hook=%s, err=%q): %s\n", r.token, r.start, r.end, r.got250, r.hook, r.err, strings.Join(probs, "; "))
		for _, it := range rows {
			fmt.Fprintf(&d, "    outbox %d: state=%s attempts=%d inv=%x last_error=%q next_attempt=%s sent_at=%s acked_at=%s\n",
				it.ID, it.State, it.Attempts, it.InvHash, it.LastError, it.NextAttempt.Format(time.TimeOnly),
				it.SentAt.Format(time.TimeOnly), it.AckedAt.Format(time.TimeOnly))
			re := regexp.MustCompile(`\boutbox=` + strconv.FormatInt(it.ID, 10) + `\b`)
			invs := map[string]bool{}
			for _, l := range kill9Grep(aLog, re) {
				fmt.Fprintf(&d, "      A| %s\n", l)
				if m := regexp.MustCompile(`\binv=([0-9a-f]{64})`).FindStringSubmatch(l); m != nil {
					invs[m[1]] = true
				}
			}
			for inv := range invs {
				for _, l := range kill9Grep(bLog, regexp.MustCompile(regexp.QuoteMeta(inv))) {
					fmt.Fprintf(&d, "      B| %s\n", l)
				}
			}
		}
		fmt.Fprintf(&d, "    kills after it was sent: %s\n", kill9KillsAfter(events, r.start))
		failures = append(failures, d.String())
	}
	for tok, n := range snap.inbox {
		if !slices.ContainsFunc(sent, func(r *sendRec) bool { return r.token == tok }) {
			failures = append(failures, fmt.Sprintf("%s: %d copies in B's INBOX of a token the sender never used", tok, n))
		}
	}
	if len(failures) > 0 {
		t.Errorf("%d mail(s) broke the crash-consistency contract (seed %d):\n%s", len(failures), seed, strings.Join(failures, ""))
	}
	if !snap.quiescent() {
		t.Errorf("the pair never settled before the deadline: %s", snap.why())
	}
}
