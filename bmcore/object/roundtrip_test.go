package object

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/bmgate/bmgate/bmcore/address"
	"github.com/bmgate/bmgate/bmcore/bmcrypto"
	"github.com/bmgate/bmgate/bmcore/identity"
	"github.com/bmgate/bmgate/bmcore/pow"
	"github.com/bmgate/bmgate/bmcore/wire"
)

const testNow = 1700000000

// solve finds a nonce at the lowest difficulty (1/1) with a plain loop, so
// the round trips go through real proof of work without pow.Solve.
func solve(t *testing.T, headless []byte) []byte {
	t.Helper()
	ttl := int64(binary.BigEndian.Uint64(headless)) - testNow
	target := pow.Target(uint64(len(headless)+8), ttl, 1, 1)
	ih := pow.InitialHash(headless)
	for n := uint64(0); n < 1<<24; n++ {
		if pow.Trial(n, &ih) <= target {
			obj := withNonce(n, headless)
			if !pow.Check(obj, testNow, 1, 1) {
				t.Fatal("solved object fails pow.Check")
			}
			return obj
		}
	}
	t.Fatal("no nonce found")
	return nil
}

// decode turns built bytes back into an object, as a receiver would.
func decode(t *testing.T, obj []byte) *wire.Object {
	t.Helper()
	o, err := wire.DecodeObject(append([]byte(nil), obj...))
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func testIdentities(t *testing.T, seed byte) (*identity.Identity, *identity.Identity, *identity.Identity) {
	t.Helper()
	rng := rand.NewChaCha8([32]byte{seed})
	var ids [3]*identity.Identity
	for i := range ids {
		id, err := identity.NewRandom(1, rng)
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = id
	}
	return ids[0], ids[1], ids[2]
}

// asVersion returns a copy of id with its address recomputed for version
// and stream; the ripe does not depend on either.
func asVersion(id *identity.Identity, version, stream uint64) *identity.Identity {
	c := *id
	c.Address.Version, c.Address.Stream = version, stream
	return &c
}

func TestRoundTripPubkey(t *testing.T) {
	a, b, _ := testIdentities(t, 1)
	rng := rand.NewChaCha8([32]byte{11})
	for _, version := range []uint64{2, 3, 4} {
		id := asVersion(a, version, 3)
		id.NonceTrialsPerByte, id.ExtraBytes, id.Bitfield = 2000, 300, 0
		headless, err := BuildPubkey(id, testNow+3600, rng)
		if err != nil {
			t.Fatal(err)
		}
		o := decode(t, solve(t, headless))
		if o.Type != wire.ObjectPubkey || o.Version != version || o.Stream != 3 {
			t.Fatalf("v%d header %d/%d/%d", version, o.Type, o.Version, o.Stream)
		}
		pd, err := ParsePubkey(o, id.Address)
		if err != nil {
			t.Fatalf("v%d: %v", version, err)
		}
		want := PubkeyOf(id)
		if pd != want || pd.Address() != id.Address || pd.DoesAck() {
			t.Errorf("v%d: %+v, want %+v", version, pd, want)
		}
		if version == 2 && (pd.NonceTrialsPerByte != 0 || pd.ExtraBytes != 0) {
			t.Error("v2 carries no demand")
		}
		// Someone else's address is not what we asked for.
		other := asVersion(b, version, 3).Address
		if _, err := ParsePubkey(o, other); !errors.Is(err, ErrNotWanted) {
			t.Errorf("v%d with another want: %v", version, err)
		}
		if version < 4 {
			if pd, err := ParsePubkey(o, address.Address{}); err != nil || pd.Address() != id.Address {
				t.Errorf("v%d without want: %v", version, err)
			}
		} else if _, err := ParsePubkey(o, address.Address{}); !errors.Is(err, ErrNotWanted) {
			t.Errorf("v4 without want: %v", err)
		}
		// The stored form round-trips.
		stored, _ := pd.AppendBinary(nil)
		if back, err := DecodePubkeyData(stored); err != nil || back != pd {
			t.Errorf("v%d stored form: %+v, %v", version, back, err)
		}
	}
}

// Tampering is caught by the signature, the key check, or the decryption.
func TestPubkeyTampered(t *testing.T) {
	a, _, _ := testIdentities(t, 2)
	rng := rand.NewChaCha8([32]byte{12})
	v3 := asVersion(a, 3, 1)
	headless, err := BuildPubkey(v3, testNow+3600, rng)
	if err != nil {
		t.Fatal(err)
	}
	obj := withNonce(0, headless)
	for i := 8; i < len(obj); i++ {
		bad := append([]byte(nil), obj...)
		bad[i] ^= 0x01
		o, err := wire.DecodeObject(bad)
		if err != nil {
			continue
		}
		if pd, err := ParsePubkey(o, address.Address{}); err == nil && pd.Address() == v3.Address {
			t.Fatalf("byte %d altered, still the pubkey of %s", i, v3.Address)
		}
	}
	v4 := asVersion(a, 4, 1)
	headless, _ = BuildPubkey(v4, testNow+3600, rng)
	obj = withNonce(0, headless)
	for i := 8; i < len(obj); i++ {
		bad := append([]byte(nil), obj...)
		bad[i] ^= 0x01
		o, err := wire.DecodeObject(bad)
		if err != nil {
			continue
		}
		if _, err := ParsePubkey(o, v4.Address); err == nil {
			t.Fatalf("v4 byte %d altered, still accepted", i)
		}
	}
	// A header claiming another stream fails even though the tag matches.
	o := decode(t, obj)
	o.Stream = 2
	if _, err := ParsePubkey(o, v4.Address); !errors.Is(err, ErrMismatch) {
		t.Errorf("stream mismatch: %v", err)
	}
}

func TestPubkeyLimits(t *testing.T) {
	a, _, _ := testIdentities(t, 3)
	headless, _ := BuildPubkey(asVersion(a, 3, 1), testNow+3600, nil)
	obj := withNonce(0, headless)
	long := append(append([]byte(nil), obj...), make([]byte, 441-len(obj))...)
	if _, err := ParsePubkey(decode(t, long), address.Address{}); !errors.Is(err, ErrSize) {
		t.Errorf("441 bytes: %v", err)
	}
	// Trailing bytes within the limit are ignored, as PyBitmessage does.
	pad := append(append([]byte(nil), obj...), 0, 0, 0)
	if _, err := ParsePubkey(decode(t, pad), address.Address{}); err != nil {
		t.Errorf("trailing bytes: %v", err)
	}
	for _, v := range []uint64{0, 1, 5} {
		bad := withNonce(0, appendHeadless(nil, testNow, wire.ObjectPubkey, v, 1))
		bad = append(bad, make([]byte, 200)...)
		if _, err := ParsePubkey(decode(t, bad), address.Address{}); !errors.Is(err, ErrVersion) {
			t.Errorf("version %d: %v", v, err)
		}
	}
	getpk := withNonce(0, BuildGetpubkey(a.Address, testNow))
	if _, err := ParsePubkey(decode(t, getpk), a.Address); !errors.Is(err, ErrType) {
		t.Errorf("getpubkey as pubkey: %v", err)
	}
	// A v2 pubkey whose encryption key is not on the curve.
	v2, _ := BuildPubkey(asVersion(a, 2, 1), testNow, nil)
	v2 = withNonce(0, v2)
	v2[len(v2)-1] ^= 1
	if _, err := ParsePubkey(decode(t, v2), address.Address{}); !errors.Is(err, ErrBadKey) {
		t.Errorf("off-curve key: %v", err)
	}
}

func TestRoundTripGetpubkey(t *testing.T) {
	a, _, _ := testIdentities(t, 4)
	for _, v := range []uint64{2, 3, 4} {
		addr := asVersion(a, v, 5).Address
		o := decode(t, solve(t, BuildGetpubkey(addr, testNow+7200)))
		g, err := ParseGetpubkey(o)
		if err != nil {
			t.Fatal(err)
		}
		if !g.For(addr) || g.Version != v || g.Stream != 5 {
			t.Errorf("v%d: %+v", v, g)
		}
		other := addr
		other.Stream = 1
		if g.For(other) {
			t.Errorf("v%d: matches another stream", v)
		}
	}
	short := withNonce(0, appendHeadless(nil, testNow, wire.ObjectGetPubkey, 4, 1))
	short = append(short, make([]byte, 20)...) // 42 bytes: a v4 request needs 32
	if _, err := ParseGetpubkey(decode(t, short)); !errors.Is(err, ErrMalformed) {
		t.Errorf("short tag: %v", err)
	}
	long := append(withNonce(0, appendHeadless(nil, testNow, wire.ObjectGetPubkey, 3, 1)), make([]byte, 200)...)
	if _, err := ParseGetpubkey(decode(t, long)); !errors.Is(err, ErrSize) {
		t.Errorf("long: %v", err)
	}
}

func TestRoundTripMsg(t *testing.T) {
	a, b, c := testIdentities(t, 5)
	rng := rand.NewChaCha8([32]byte{13})
	ack := append([]byte("fake ack packet"), make([]byte, 40)...)
	for _, sv := range []uint64{2, 3, 4} {
		for _, rv := range []uint64{3, 4} {
			sender := asVersion(a, sv, 1)
			sender.NonceTrialsPerByte, sender.ExtraBytes = 1500, 2500
			to := asVersion(b, rv, 2)
			content := MsgContent{Encoding: EncodingSimple, Message: EncodeSimple("subject", "body ✓"), AckPacket: ack}
			headless, err := BuildMsg(sender, PubkeyOf(to), to.Address, content, testNow+3600, rng)
			if err != nil {
				t.Fatal(err)
			}
			o := decode(t, solve(t, headless))
			if o.Type != wire.ObjectMsg || o.Version != 1 || o.Stream != 2 {
				t.Fatalf("header %d/%d/%d", o.Type, o.Version, o.Stream)
			}
			m, id, err := DecryptMsg(o, []*identity.Identity{c, nil, sender, to})
			if err != nil {
				t.Fatalf("v%d→v%d: %v", sv, rv, err)
			}
			if id != to || m.SenderAddress() != sender.Address || m.DestinationRipe != to.Address.Ripe {
				t.Errorf("v%d→v%d: id %v sender %s", sv, rv, id, m.SenderAddress())
			}
			if !bytes.Equal(m.Message, content.Message) || !bytes.Equal(m.AckPacket, ack) || m.Encoding != EncodingSimple {
				t.Errorf("v%d→v%d: content %+v", sv, rv, m)
			}
			if sp := m.SenderPubkey(); sp != PubkeyOf(sender) {
				t.Errorf("v%d→v%d: sender pubkey %+v", sv, rv, sp)
			}
			if sv == 2 && (m.NonceTrialsPerByte != 0 || m.ExtraBytes != 0) {
				t.Error("v2 sender carries no demand")
			}
			if sv >= 3 && (m.NonceTrialsPerByte != 1500 || m.ExtraBytes != 2500) {
				t.Errorf("demand %d/%d", m.NonceTrialsPerByte, m.ExtraBytes)
			}
			if m.SigHash() == ([32]byte{}) {
				t.Error("empty sig hash")
			}
			if _, id, err := DecryptMsg(o, []*identity.Identity{a, c}); !errors.Is(err, ErrNotForUs) || id != nil {
				t.Errorf("others decrypt: %v", err)
			}
		}
	}
}

func TestMsgChecks(t *testing.T) {
	a, b, c := testIdentities(t, 6)
	rng := rand.NewChaCha8([32]byte{14})
	content := MsgContent{Encoding: EncodingSimple, Message: EncodeSimple("s", "b")}

	// Surreptitious forwarding: encrypted to b's key, addressed to c's ripe.
	forward := *c
	forward.Encryption = b.Encryption
	headless, err := BuildMsg(a, PubkeyOf(&forward), forward.Address, content, testNow+3600, rng)
	if err == nil {
		t.Fatal("BuildMsg accepted keys that do not belong to the recipient address")
	}
	headless, err = buildMsg(a, PubkeyOf(b), b.Address, content, testNow+3600, newSealer(rng))
	if err != nil {
		t.Fatal(err)
	}
	o := decode(t, withNonce(0, headless))
	other := *b
	other.Address = c.Address // b's keys, claiming another address
	if _, id, err := DecryptMsg(o, []*identity.Identity{&other}); !errors.Is(err, ErrDestination) || id != &other {
		t.Errorf("forwarded msg: %v", err)
	}

	// A signature over other data.
	bogus := sealer{rand: rng, signature: bmcrypto.Sign(a.Signing, []byte("something else"))}
	headless, _ = buildMsg(a, PubkeyOf(b), b.Address, content, testNow+3600, bogus)
	if _, _, err := DecryptMsg(decode(t, withNonce(0, headless)), []*identity.Identity{b}); !errors.Is(err, ErrSignature) {
		t.Errorf("bad signature: %v", err)
	}
	// The signature covers the header: a changed expiresTime fails.
	headless, _ = BuildMsg(a, PubkeyOf(b), b.Address, content, testNow+3600, rng)
	obj := withNonce(0, headless)
	obj[15]++
	if _, _, err := DecryptMsg(decode(t, obj), []*identity.Identity{b}); !errors.Is(err, ErrSignature) {
		t.Errorf("changed expiresTime: %v", err)
	}
	// Versions other than 1, and other types.
	obj = withNonce(0, headless)
	obj[20] = 2
	if _, _, err := DecryptMsg(decode(t, obj), []*identity.Identity{b}); !errors.Is(err, ErrVersion) {
		t.Errorf("msg version 2: %v", err)
	}
	if _, _, err := DecryptMsg(decode(t, withNonce(0, BuildGetpubkey(b.Address, testNow))), []*identity.Identity{b}); !errors.Is(err, ErrType) {
		t.Errorf("getpubkey: %v", err)
	}
}

// The plaintext checks of processmsg, on hand-made plaintexts.
func TestMsgPlaintextChecks(t *testing.T) {
	a, b, _ := testIdentities(t, 7)
	header := appendHeadless(nil, testNow+3600, wire.ObjectMsg, 1, 1)
	seal := func(plain []byte) *wire.Object {
		ct, err := bmcrypto.Encrypt(plain, b.Encryption.PubKey(), nil)
		if err != nil {
			t.Fatal(err)
		}
		return decode(t, withNonce(0, append(append([]byte(nil), header...), ct...)))
	}
	body := func(senderVersion, stream uint64, msgLen int) []byte {
		pd := PubkeyOf(a)
		pd.Version = senderVersion
		p := wire.AppendVarInt(nil, senderVersion)
		p = wire.AppendVarInt(p, stream)
		p = pd.appendKeyBlock(p)
		p = append(p, b.Address.Ripe[:]...)
		p = wire.AppendVarInt(p, 2)
		p = wire.AppendVarStr(p, make([]byte, msgLen))
		p = wire.AppendVarStr(p, nil)
		sig := bmcrypto.Sign(a.Signing, append(append([]byte(nil), header...), p...))
		return wire.AppendVarStr(p, sig)
	}
	ok := body(4, 1, 10)
	if _, _, err := DecryptMsg(seal(ok), []*identity.Identity{b}); err != nil {
		t.Fatalf("valid plaintext: %v", err)
	}
	// Trailing bytes after the signature are ignored, as in PyBitmessage.
	if _, _, err := DecryptMsg(seal(append(ok, 1, 2, 3)), []*identity.Identity{b}); err != nil {
		t.Errorf("trailing bytes: %v", err)
	}
	for name, c := range map[string]struct {
		plain []byte
		want  error
	}{
		"sender version 0": {body(0, 1, 10), ErrVersion},
		"sender version 1": {body(1, 1, 10), ErrVersion},
		"sender version 5": {body(5, 1, 10), ErrVersion},
		"stream 0":         {body(4, 0, 10), ErrMalformed},
		"too short":        {body(2, 1, 0)[:169], ErrMalformed},
		"truncated":        {ok[:len(ok)-1], ErrMalformed},
		"non-minimal":      {append([]byte{0xfd, 0x00, 0x04}, ok[1:]...), ErrMalformed},
	} {
		if _, _, err := DecryptMsg(seal(c.plain), []*identity.Identity{b}); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
}

func TestRoundTripBroadcast(t *testing.T) {
	a, b, c := testIdentities(t, 8)
	rng := rand.NewChaCha8([32]byte{15})
	content := MsgContent{Encoding: EncodingSimple, Message: EncodeSimple("news", "to all")}
	for _, sv := range []uint64{2, 3, 4} {
		sender := asVersion(a, sv, 1)
		headless, err := BuildBroadcast(sender, content, testNow+3600, rng)
		if err != nil {
			t.Fatal(err)
		}
		o := decode(t, solve(t, headless))
		wantVersion := uint64(4)
		if sv == 4 {
			wantVersion = 5
		}
		if o.Type != wire.ObjectBroadcast || o.Version != wantVersion || o.Stream != 1 {
			t.Fatalf("header %d/%d/%d", o.Type, o.Version, o.Stream)
		}
		subs := []address.Address{asVersion(b, 3, 1).Address, asVersion(c, 4, 1).Address, sender.Address}
		bc, sub, err := DecryptBroadcast(o, subs)
		if err != nil {
			t.Fatalf("v%d: %v", sv, err)
		}
		if sub != sender.Address || bc.SenderAddress() != sender.Address || !bytes.Equal(bc.Message, content.Message) {
			t.Errorf("v%d: sub %s sender %s", sv, sub, bc.SenderAddress())
		}
		if bc.SenderPubkey() != PubkeyOf(sender) || bc.SigHash() == ([32]byte{}) {
			t.Errorf("v%d: sender pubkey %+v", sv, bc.SenderPubkey())
		}
		if _, _, err := DecryptBroadcast(o, subs[:2]); !errors.Is(err, ErrNotWanted) {
			t.Errorf("v%d unsubscribed: %v", sv, err)
		}
		// The same keys under another version are another subscription.
		if _, _, err := DecryptBroadcast(o, []address.Address{asVersion(a, 5-sv/2, 1).Address}); !errors.Is(err, ErrNotWanted) {
			t.Errorf("v%d other version: %v", sv, err)
		}
	}
	// Encoding 0 is ignored before the signature is checked.
	headless, _ := BuildBroadcast(a, MsgContent{Encoding: EncodingIgnore}, testNow+3600, rng)
	if _, sub, err := DecryptBroadcast(decode(t, withNonce(0, headless)), []address.Address{a.Address}); !errors.Is(err, ErrIgnoredEncoding) || sub != a.Address {
		t.Errorf("encoding 0: %v", err)
	}
	if _, err := BuildBroadcast(a, MsgContent{Encoding: 2, AckPacket: []byte{1}}, testNow, rng); err == nil {
		t.Error("broadcast with an ack accepted")
	}
	// A header claiming another stream than the sender's.
	headless, _ = BuildBroadcast(a, content, testNow+3600, rng)
	o := decode(t, withNonce(0, headless))
	o.Stream = 2
	if _, _, err := DecryptBroadcast(o, []address.Address{a.Address}); !errors.Is(err, ErrMismatch) {
		t.Errorf("stream mismatch: %v", err)
	}
	// A short broadcast is not processed.
	short := append(withNonce(0, appendHeadless(nil, testNow, wire.ObjectBroadcast, 5, 1)), make([]byte, 150)...)
	if _, _, err := DecryptBroadcast(decode(t, short), []address.Address{a.Address}); !errors.Is(err, ErrSize) {
		t.Errorf("short: %v", err)
	}
}

func TestBuildTooLarge(t *testing.T) {
	a, b, _ := testIdentities(t, 9)
	big := MsgContent{Encoding: EncodingTrivial, Message: make([]byte, wire.MaxObjectSize)}
	if _, err := BuildMsg(a, PubkeyOf(b), b.Address, big, testNow, nil); !errors.Is(err, ErrTooLarge) {
		t.Errorf("msg: %v", err)
	}
	if _, err := BuildBroadcast(a, big, testNow, nil); !errors.Is(err, ErrTooLarge) {
		t.Errorf("broadcast: %v", err)
	}
}

func TestAckTTL(t *testing.T) {
	const day = 86400
	for ttl, want := range map[int64]int64{
		3600: day, day - 1: day, day: 7 * day, 4 * day: 7 * day, 7*day - 1: 7 * day, 7 * day: 28 * day, 28 * day: 28 * day,
	} {
		if got := AckTTL(ttl); got != want {
			t.Errorf("AckTTL(%d) = %d, want %d", ttl, got, want)
		}
		if got := AckExpires(testNow, ttl); got != uint64(testNow+want) {
			t.Errorf("AckExpires(%d) = %d", ttl, got)
		}
	}
	d := NewAckData(300, rand.NewChaCha8([32]byte{}))
	if len(d) != 4+1+3+32 || !bytes.Equal(d[:8], []byte{0, 0, 0, 2, 1, 0xfd, 1, 0x2c}) {
		t.Errorf("ack data %x", d)
	}
	if NewAckData(1, bytes.NewReader(nil)) != nil {
		t.Error("failing reader must give nil")
	}
	if _, ok := AckDataOf(make([]byte, 31)); ok {
		t.Error("short object")
	}
}

// Objects not made by wire.DecodeObject are refused, not a panic.
func TestHandMadeObject(t *testing.T) {
	a, _, _ := testIdentities(t, 10)
	for _, o := range []*wire.Object{nil, {}, {Type: wire.ObjectPubkey, Version: 4, HeaderLen: 100, Raw: make([]byte, 50)}} {
		if _, err := ParsePubkey(o, a.Address); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParsePubkey(%+v) = %v", o, err)
		}
		if _, err := ParseGetpubkey(o); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseGetpubkey: %v", err)
		}
		if _, _, err := DecryptMsg(o, []*identity.Identity{a}); !errors.Is(err, ErrMalformed) {
			t.Errorf("DecryptMsg: %v", err)
		}
		if _, _, err := DecryptBroadcast(o, []address.Address{a.Address}); !errors.Is(err, ErrMalformed) {
			t.Errorf("DecryptBroadcast: %v", err)
		}
		if _, ok := PubkeyTag(o); ok {
			t.Error("PubkeyTag")
		}
		if _, ok := BroadcastTag(o); ok {
			t.Error("BroadcastTag")
		}
	}
}
