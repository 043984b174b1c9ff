package node

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/bmgate/bmgate/bmcore/params"
	"github.com/bmgate/bmgate/bmcore/pow"
	"github.com/bmgate/bmgate/bmcore/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testLog collects a test's node logs and prints them only if it fails.
type testLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func newTestLogger(t testing.TB) *slog.Logger {
	l := &testLog{}
	t.Cleanup(func() {
		if t.Failed() {
			l.mu.Lock()
			t.Logf("node logs:\n%s", l.buf.String())
			l.mu.Unlock()
		}
	})
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// testConfig is a loopback node on the test network with short timers.
func testConfig(t testing.TB) Config {
	return Config{
		Network:           params.Testnet,
		ListenAddr:        "127.0.0.1:0",
		MaxOutbound:       -1,
		Inventory:         NewMemInventory(),
		KnownNodes:        NewMemKnownNodes(),
		Logger:            newTestLogger(t),
		AllowPrivateAddrs: true,
		HandshakeTimeout:  3 * time.Second,
		GetDataRetry:      time.Second,
		GetDataDelay:      -1,
		DialInterval:      50 * time.Millisecond,
		RetryBackoff:      100 * time.Millisecond,
		RotateInterval:    -1,
	}
}

func startNode(t testing.TB, cfg Config) *Node {
	t.Helper()
	n, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}

func addrOf(n *Node) string { return n.Addr().String() }

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitPasses waits until the connection manager completed k more passes
// (each one dials, rotates and renews what is due at that moment).
func waitPasses(t testing.TB, n *Node, k uint64) {
	t.Helper()
	target := n.connPasses.Load() + k
	waitFor(t, 10*time.Second, fmt.Sprintf("%d connection manager passes", k), func() bool {
		return n.connPasses.Load() >= target
	})
}

// fakeClock is a Config.Now that moves only when the test moves it.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock(t time.Time) *fakeClock { return &fakeClock{t: t} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func establishedCount(n *Node) int {
	s := n.Stats()
	return s.PeersInbound + s.PeersOutbound
}

// makeObject builds a valid test-network object of the given type with a
// random payload of size bytes, solved with a plain pow.Trial loop.
func makeObject(t testing.TB, now time.Time, ttl time.Duration, typ uint32, size int) []byte {
	t.Helper()
	payload := make([]byte, size)
	_, _ = rand.Read(payload)
	return solveObject(now, ttl, wire.EncodeObject(0, uint64(now.Add(ttl).Unix()), typ, 1, 1, payload))
}

// solveObject finds a nonce for obj (its first 8 bytes are replaced) valid
// at the test-network difficulty for the object's TTL as seen at now.
func solveObject(now time.Time, ttl time.Duration, obj []byte) []byte {
	ih := pow.InitialHash(obj[8:])
	secs := int64(ttl/time.Second) + pow.SolveMargin
	target := pow.Target(uint64(len(obj)), secs, params.Testnet.NonceTrialsPerByte, params.Testnet.ExtraBytes)
	for nonce := uint64(1); ; nonce++ {
		if pow.Trial(nonce, &ih) <= target {
			binary.BigEndian.PutUint64(obj[:8], nonce)
			return obj
		}
	}
}

func hashOf(obj []byte) wire.InvHash { return wire.ComputeInvHash(obj) }

func has(n *Node, h wire.InvHash) bool {
	ok, _ := n.inv.Has(context.Background(), h)
	return ok
}

// rawPeer is a hand-driven protocol client for hostile and edge-case tests.
type rawPeer struct {
	t         testing.TB
	conn      net.Conn
	magic     uint32 // expected on received packets
	sendMagic uint32 // put on sent packets
	nonce     uint64
	userAgent string // "" = /rawpeer:1.0/
	port      uint16 // advertised listening port; 0 = the local port
	mu        sync.Mutex
	pkts      []rawPacket
	notify    chan struct{}
	done      chan struct{}
	err       error
}

type rawPacket struct {
	cmd     string
	payload []byte
}

func dialRaw(t testing.TB, addr string) *rawPeer {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	return newRawPeer(t, conn)
}

func newRawPeer(t testing.TB, conn net.Conn) *rawPeer {
	r := &rawPeer{t: t, conn: conn, magic: params.Testnet.Magic, sendMagic: params.Testnet.Magic, nonce: randomNonce(),
		notify: make(chan struct{}, 1), done: make(chan struct{})}
	go r.readLoop()
	t.Cleanup(func() {
		_ = conn.Close()
		<-r.done
	})
	return r
}

func (r *rawPeer) readLoop() {
	defer close(r.done)
	for {
		cmd, payload, err := wire.ReadPacket(r.conn, r.magic)
		if err != nil {
			r.mu.Lock()
			r.err = err
			r.mu.Unlock()
			return
		}
		r.mu.Lock()
		r.pkts = append(r.pkts, rawPacket{cmd, payload})
		r.mu.Unlock()
		select {
		case r.notify <- struct{}{}:
		default:
		}
	}
}

func (r *rawPeer) send(cmd string, payload []byte) {
	r.t.Helper()
	r.sendRaw(wire.EncodePacket(r.sendMagic, cmd, payload))
}

