package node

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bmgate/bmgate/bmcore/wire"
)

const (
	// flushTimeout bounds the last writes (an error message) before a close.
	flushTimeout = 2 * time.Second
	// knownPerPeer is the per-generation size of a peer's known-hash set.
	knownPerPeer = 1 << 16
	// maxUploadQueue bounds the getdata requests waiting to be served.
	maxUploadQueue = wire.MaxInvPerMsg
	// uploadBatch is how many objects the writer serves between checks of
	// its control queue, so pings and invs are not stuck behind a long list.
	uploadBatch = 16
	// maxCtrlBytes: a peer that lets this much control traffic pile up is
	// not reading and gets dropped.
	maxCtrlBytes = 8 << 20
)

// Reasons a connection is closed.
var (
	errRefused       = errors.New("refused")
	errTooManyFromIP = fmt.Errorf("%w: another connection from this IP", errRefused)
	errDuplicate     = fmt.Errorf("%w: already connected to this peer", errRefused)
	errBanned        = errors.New("banned for misbehaviour")
	errProtocol      = errors.New("protocol violation")
	errSlowPeer      = errors.New("peer does not read")
	errRotated       = errors.New("rotated (docs/protocol.md §11)")
	errRenewed       = errors.New("renewed so that a PyBitmessage 0.6 peer announces the ack of our msg (interop F1)")
	errSuperseded    = errors.New("simultaneous connection: keeping the one the peer opened")
	errUnresponsive  = errors.New("leaves getdata unanswered")
)

// peer is one connection. Its reader runs in run's goroutine and handles
// packets in order; a writer goroutine drains the queues. Handshake fields
// are written by the reader only, before established is set.
type peer struct {
	n         *Node
	log       *slog.Logger
	inbound   bool
	fixed     bool
	bootstrap bool
	dialAddr  string         // outbound: the address dialled
	key       string         // dedup key in n.byKey; guarded by n.mu
	remote    netip.AddrPort // inbound: set before registration; outbound: by attach, under mu
	nonce     uint64         // our version nonce on this connection
	created   time.Time
	known     *hashSet

	verackSent, verackRecv bool
	version                atomic.Pointer[wire.MsgVersion]
	established            atomic.Bool
	fetchAfter             atomic.Int64 // UnixNano; no getdata before (Config.GetDataDelay)

	// Writer state and the connection's lifecycle, guarded by mu.
	mu         sync.Mutex
	conn       net.Conn
	cancelDial context.CancelFunc
	closing    bool
	flush      bool
	reason     error
	quitAt     time.Time
	ctrl       [][]byte
	ctrlBytes  int
	announceQ  []wire.InvHash
	uploads    []wire.InvHash
	uploadSet  map[wire.InvHash]struct{}
	greet      bool
	wake       chan struct{}
	quit       chan struct{}
	closingF   atomic.Bool // mirrors closing for lock-free reads

	// Download state, guarded by n.fetch.mu.
	want, retry        []wire.InvHash
	inflight           map[wire.InvHash]fetchReq
	fetchTracked       int       // objects of the fetch table p is a source of
	fetchDelivered     int       // requests answered (recent record)
	fetchUnanswered    int       // requests unanswered (recent record)
	fetchLastDelivered time.Time // last answer, on the fetcher's clock
	fetchOwedSince     time.Time // first request not answered since the last answer
	fetchShareLogged   bool      // p's share overflow was logged
	fetchPenalized     bool      // p was found unresponsive

	lastRecv, lastSend atomic.Int64 // UnixNano
	bytesIn, bytesOut  atomic.Uint64

	// Inventory token bucket, reader goroutine only.
	invTokens float64
	invAt     time.Time
}

func newPeer(n *Node, inbound bool, dialAddr string) *peer {
	p := &peer{
		n:         n,
		inbound:   inbound,
		dialAddr:  dialAddr,
		key:       dialAddr,
		nonce:     randomNonce(),
		created:   time.Now(),
		known:     newHashSet(knownPerPeer),
		uploadSet: map[wire.InvHash]struct{}{},
		wake:      make(chan struct{}, 1),
		quit:      make(chan struct{}),
		invTokens: float64(n.cfg.InvBurst),
		invAt:     time.Now(),
	}
	p.fixed = !inbound && n.fixed[dialAddr]
	dir := "out"
	if inbound {
		dir = "in"
	}
	p.log = n.log.With("conn", newConnID(), "dir", dir)
	if dialAddr != "" {
		p.log = p.log.With("peer", dialAddr)
	}
	return p
}

