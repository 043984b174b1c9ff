package node

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"
	"time"

	"github.com/bmgate/bmgate/bmcore/params"
	"github.com/bmgate/bmgate/bmcore/pow"
	"github.com/bmgate/bmgate/bmcore/wire"
)

// badPoWObject returns a well-formed live object whose nonce fails the
// test-network target.
func badPoWObject(t testing.TB, now time.Time) []byte {
	obj := makeObject(t, now, time.Hour, wire.ObjectMsg, 30)
	ih := pow.InitialHash(obj[8:])
	target := pow.Target(uint64(len(obj)), 300, params.Testnet.NonceTrialsPerByte, params.Testnet.ExtraBytes)
	for nonce := uint64(1); ; nonce++ {
		if pow.Trial(nonce, &ih) > target {
			binary.BigEndian.PutUint64(obj[:8], nonce)
			return obj
		}
	}
}

func TestHostilePeers(t *testing.T) {
	cfg := testConfig(t)
	cfg.IdleTimeout = 3 * time.Second
	// Two full invs exhaust the bucket (the default allows four).
	cfg.InvBurst = 60000
	n := startNode(t, cfg)
	ctx := context.Background()
	good, err := n.Publish(ctx, makeObject(t, time.Now(), time.Hour, wire.ObjectPubkey, 150))
	if err != nil {
		t.Fatal(err)
	}
	g := dialRaw(t, addrOf(n))
	g.handshake()
	g.next(5*time.Second, wire.CmdInv)
	g.keepAlive(200 * time.Millisecond)

	// After every offence the good peer is still served.
	checkGood := func(t *testing.T) {
		t.Helper()
		g.send(wire.CmdGetData, (&wire.MsgGetData{Hashes: []wire.InvHash{good}}).Encode())
		if p := g.next(5*time.Second, wire.CmdObject); hashOf(p.payload) != good {
			t.Fatal("good peer got the wrong object")
		}
		g.send(wire.CmdPing, nil)
		g.next(5*time.Second, wire.CmdPong)
	}

	hostile := []struct {
		name string
		run  func(t *testing.T, r *rawPeer)
	}{
		{"bad magic", func(t *testing.T, r *rawPeer) {
			r.sendMagic = params.Mainnet.Magic
			r.send(wire.CmdVersion, r.version(time.Now()).Encode())
		}},
		{"bad checksum", func(t *testing.T, r *rawPeer) {
			r.handshake()
			pkt := wire.EncodePacket(r.magic, wire.CmdInv, (&wire.MsgInv{Hashes: randomHashes(2)}).Encode())
			pkt[wire.HeaderSize-1] ^= 0xFF
			r.sendRaw(pkt)
		}},
		{"oversized length", func(t *testing.T, r *rawPeer) {
			r.handshake()
			hdr := wire.EncodePacket(r.magic, wire.CmdObject, nil)
			binary.BigEndian.PutUint32(hdr[16:20], wire.MaxPayload+1)
			r.sendRaw(hdr)
		}},
		{"command before handshake", func(t *testing.T, r *rawPeer) {
			r.send(wire.CmdInv, (&wire.MsgInv{Hashes: randomHashes(1)}).Encode())
		}},
		{"object before handshake", func(t *testing.T, r *rawPeer) {
			r.send(wire.CmdVersion, r.version(time.Now()).Encode())
			r.send(wire.CmdObject, makeObject(t, time.Now(), time.Hour, 2, 10))
		}},
		{"truncated packet then silence", func(t *testing.T, r *rawPeer) {
			r.handshake()
			pkt := wire.EncodePacket(r.magic, wire.CmdObject, makeObject(t, time.Now(), time.Hour, 2, 100))
			r.sendRaw(pkt[:60])
		}},
		{"truncated header then close", func(t *testing.T, r *rawPeer) {
			r.handshake()
			pkt := wire.EncodePacket(r.magic, wire.CmdPing, nil)
			r.sendRaw(pkt[:10])
			_ = r.conn.Close()
		}},
		{"non-minimal var_int in inv", func(t *testing.T, r *rawPeer) {
			r.handshake()
			for range 5 {
				r.send(wire.CmdInv, append([]byte{0xfd, 0x00, 0x01}, make([]byte, 32)...))
			}
		}},
		{"non-minimal var_int in object header", func(t *testing.T, r *rawPeer) {
			r.handshake()
			for range 5 {
				obj := makeObject(t, time.Now(), time.Hour, 2, 10)
				// version 1 re-encoded as fd0001, then solved so only the
				// var_int is wrong.
				bad := append(append(bytes.Clone(obj[:20]), 0xfd, 0x00, 0x01), obj[21:]...)
				r.send(wire.CmdObject, solveObject(time.Now(), time.Hour, bad))
			}
		}},
		{"inventory flood", func(t *testing.T, r *rawPeer) {
			r.handshake()
			for range 5 {
				r.send(wire.CmdInv, (&wire.MsgInv{Hashes: randomHashes(wire.MaxInvPerMsg)}).Encode())
			}
		}},
		{"inv over 50000", func(t *testing.T, r *rawPeer) {
			r.handshake()
			for range 5 {
				r.send(wire.CmdInv, (&wire.MsgInv{Hashes: randomHashes(wire.MaxInvPerMsg + 1)}).Encode())
			}
		}},
		{"insufficient PoW", func(t *testing.T, r *rawPeer) {
			r.handshake()
			for range 25 {
				r.send(wire.CmdObject, badPoWObject(t, time.Now()))
			}
		}},
		{"wrong expiry", func(t *testing.T, r *rawPeer) {
			r.handshake()
			for i := range 60 {
				if i%2 == 0 {
					r.send(wire.CmdObject, makeObject(t, time.Now().Add(-3*time.Hour), time.Hour, 2, 10))
				} else {
					r.send(wire.CmdObject, makeObject(t, time.Now(), 29*24*time.Hour, 2, 10))
				}
			}
		}},
		{"wrong stream", func(t *testing.T, r *rawPeer) {
			r.handshake()
			for range 25 {
				obj := wire.EncodeObject(0, uint64(time.Now().Add(time.Hour).Unix()), 2, 1, 2, randomHashes(1)[0][:])
				r.send(wire.CmdObject, solveObject(time.Now(), time.Hour, obj))
			}
		}},
	}
	for _, tc := range hostile {
		t.Run(tc.name, func(t *testing.T) {
			before := n.Stats()
			r := dialRaw(t, addrOf(n))
			tc.run(t, r)
			if !r.closed(10 * time.Second) {
				t.Fatal("offender not disconnected")
			}
			checkGood(t)
			after := n.Stats()
			if after.ObjectsReceived != before.ObjectsReceived {
				t.Fatal("an offending object was stored")
			}
		})
	}
	// Nothing the offenders sent was relayed to the good peer.
	g.send(wire.CmdPing, nil)
	for {
		p := g.next(5*time.Second, wire.CmdInv, wire.CmdPong)
		if p.cmd == wire.CmdPong {
			break
		}
		t.Fatalf("good peer got an inv after the hostile tests")
	}
	// Each offender is cut off at score 100: 5 malformed, 20 bad PoW, 50 bad
	// expiry and 20 wrong-stream objects.
	if s := n.Stats(); s.ObjectsInvalid != 5+20+50+20 {
		t.Fatalf("ObjectsInvalid = %d", s.ObjectsInvalid)
	}
}

