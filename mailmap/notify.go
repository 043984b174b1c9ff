package mailmap

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// subBuffer is how many changes a subscriber may fall behind before it is
// told to resynchronise.
const subBuffer = 256

// resync is sent when a subscriber missed changes.
func resync(userID int64) Change { return Change{UserID: userID, Kind: ChangeMailboxes} }

// hub fans changes out to this process's subscribers. It never blocks a
// writer: a subscriber whose buffer is full misses changes and gets one
// resync notice instead.
type hub struct {
	mu     sync.Mutex
	subs   map[int64]map[*subscriber]struct{}
	closed bool
}

type subscriber struct {
	ch      chan Change
	dropped bool // a resync notice is queued and nothing was delivered since
}

func newHub() *hub { return &hub{subs: map[int64]map[*subscriber]struct{}{}} }

// Subscribe implements Notifier.
func (s *sqlStore) Subscribe(userID int64) (<-chan Change, func()) { return s.hub.subscribe(userID) }

func (h *hub) subscribe(userID int64) (<-chan Change, func()) {
	// One slot more than subBuffer is kept for the resync notice, so it
	// always fits.
	sub := &subscriber{ch: make(chan Change, subBuffer+1)}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		close(sub.ch)
		return sub.ch, func() {}
	}
	if h.subs[userID] == nil {
		h.subs[userID] = map[*subscriber]struct{}{}
	}
	h.subs[userID][sub] = struct{}{}
	var once sync.Once
	return sub.ch, func() {
		once.Do(func() {
			h.mu.Lock()
			defer h.mu.Unlock()
			if _, ok := h.subs[userID][sub]; ok {
				delete(h.subs[userID], sub)
				if len(h.subs[userID]) == 0 {
					delete(h.subs, userID)
				}
				close(sub.ch)
			}
		})
	}
}

// deliver queues c without blocking. Only deliver sends on sub.ch (under
// h.mu) and readers only drain it, so a len check cannot go stale upwards.
func (sub *subscriber) deliver(c Change) {
	if len(sub.ch) < subBuffer {
		sub.ch <- c
		sub.dropped = false
		return
	}
	if !sub.dropped {
		// The reserved slot: with dropped false, no resync notice is queued
		// beyond the subBuffer regular ones.
		sub.ch <- resync(c.UserID)
		sub.dropped = true
	}
}

func (h *hub) publish(changes []Change) {
	if len(changes) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range changes {
		for sub := range h.subs[c.UserID] {
			sub.deliver(c)
		}
	}
}

// resyncAll tells every subscriber to resynchronise (changes from other
// processes may have been missed while the LISTEN connection was down).
func (h *hub) resyncAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for userID, subs := range h.subs {
		for sub := range subs {
			sub.deliver(resync(userID))
		}
	}
}

func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for userID, subs := range h.subs {
		for sub := range subs {
			close(sub.ch)
		}
		delete(h.subs, userID)
	}
}

// PostgreSQL: changes travel with pg_notify on one channel. The payload is
// JSON: the origin Store (which already delivered them in-process), the
// user, and compact [mailbox, kind, uid] triples. PostgreSQL limits a
// payload to 8000 bytes, so big transactions send several.
const (
	notifyChannel   = "bmgate_changes"
	maxNotifyBytes  = 7000
	listenRetryMin  = 100 * time.Millisecond
	listenRetryMax  = 5 * time.Second
	listenCloseWait = 5 * time.Second
)

type notifyPayload struct {
	Origin  string     `json:"o"`
	UserID  int64      `json:"u"`
	Changes [][3]int64 `json:"c"`
}

// notifyTx sends the transaction's changes with pg_notify; PostgreSQL
// delivers them to listeners when (and only if) the transaction commits.
func (s *sqlStore) notifyTx(ctx context.Context, w *wtx) error {
	var payloads [][]byte
	var cur *notifyPayload
	size := 0
	flush := func() error {
		if cur == nil {
			return nil
		}
		b, err := json.Marshal(cur)
		if err != nil {
			return fmt.Errorf("encode notification: %w", err)
		}
		payloads = append(payloads, b)
		cur = nil
		return nil
	}
	for _, c := range w.changes {
		if cur != nil && (cur.UserID != c.UserID || size > maxNotifyBytes) {
			if err := flush(); err != nil {
				return err
			}
		}
		if cur == nil {
			cur = &notifyPayload{Origin: s.origin, UserID: c.UserID}
			size = 64
		}
		cur.Changes = append(cur.Changes, [3]int64{c.MailboxID, int64(c.Kind), int64(c.UID)})
		size += 64 // generous bound for one encoded triple
	}
	if err := flush(); err != nil {
		return err
	}
	for _, p := range payloads {
		if _, err := w.ExecContext(ctx, `SELECT pg_notify($1, $2)`, notifyChannel, string(p)); err != nil {
			return fmt.Errorf("notify changes: %w", err)
		}
	}
	return nil
}

// listen starts the LISTEN loop on its own connection and returns once it
// is listening, so a change committed after Open returns is not missed.
func (s *sqlStore) listen(ctx context.Context, dsn string) (stop func(), err error) {
	conn, err := s.listenConn(ctx, dsn)
	if err != nil {
		return nil, err
	}
	lctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go s.listenLoop(lctx, dsn, conn, done)
	return func() {
		cancel()
		<-done
	}, nil
}

func (s *sqlStore) listenConn(ctx context.Context, dsn string) (*pgx.Conn, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("listen for changes: %w", err)
	}
	for _, ch := range []string{notifyChannel, accountsChannel} {
		if _, err := conn.Exec(ctx, "LISTEN "+ch); err != nil {
			conn.Close(context.Background())
			return nil, fmt.Errorf("listen for changes: %w", err)
		}
	}
	return conn, nil
}

func (s *sqlStore) listenLoop(ctx context.Context, dsn string, conn *pgx.Conn, done chan<- struct{}) {
	defer close(done)
	closeConn := func() {
		cctx, cancel := context.WithTimeout(context.Background(), listenCloseWait)
		defer cancel()
		conn.Close(cctx)
	}
	backoff := listenRetryMin
	for {
		n, err := conn.WaitForNotification(ctx)
		if err == nil {
			backoff = listenRetryMin
			if n.Channel == accountsChannel {
				s.accountsNotified(n.Payload)
			} else {
				s.handleNotification(n.Payload)
			}
			continue
		}
		closeConn()
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("change notifications interrupted; reconnecting", "err", err)
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, listenRetryMax)
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			conn, err = s.listenConn(cctx, dsn)
			cancel()
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("change notifications: reconnect failed", "err", err)
		}
		// Whatever happened while we were not listening is lost.
		s.accountsReconnected(ctx)
		s.hub.resyncAll()
	}
}

func (s *sqlStore) handleNotification(payload string) {
	var p notifyPayload
	if err := json.Unmarshal([]byte(payload), &p); err != nil {
		s.log.Warn("ignoring malformed change notification", "err", err)
		return
	}
	if p.Origin == s.origin {
		return // delivered in-process at commit
	}
	changes := make([]Change, 0, len(p.Changes))
	for _, c := range p.Changes {
		changes = append(changes, Change{UserID: p.UserID, MailboxID: c[0], Kind: ChangeKind(c[1]), UID: uint32(c[2])})
	}
	s.hub.publish(changes)
}