// attach gives the peer its connection; it returns false (and closes conn)
// if the peer was closed meanwhile.
func (p *peer) attach(conn net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closing {
		_ = conn.Close()
		return false
	}
	p.conn = conn
	if !p.remote.IsValid() {
		if ap, err := netip.ParseAddrPort(conn.RemoteAddr().String()); err == nil {
			p.remote = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		}
	}
	now := time.Now().UnixNano()
	p.lastRecv.Store(now)
	p.lastSend.Store(now)
	return true
}

func (p *peer) isClosing() bool { return p.closingF.Load() }

func (p *peer) remoteVersion() *wire.MsgVersion { return p.version.Load() }

func (p *peer) inStream(s uint64) bool {
	v := p.version.Load()
	return v != nil && slices.Contains(v.Streams, s)
}

func (p *peer) displayAddr() string {
	p.n.mu.Lock()
	defer p.n.mu.Unlock()
	if p.key != "" {
		return p.key
	}
	return p.remote.String()
}

// banKey identifies the peer for scores and bans: the dialled address of an
// outbound peer, the IP of an inbound one. Inbound loopback peers are keyed
// by IP and port unless BanLoopback is set (see Config.BanLoopback).
func (p *peer) banKey() string {
	if !p.inbound {
		return p.dialAddr
	}
	if p.remote.Addr().IsLoopback() && !p.n.cfg.BanLoopback {
		return p.remote.String()
	}
	return p.remote.Addr().String()
}

// close starts closing the connection. With flush, the packets already
// queued (e.g. an error message) are written first, within flushTimeout.
func (p *peer) close(reason error, flush bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closing {
		return
	}
	p.closing = true
	p.closingF.Store(true)
	p.reason = reason
	p.flush = flush && p.conn != nil
	p.quitAt = time.Now()
	close(p.quit)
	if p.cancelDial != nil {
		p.cancelDial()
	}
	if p.conn == nil {
		return
	}
	if p.flush {
		_ = p.conn.SetReadDeadline(time.Unix(1, 0))
		_ = p.conn.SetWriteDeadline(p.quitAt.Add(flushTimeout))
	} else {
		_ = p.conn.Close()
	}
}

// run serves an attached connection until it closes.
func (p *peer) run() {
	n := p.n
	writerDone := make(chan struct{})
	if !n.spawn(func() { defer close(writerDone); p.writeLoop() }) {
		close(writerDone)
		p.close(ErrClosed, false)
	}
	if !p.inbound {
		p.queue(n.versionFor(p))
	}
	err := p.readLoop()
	p.close(err, errors.Is(err, errRefused) || errors.Is(err, errBanned))
	<-writerDone
	p.mu.Lock()
	_ = p.conn.Close()
	reason := p.reason
	p.mu.Unlock()
	n.retire(p, reason)
}

func (p *peer) readLoop() error {
	n := p.n
	br := bufio.NewReaderSize(p.conn, 64<<10)
	handshakeEnd := time.Now().Add(n.cfg.HandshakeTimeout)
	for {
		dl := handshakeEnd
		if p.established.Load() {
			dl = time.Now().Add(n.cfg.IdleTimeout)
		}
		if !p.setReadDeadline(dl) {
			return p.closeReason()
		}
		cmd, payload, err := wire.ReadPacket(br, n.net.Magic)
		if err != nil {
			return p.readError(err)
		}
		p.lastRecv.Store(time.Now().UnixNano())
		sz := uint64(wire.HeaderSize + len(payload))
		p.bytesIn.Add(sz)
		n.bytesIn.Add(sz)
		if err := p.handle(cmd, payload); err != nil {
			return err
		}
	}
}

func (p *peer) setReadDeadline(t time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closing {
		return false
	}
	_ = p.conn.SetReadDeadline(t)
	return true
}