func (r *rawPeer) sendRaw(b []byte) {
	r.t.Helper()
	_ = r.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := r.conn.Write(b); err != nil {
		r.t.Logf("raw write: %v", err)
	}
}

// keepAlive sends a ping every interval until the connection closes, so
// the peer stays within a short IdleTimeout.
func (r *rawPeer) keepAlive(interval time.Duration) {
	pkt := wire.EncodePacket(r.sendMagic, wire.CmdPing, nil)
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-r.done:
				return
			case <-t.C:
				if _, err := r.conn.Write(pkt); err != nil {
					return
				}
			}
		}
	}()
}

// next returns the next packet with one of cmds, dropping others, or fails.
func (r *rawPeer) next(timeout time.Duration, cmds ...string) rawPacket {
	r.t.Helper()
	p, ok := r.tryNext(timeout, cmds...)
	if !ok {
		r.t.Fatalf("no %v packet within %v", cmds, timeout)
	}
	return p
}

func (r *rawPeer) tryNext(timeout time.Duration, cmds ...string) (rawPacket, bool) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		for len(r.pkts) > 0 {
			p := r.pkts[0]
			r.pkts = r.pkts[1:]
			for _, c := range cmds {
				if p.cmd == c {
					r.mu.Unlock()
					return p, true
				}
			}
		}
		r.mu.Unlock()
		select {
		case <-r.notify:
		case <-r.done:
			// Deliver what arrived before the close.
			r.mu.Lock()
			empty := len(r.pkts) == 0
			r.mu.Unlock()
			if empty {
				return rawPacket{}, false
			}
		case <-deadline.C:
			return rawPacket{}, false
		}
	}
}

// sync sends a ping and returns the packets that arrived before its pong:
// everything the node queued for this connection before it handled the
// ping, on the control queue (pong, getdata, addr, error), has arrived.
func (r *rawPeer) sync(timeout time.Duration) []rawPacket {
	r.t.Helper()
	r.send(wire.CmdPing, nil)
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	var before []rawPacket
	for {
		r.mu.Lock()
		for len(r.pkts) > 0 {
			p := r.pkts[0]
			r.pkts = r.pkts[1:]
			if p.cmd == wire.CmdPong {
				r.mu.Unlock()
				return before
			}
			before = append(before, p)
		}
		r.mu.Unlock()
		select {
		case <-r.notify:
		case <-r.done:
			r.t.Fatalf("connection closed while waiting for pong")
		case <-deadline.C:
			r.t.Fatalf("no pong within %v", timeout)
		}
	}
}

// isClosed reports, without waiting, whether the node closed the connection.
func (r *rawPeer) isClosed() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// closed waits until the node closed the connection.
func (r *rawPeer) closed(timeout time.Duration) bool {
	select {
	case <-r.done:
		return true
	case <-time.After(timeout):
		return false
	}
}

func (r *rawPeer) localPort() uint16 {
	_, p, _ := net.SplitHostPort(r.conn.LocalAddr().String())
	v, _ := strconv.Atoi(p)
	return uint16(v)
}

func (r *rawPeer) version(ts time.Time) *wire.MsgVersion {
	lo, _ := wire.EncodeHost("127.0.0.1")
	return &wire.MsgVersion{
		ProtocolVersion: 3,
		Services:        wire.ServiceNetwork,
		Timestamp:       ts.Unix(),
		AddrRecv:        wire.ShortAddr{Services: 1, IP: lo, Port: 8444},
		AddrFrom:        wire.ShortAddr{Services: 1, IP: lo, Port: cmp.Or(r.port, r.localPort())},
		Nonce:           r.nonce,
		UserAgent:       cmp.Or(r.userAgent, "/rawpeer:1.0/"),
		Streams:         []uint64{1},
	}
}

// handshake runs the initiator side of docs/protocol.md §3.3 against a node.
func (r *rawPeer) handshake() *wire.MsgVersion {
	r.t.Helper()
	r.send(wire.CmdVersion, r.version(time.Now()).Encode())
	p := r.next(5*time.Second, wire.CmdVerack, wire.CmdVersion, wire.CmdError)
	if p.cmd != wire.CmdVerack {
		r.t.Fatalf("handshake: got %s first, want verack", p.cmd)
	}
	p = r.next(5*time.Second, wire.CmdVersion)
	v, err := wire.DecodeVersion(p.payload)
	if err != nil {
		r.t.Fatalf("node version: %v", err)
	}
	r.send(wire.CmdVerack, nil)
	return v
}

// invOf returns an inv payload listing the objects.
func (r *rawPeer) invOf(objs ...[]byte) []byte {
	hs := make([]wire.InvHash, len(objs))
	for i, o := range objs {
		hs[i] = hashOf(o)
	}
	return (&wire.MsgInv{Hashes: hs}).Encode()
}

func randomHashes(n int) []wire.InvHash {
	hs := make([]wire.InvHash, n)
	for i := range hs {
		_, _ = rand.Read(hs[i][:])
	}
	return hs
}

func (r *rawPeer) String() string { return fmt.Sprintf("raw %s", r.conn.LocalAddr()) }