func TestBanRefusesReconnect(t *testing.T) {
	cfg := testConfig(t)
	cfg.BanLoopback = true
	n := startNode(t, cfg)
	good := dialRaw(t, addrOf(n))
	good.handshake()

	r := dialRaw(t, addrOf(n))
	r.handshake()
	for range 25 {
		r.send(wire.CmdObject, badPoWObject(t, time.Now()))
	}
	p := r.next(10*time.Second, wire.CmdError)
	e, _ := wire.DecodeError(p.payload)
	if e == nil || e.Fatal != wire.ErrorFatal || e.BanTime != uint64(time.Hour/time.Second) {
		t.Fatalf("ban notice %+v", e)
	}
	if !r.closed(5 * time.Second) {
		t.Fatal("offender not disconnected")
	}
	if n.Stats().Banned != 1 {
		t.Fatalf("Banned = %d", n.Stats().Banned)
	}
	// A new connection from the banned IP is closed at once, unanswered.
	again := dialRaw(t, addrOf(n))
	again.send(wire.CmdVersion, again.version(time.Now()).Encode())
	if !again.closed(5 * time.Second) {
		t.Fatal("banned IP accepted")
	}
	if _, ok := again.tryNext(100*time.Millisecond, wire.CmdVerack, wire.CmdVersion); ok {
		t.Fatal("banned IP got a handshake")
	}
	// The existing good connection from the same IP is untouched.
	good.send(wire.CmdPing, nil)
	good.next(5*time.Second, wire.CmdPong)
}

func TestLoopbackNotBannedByDefault(t *testing.T) {
	n := startNode(t, testConfig(t))
	r := dialRaw(t, addrOf(n))
	r.handshake()
	for range 25 {
		r.send(wire.CmdObject, badPoWObject(t, time.Now()))
	}
	if !r.closed(10 * time.Second) {
		t.Fatal("offender not disconnected")
	}
	// Every hidden-service peer comes from 127.0.0.1: no IP ban.
	ok := dialRaw(t, addrOf(n))
	ok.handshake()
}

func TestUnknownCommandsIgnored(t *testing.T) {
	n := startNode(t, testConfig(t))
	r := dialRaw(t, addrOf(n))
	r.handshake()
	r.send(wire.CmdDinv, (&wire.MsgInv{Hashes: randomHashes(3)}).Encode())
	r.send(wire.CmdPortcheck, nil)
	r.send("whatever", []byte{1, 2, 3})
	r.send(wire.CmdPong, nil)
	r.send(wire.CmdVersion, r.version(time.Now()).Encode())
	r.send(wire.CmdError, (&wire.MsgError{Fatal: 0, Text: "just saying"}).Encode())
	r.send(wire.CmdPing, nil)
	r.next(5*time.Second, wire.CmdPong)
	if n.Stats().Fetching != 0 {
		t.Fatal("dinv hashes were requested: dandelion is not advertised")
	}
}