func (p *peer) closeReason() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.reason
}

// readError turns a read failure into the close reason, logging and scoring
// framing errors as PyB would close on them (docs/protocol.md §2).
func (p *peer) readError(err error) error {
	if p.isClosing() {
		return p.closeReason()
	}
	var ne net.Error
	switch {
	case errors.Is(err, wire.ErrBadMagic):
		p.log.Info("closing: wrong network magic (a peer of another network?)", "err", err)
		p.penalize(scoreBadMagic, "bad magic")
		return fmt.Errorf("%w: %w", errProtocol, err)
	case errors.Is(err, wire.ErrPayloadTooLarge), errors.Is(err, wire.ErrBadChecksum):
		p.log.Info("closing: bad packet", "err", err)
		p.penalize(scoreFraming, err.Error())
		return fmt.Errorf("%w: %w", errProtocol, err)
	case errors.As(err, &ne) && ne.Timeout():
		if p.established.Load() {
			return errors.New("idle timeout")
		}
		p.log.Info("closing: no handshake within the timeout", "timeout", p.n.cfg.HandshakeTimeout)
		return errors.New("handshake timeout")
	case errors.Is(err, io.EOF), errors.Is(err, wire.ErrTruncated):
		return errors.New("connection closed by peer")
	default:
		return err
	}
}

// handle processes one packet. A non-nil error closes the connection.
func (p *peer) handle(cmd string, payload []byte) error {
	if !p.established.Load() {
		switch cmd {
		case wire.CmdVersion:
			return p.onVersion(payload)
		case wire.CmdVerack:
			return p.onVerack()
		case wire.CmdError:
			p.onError(payload)
			return nil
		}
		// docs/protocol.md §2: anything else before the handshake is invalid.
		p.log.Info("closing: command before handshake", "cmd", logSafe(cmd))
		p.penalize(scoreFraming, "command before handshake")
		return fmt.Errorf("%w: %q before handshake", errProtocol, cmd)
	}
	switch cmd {
	case wire.CmdInv:
		return p.onInv(payload)
	case wire.CmdGetData:
		return p.onGetData(payload)
	case wire.CmdObject:
		return p.n.ingest(p, payload)
	case wire.CmdAddr:
		return p.onAddr(payload)
	case wire.CmdPing:
		p.queue(wire.MsgPong{})
	case wire.CmdError:
		p.onError(payload)
	default:
		// pong, a repeated version/verack, dinv (we do not advertise
		// NODE_DANDELION), portcheck and unknown commands are ignored
		// (docs/protocol.md §2, §4.6, §4.9, §14).
		p.log.Debug("ignoring command", "cmd", logSafe(cmd))
	}
	return nil
}

// refuse answers a version we will not accept with a fatal error message,
// as PyB does (the texts are PyB's, typos included), and closes after
// flushing it.
func (p *peer) refuse(text string, why error) error {
	p.log.Info("refusing peer", "reason", why.Error())
	p.queue(&wire.MsgError{Fatal: wire.ErrorFatal, Text: text})
	if errors.Is(why, errRefused) {
		return why
	}
	return fmt.Errorf("%w: %w", errRefused, why)
}

