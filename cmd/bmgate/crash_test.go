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
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bmgate/bmgate/bmcore/wire"
	"github.com/bmgate/bmgate/mailmap"
	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-smtp"
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

// logWatch is the instances' stdout and stderr: it appends to a file and
// tells watchers about lines containing a string.
type logWatch struct {
	mu      sync.Mutex
	path    string
	f       *os.File
	partial []byte
	waiters []*logWaiter
}

type logWaiter struct {
	substr string
	ch     chan string
}

func newLogWatch(path string) (*logWatch, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	return &logWatch{path: path, f: f}, nil
}

func (w *logWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, err := w.f.Write(p); err != nil {
		return 0, err
	}
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		line := string(w.partial[:i])
		w.partial = w.partial[i+1:]
		kept := w.waiters[:0]
		for _, wt := range w.waiters {
			if strings.Contains(line, wt.substr) {
				wt.ch <- line // buffered, one send per waiter
			} else {
				kept = append(kept, wt)
			}
		}
		clear(w.waiters[len(kept):])
		w.waiters = kept
	}
	return len(p), nil
}

// mark writes a line of the test's own into the log.
func (w *logWatch) mark(s string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.partial) > 0 { // a line cut by SIGKILL
		w.f.WriteString("\n")
		w.partial = nil
	}
	fmt.Fprintf(w.f, "#### %s %s\n", time.Now().Format("15:04:05.000"), s)
}

// watch returns a channel that receives the next line containing substr.
func (w *logWatch) watch(substr string) (<-chan string, func()) {
	wt := &logWaiter{substr: substr, ch: make(chan string, 1)}
	w.mu.Lock()
	w.waiters = append(w.waiters, wt)
	w.mu.Unlock()
	return wt.ch, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if i := slices.Index(w.waiters, wt); i >= 0 {
			w.waiters = slices.Delete(w.waiters, i, i+1)
		}
	}
}

func (w *logWatch) content() string {
	b, _ := os.ReadFile(w.path)
	return string(b)
}

// crashNode runs one instance's `bmgate serve`, again and again.
type crashNode struct {
	t     *testing.T
	in    *instance
	admin string
	peer  string
	logw  *logWatch

	mu         sync.Mutex
	cmd        *exec.Cmd
	done       chan struct{}
	killed     bool
	starts     int
	unexpected []string // exits the test did not cause
}

var kill9HTTP = &http.Client{Timeout: 2 * time.Second}

func (n *crashNode) start() error {
	args := append([]string{"serve"}, n.in.common()...)
	args = append(args, "--smtp", n.in.smtp, "--imap", n.in.imap, "--p2p", n.in.p2p,
		"--no-bootstrap", "--admin", n.admin, "--peer", n.peer)
	cmd := exec.Command(bmgateBinary(n.t), args...)
	cmd.Stdout, cmd.Stderr = n.logw, n.logw
	n.mu.Lock()
	n.starts++
	gen := n.starts
	n.mu.Unlock()
	n.logw.mark(fmt.Sprintf("start #%d", gen))
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	n.mu.Lock()
	n.cmd, n.done, n.killed = cmd, done, false
	n.mu.Unlock()
	go func() {
		err := cmd.Wait()
		n.mu.Lock()
		if !n.killed {
			n.unexpected = append(n.unexpected, fmt.Sprintf("start #%d exited on its own: %v", gen, err))
		}
		n.mu.Unlock()
		close(done)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-done:
			return fmt.Errorf("%s exited during start-up", n.in.name)
		default:
		}
		if _, err := n.status(); err == nil {
			if c, err := net.Dial("tcp", n.in.smtp); err == nil {
				c.Close()
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready within 30 s", n.in.name)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill9 SIGKILLs the running process and waits for it to be gone.
func (n *crashNode) kill9(why string) {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.killed = true
	n.cmd = nil
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
	n.logw.mark("SIGKILL: " + why)
}

func (n *crashNode) status() (Status, error) {
	resp, err := kill9HTTP.Get("http://" + n.admin + "/status")
	if err != nil {
		return Status{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Status{}, fmt.Errorf("status: %s", resp.Status)
	}
	var s Status
	err = json.NewDecoder(resp.Body).Decode(&s)
	return s, err
}

// openStore opens the instance's database the way the subcommands do.
func (n *crashNode) openStore(ctx context.Context) (mailmap.Store, error) {
	key, err := readSecretKey(filepath.Join(n.in.data, "secret.key"))
	if err != nil {
		return nil, err
	}
	dsn := n.in.db
	if dsn == "" {
		dsn = filepath.Join(n.in.data, SQLiteFile)
	}
	return mailmap.Open(ctx, dsn, mailmap.Options{SecretKey: key})
}

// dataHook makes the sender stop in DATA so the executor can kill A there.
type dataHook struct {
	kind    killKind
	reached chan struct{} // closed by the sender at the point to kill
	proceed chan struct{} // closed by the executor (mid-DATA only)
}

// sendRec is one SMTP transaction that reached DATA (its token was sent).
type sendRec struct {
	idx          int
	token, msgID string
	start, end   time.Duration
	got250       bool
	err          string
	hook         killKind
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

// kill9Dial connects to A's SMTP and authenticates, retrying while A is
// down (a kill in between costs no token).
func kill9Dial(addr string, deadline time.Time, stop <-chan struct{}) (*smtp.Client, error) {
	last := errors.New("the test is over")
	for time.Now().Before(deadline) {
		select {
		case <-stop:
			return nil, last
		default:
		}
		c, err := smtp.Dial(addr)
		if err == nil {
			c.CommandTimeout, c.SubmissionTimeout = 10*time.Second, 20*time.Second
			if err = c.Auth(plainAuthClient{"alice", "alice-secret"}); err == nil {
				return c, nil
			}
			c.Close()
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	return nil, fmt.Errorf("could not connect to A's SMTP: %v", last)
}

// kill9SendOne runs one transaction. started reports whether DATA began
// (the token went out); err is nil only for a 250.
func kill9SendOne(c *smtp.Client, from, to string, rec *sendRec, hook *dataHook) (started bool, err error) {
	if err := c.Mail(from, nil); err != nil {
		return false, err
	}
	if err := c.Rcpt(to, nil); err != nil {
		return false, err
	}
	w, err := c.Data()
	if err != nil {
		return false, err
	}
	var msg bytes.Buffer
	fmt.Fprintf(&msg, "From: Alice <%s>\r\nTo: %s\r\nSubject: Kill9 %s\r\nMessage-ID: <%s>\r\n"+
		"Content-Type: text/plain; charset=utf-8\r\n\r\n", from, to, rec.token, rec.msgID)
	for i := 0; msg.Len() < 10000; i++ { // past the client's 4 KiB buffer, so half of it reaches A
		fmt.Fprintf(&msg, "%s line %03d of a mail that must arrive exactly once.\r\n", rec.token, i)
	}
	raw := msg.Bytes()
	half := len(raw) / 2
	if _, err := w.Write(raw[:half]); err != nil {
		return true, err
	}
	if hook != nil && hook.kind == killADataMid {
		close(hook.reached)
		select {
		case <-hook.proceed:
		case <-time.After(20 * time.Second): // the executor gave up (t.Fatal)
		}
	}
	if _, err := w.Write(raw[half:]); err != nil {
		return true, err
	}
	if hook != nil && hook.kind == killADataEnd {
		close(hook.reached)
	}
	if err := w.Close(); err != nil {
		return true, err
	}
	_ = c.Quit()
	return true, nil
}

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