// onVersion checks the remote version (PyB peerValidityChecks, docs/protocol.md §3.3).
func (p *peer) onVersion(payload []byte) error {
	n := p.n
	if p.version.Load() != nil {
		p.log.Debug("ignoring repeated version")
		return nil
	}
	v, err := wire.DecodeVersion(payload)
	if err != nil {
		p.penalize(scoreMalformedMsg, "malformed version")
		return fmt.Errorf("%w: %w", errProtocol, err)
	}
	skew := v.Timestamp - n.cfg.Now().Unix()
	switch {
	case v.ProtocolVersion < wire.ProtocolVersion:
		return p.refuse("Your is using an old protocol. Closing connection.",
			fmt.Errorf("incompatible protocol version %d (< 3), user agent %q", v.ProtocolVersion, logSafe(v.UserAgent)))
	case skew > maxClockSkew:
		return p.refuse("Your time is too far in the future compared to mine. Closing connection.",
			fmt.Errorf("clock %d s ahead of ours", skew))
	case skew < -maxClockSkew:
		return p.refuse("Your time is too far in the past compared to mine. Closing connection.",
			fmt.Errorf("clock %d s behind ours", -skew))
	case len(v.Streams) == 0:
		return p.refuse("We don't have shared stream interests. Closing connection.", errors.New("no streams"))
	case !slices.ContainsFunc(v.Streams, func(s uint64) bool { return slices.Contains(n.streams, s) }):
		// Nothing to exchange: refused before the connection claims its
		// address or counts as established (PyB does the same).
		return p.refuse("We don't have shared stream interests. Closing connection.",
			fmt.Errorf("no stream in common with ours %v: it serves %v", n.streams, v.Streams[:min(len(v.Streams), 4)]))
	}
	if own, ok := n.ownNonce(v.Nonce); ok {
		// Both ends of a connection to ourselves see this; remember the
		// dialled address so it is not tried again.
		if own.dialAddr != "" {
			n.book.markSelf(own.dialAddr)
		}
		if p.dialAddr != "" {
			n.book.markSelf(p.dialAddr)
		}
		return p.refuse("I'm connected to myself. Closing connection.", errors.New("connected to self"))
	}
	if p.inbound {
		switch err := n.claimInbound(p, v.AddrFrom.Port, v.Nonce); {
		case errors.Is(err, errTooManyFromIP):
			return p.refuse("Too many connections from your IP. Closing connection.", err)
		case err != nil:
			return p.refuse("Server full, please try again later.", err)
		}
	}
	p.version.Store(v)
	p.queue(wire.MsgVerack{})
	p.verackSent = true
	if p.inbound {
		// docs/protocol.md §3.3 step 2: verack first, then our version.
		p.queue(n.versionFor(p))
	}
	if p.verackRecv {
		p.establish()
	}
	return nil
}

// maxClockSkew is the accepted difference between version timestamps and our clock.
const maxClockSkew = 3600

func (p *peer) onVerack() error {
	p.verackRecv = true
	if p.verackSent {
		p.establish()
	}
	return nil
}

// establish runs once both veracks are exchanged. No TLS: we never set
// NODE_SSL, so PyB never starts it (docs/protocol.md §3.4).
func (p *peer) establish() {
	n := p.n
	v := p.version.Load()
	after := n.fetch.now()
	if strings.HasPrefix(v.UserAgent, "/PyBitmessage:") && n.cfg.GetDataDelay > 0 {
		after = after.Add(n.cfg.GetDataDelay)
	}
	p.fetchAfter.Store(after.UnixNano())
	// Record the peer before publishing established: whoever sees the
	// connection established (Stats, Peers, the loops) also finds it in
	// the address book.
	now := n.cfg.Now()
	if !p.inbound {
		n.book.connected(p.dialAddr, v.Streams, v.Services, now)
	} else if addr := p.key; addr != "" && v.AddrFrom.Port != 0 && n.class.usable(addr) {
		// Remember inbound peers under their advertised listening port.
		for _, s := range v.Streams {
			if slices.Contains(n.streams, s) {
				n.book.seen(s, addr, v.Services, now)
			}
		}
	}
	p.established.Store(true)
	if n.testHookEstablished != nil {
		n.testHookEstablished(p)
	}
	p.log.Info("peer connected", "user_agent", logSafe(v.UserAgent), "services", v.Services, "streams", v.Streams)
	p.mu.Lock()
	p.greet = true
	p.mu.Unlock()
	p.signal()
	n.fetch.kick()
}

func (p *peer) onError(payload []byte) {
	m, err := wire.DecodeError(payload)
	if err != nil {
		p.log.Debug("malformed error message", "err", err)
		return
	}
	text := m.Text
	if len(text) > 200 {
		text = text[:200]
	}
	p.log.Info("peer sent error", "fatal", m.Fatal, "ban_time", m.BanTime, "text", logSafe(text))
}

// onInv records announced objects we lack (docs/protocol.md §4.3).
func (p *peer) onInv(payload []byte) error {
	n := p.n
	m, err := wire.DecodeInv(payload)
	if err != nil {
		return p.misbehave(scoreMalformedMsg, "malformed inv: "+err.Error())
	}
	now := time.Now()
	p.invTokens = min(float64(n.cfg.InvBurst), p.invTokens+now.Sub(p.invAt).Seconds()*n.cfg.InvRate)
	p.invAt = now
	p.invTokens -= float64(len(m.Hashes))
	if p.invTokens < 0 {
		return p.misbehave(scoreInvFlood, fmt.Sprintf("inventory flood (%d hashes)", len(m.Hashes)))
	}
	p.known.addMany(m.Hashes)
	// The have-set holds every unexpired object of the inventory (loaded at
	// Start, kept up to date by every Put), so no per-hash storage query is
	// needed; a miss only costs a download that Put then finds present.
	lack := n.rejected.without(n.have.without(m.Hashes))
	n.fetch.announce(p, lack)
	return nil
}

// onGetData queues the requested objects for the writer (docs/protocol.md §4.4).
func (p *peer) onGetData(payload []byte) error {
	m, err := wire.DecodeGetData(payload)
	if err != nil {
		return p.misbehave(scoreMalformedMsg, "malformed getdata: "+err.Error())
	}
	p.mu.Lock()
	for _, h := range m.Hashes {
		if len(p.uploads) >= maxUploadQueue {
			break
		}
		if _, ok := p.uploadSet[h]; ok {
			continue
		}
		p.uploadSet[h] = struct{}{}
		p.uploads = append(p.uploads, h)
	}
	p.mu.Unlock()
	p.signal()
	return nil
}

// onAddr stores the usable entries (docs/protocol.md §15.2). Received addrs are not
// relayed, as in PyB head.
func (p *peer) onAddr(payload []byte) error {
	n := p.n
	m, err := wire.DecodeAddr(payload)
	if err != nil {
		return p.misbehave(scoreMalformedMsg, "malformed addr: "+err.Error())
	}
	now := n.cfg.Now().Unix()
	accepted := 0
	for i := range m.Addrs {
		a := &m.Addrs[i]
		if !slices.Contains(n.streams, uint64(a.Stream)) || a.Port == 0 {
			continue
		}
		// Seen in the past (PyB compares with its float clock, so this
		// second counts as past), but within the last 3 hours.
		if t := int64(min(a.Time, 1<<62)); t > now || t <= now-int64(addrAliveWindow/time.Second) {
			continue
		}
		addr := net.JoinHostPort(a.Host(), fmt.Sprint(a.Port))
		if !n.class.usable(addr) {
			continue
		}
		n.book.seen(uint64(a.Stream), addr, a.Services, a.LastSeen())
		accepted++
	}
	p.log.Debug("addr received", "entries", len(m.Addrs), "accepted", accepted)
	if p.bootstrap {
		// docs/protocol.md §15.1: a bootstrap connection ends once it delivered addrs.
		p.log.Info("bootstrap peer delivered addresses", "accepted", accepted)
		return errors.New("bootstrap done")
	}
	return nil
}

// penalize raises the peer's score; the caller is closing the connection anyway.
func (p *peer) penalize(delta float64, why string) {
	if _, banned := p.n.bans.add(p.banKey(), delta, time.Now(), p.n.cfg.BanDuration); banned {
		p.log.Warn("peer banned", "reason", why, "for", p.n.cfg.BanDuration)
	}
}

// misbehave raises the peer's score and returns errBanned (after queueing a
// fatal error message) when it reached the ban threshold.
func (p *peer) misbehave(delta float64, why string) error {
	score, banned := p.n.bans.add(p.banKey(), delta, time.Now(), p.n.cfg.BanDuration)
	if !banned {
		p.log.Debug("peer misbehaved", "reason", why, "score", score)
		return nil
	}
	p.log.Warn("peer banned", "reason", why, "for", p.n.cfg.BanDuration)
	p.queue(&wire.MsgError{Fatal: wire.ErrorFatal, BanTime: uint64(p.n.cfg.BanDuration / time.Second),
		Text: "Too many invalid messages. Closing connection."})
	return fmt.Errorf("%w: %s", errBanned, why)
}
