package object

import (
	"bytes"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"testing"

	"github.com/bmgate/bmgate/bmcore/address"
	"github.com/bmgate/bmgate/bmcore/bmcrypto"
	"github.com/bmgate/bmgate/bmcore/identity"
	"github.com/bmgate/bmgate/bmcore/pow"
	"github.com/bmgate/bmgate/bmcore/wire"
	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	"github.com/decred/dcrd/dcrec/secp256k1/v4/ecdsa"
)

const vectorsPath = "../testdata/test-vectors.json"

type vectorIdentity struct {
	Address        string `json:"address"`
	PrivSigning    string `json:"priv_signing"`
	PrivEncryption string `json:"priv_encryption"`
	Ripe           string `json:"ripe"`
	Tag            string `json:"tag"`
	TagKey         string `json:"tag_derived_privkey"`
	Bitfield       string `json:"behavior_bitfield"`
	NTPB           uint64 `json:"nonce_trials_per_byte"`
	Extra          uint64 `json:"extra_bytes"`
}

type vectorObject struct {
	Object    string `json:"object"`
	Nonce     uint64 `json:"nonce"`
	TTL       int64  `json:"ttl"`
	IV        string `json:"iv"`
	EphPriv   string `json:"eph_priv"`
	Signature string `json:"signature"`
	Decrypted string `json:"decrypted"`
	Inv       string `json:"inv"`
	Length    int    `json:"object_length"`
	AckData   string `json:"ackdata"`
	Packet    string `json:"packet"`
}

type vectors struct {
	Now        int64 `json:"now"`
	Identities struct {
		Sender    vectorIdentity `json:"sender"`
		Recipient vectorIdentity `json:"recipient_chan"`
	} `json:"identities"`
	Pubkey    vectorObject `json:"pubkey_v4"`
	Ack       vectorObject `json:"ack"`
	Msg       vectorObject `json:"msg"`
	Broadcast vectorObject `json:"broadcast_v5"`
}

func loadVectors(t testing.TB) vectors {
	t.Helper()
	b, err := os.ReadFile(vectorsPath)
	if err != nil {
		t.Fatalf("read vectors: %v", err)
	}
	var v vectors
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("parse vectors: %v", err)
	}
	return v
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

func vectorID(t testing.TB, v vectorIdentity) *identity.Identity {
	t.Helper()
	id, err := identity.FromKeys(4, 1, unhex(t, v.PrivSigning), unhex(t, v.PrivEncryption))
	if err != nil {
		t.Fatal(err)
	}
	if id.Address.String() != v.Address || hex.EncodeToString(id.Address.Ripe[:]) != v.Ripe {
		t.Fatalf("identity %s ripe %x, want %s %s", id.Address, id.Address.Ripe, v.Address, v.Ripe)
	}
	tag, key := id.Address.Tag(), id.Address.TagKey()
	if hex.EncodeToString(tag[:]) != v.Tag || hex.EncodeToString(key[:]) != v.TagKey {
		t.Fatalf("%s: tag %x key %x", v.Address, tag, key)
	}
	return id
}

// checkObject decodes a vector object and checks its length, inventory
// hash and proof of work at the vectors' "now" (network minimum).
func checkObject(t *testing.T, now int64, v vectorObject) (*wire.Object, []byte) {
	t.Helper()
	raw := unhex(t, v.Object)
	if len(raw) != v.Length {
		t.Fatalf("object of %d bytes, want %d", len(raw), v.Length)
	}
	o, err := wire.DecodeObject(raw)
	if err != nil {
		t.Fatal(err)
	}
	if o.Nonce != v.Nonce {
		t.Errorf("nonce %d, want %d", o.Nonce, v.Nonce)
	}
	if got := o.InvHash().String(); got != v.Inv {
		t.Errorf("inv %s, want %s", got, v.Inv)
	}
	if int64(o.ExpiresTime) != now+v.TTL {
		t.Errorf("expires %d, want now+%d", o.ExpiresTime, v.TTL)
	}
	if !pow.Check(raw, now, 1000, 1000) {
		t.Error("proof of work insufficient at network minimum")
	}
	return o, raw
}

// fixedSealer reproduces a vector's ECIES and signature.
func fixedSealer(t *testing.T, v vectorObject) sealer {
	var iv [16]byte
	copy(iv[:], unhex(t, v.IV))
	return sealer{iv: &iv, ephemeral: secp256k1.PrivKeyFromBytes(unhex(t, v.EphPriv)), signature: unhex(t, v.Signature)}
}

func withNonce(nonce uint64, headless []byte) []byte {
	return append(binary.BigEndian.AppendUint64(nil, nonce), headless...)
}

// checkRFC6979 signs data with decred (RFC 6979, low S) and checks it is the
// vector's signature up to the sign of S: the vectors were signed with
// RFC 6979 and no low-S normalisation.
func checkRFC6979(t *testing.T, priv *secp256k1.PrivateKey, data, vecSig []byte) {
	t.Helper()
	ours, err := ecdsa.ParseDERSignature(bmcrypto.Sign(priv, data))
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := ecdsa.ParseDERSignature(vecSig)
	if err != nil {
		t.Fatal(err)
	}
	r1, r2, s1, s2 := ours.R(), theirs.R(), ours.S(), theirs.S()
	if !r1.Equals(&r2) || !(s1.Equals(&s2) || s1.Equals(new(secp256k1.ModNScalar).NegateVal(&s2))) {
		t.Errorf("RFC 6979 signature differs from the vector's")
	}
	if !s2.IsOverHalfOrder() {
		t.Errorf("vector signature expected to have a high S")
	}
}

func TestVectorPubkeyV4(t *testing.T) {
	v := loadVectors(t)
	sender := vectorID(t, v.Identities.Sender)
	o, raw := checkObject(t, v.Now, v.Pubkey)

	pd, err := ParsePubkey(o, sender.Address)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pd.SigningKey[:], sender.PublicSigning()) || !bytes.Equal(pd.EncryptionKey[:], sender.PublicEncryption()) {
		t.Error("embedded keys differ from the sender's")
	}
	if pd.Version != 4 || pd.Stream != 1 || pd.NonceTrialsPerByte != v.Identities.Sender.NTPB ||
		pd.ExtraBytes != v.Identities.Sender.Extra || hex.EncodeToString(binary.BigEndian.AppendUint32(nil, pd.Bitfield)) != v.Identities.Sender.Bitfield {
		t.Errorf("pubkey data %+v", pd)
	}
	if pd.Address() != sender.Address || !pd.DoesAck() {
		t.Errorf("address %s does_ack %v", pd.Address(), pd.DoesAck())
	}
	if tag, ok := PubkeyTag(o); !ok || tag != sender.Address.Tag() {
		t.Error("PubkeyTag")
	}

	// Decrypt with the tag key: the plaintext and its signature.
	tagKey := sender.Address.TagKey()
	plain, err := bmcrypto.Decrypt(o.Payload[32:], secp256k1.PrivKeyFromBytes(tagKey[:]))
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(plain) != v.Pubkey.Decrypted {
		t.Errorf("decrypted\n got %x\nwant %s", plain, v.Pubkey.Decrypted)
	}
	keyBlockLen := 4 + 64 + 64 + 3 + 3 // 1000 takes 3 bytes as a var_int
	sig := plain[keyBlockLen+1:]       // after the 1-byte signature length
	if hex.EncodeToString(sig) != v.Pubkey.Signature {
		t.Errorf("signature %x", sig)
	}
	signed := append(append([]byte(nil), raw[8:o.HeaderLen+32]...), plain[:keyBlockLen]...)
	if !bmcrypto.Verify(sender.PublicSigning(), signed, sig) {
		t.Error("signature does not verify")
	}
	checkRFC6979(t, sender.Signing, signed, sig)

	// Rebuild with the vector's IV, ephemeral key and signature: same bytes.
	headless, err := buildPubkey(sender, o.ExpiresTime, fixedSealer(t, v.Pubkey))
	if err != nil {
		t.Fatal(err)
	}
	if got := withNonce(o.Nonce, headless); !bytes.Equal(got, raw) {
		t.Errorf("rebuilt pubkey\n got %x\nwant %x", got, raw)
	}
}

func TestVectorAck(t *testing.T) {
	v := loadVectors(t)
	o, raw := checkObject(t, v.Now, v.Ack)
	ackData := unhex(t, v.Ack.AckData)
	if o.Type != wire.ObjectMsg || o.Version != 1 || o.Stream != 1 {
		t.Errorf("ack header %d/%d/%d", o.Type, o.Version, o.Stream)
	}
	// NewAckData with the vector's "random" bytes: SHA-512("bm-spec-ack")[:32].
	seed := sha512.Sum512([]byte("bm-spec-ack"))
	if got := NewAckData(1, bytes.NewReader(seed[:32])); !bytes.Equal(got, ackData) {
		t.Errorf("ack data %x, want %x", got, ackData)
	}
	if exp := AckExpires(v.Now, v.Msg.TTL); exp != o.ExpiresTime {
		t.Errorf("AckExpires = %d, want %d", exp, o.ExpiresTime)
	}
	if got := withNonce(o.Nonce, BuildAck(ackData, o.ExpiresTime)); !bytes.Equal(got, raw) {
		t.Errorf("rebuilt ack %x", got)
	}
	if d, ok := AckDataOf(raw); !ok || !bytes.Equal(d, ackData) {
		t.Errorf("AckDataOf = %x", d)
	}
	// The packet is the object behind an "object" packet header.
	packet := unhex(t, v.Ack.Packet)
	sum := sha512.Sum512(raw)
	header := binary.BigEndian.AppendUint32(nil, 0xE9BEB4D9)
	header = append(header, "object\x00\x00\x00\x00\x00\x00"...)
	header = binary.BigEndian.AppendUint32(header, uint32(len(raw)))
	header = append(header, sum[:4]...)
	if !bytes.Equal(packet, append(header, raw...)) {
		t.Errorf("packet %x", packet)
	}
}

func TestVectorMsg(t *testing.T) {
	v := loadVectors(t)
	sender := vectorID(t, v.Identities.Sender)
	chanID, err := identity.Chan("bitmessage")
	if err != nil {
		t.Fatal(err)
	}
	if chanID.Address.String() != v.Identities.Recipient.Address {
		t.Fatalf("chan address %s", chanID.Address)
	}
	o, raw := checkObject(t, v.Now, v.Msg)

	// Decrypt with the chan's key, among other keys.
	plain, err := bmcrypto.Decrypt(o.Payload, chanID.Encryption)
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(plain) != v.Msg.Decrypted {
		t.Errorf("decrypted\n got %x\nwant %s", plain, v.Msg.Decrypted)
	}
	m, id, err := DecryptMsg(o, []*identity.Identity{sender, chanID})
	if err != nil {
		t.Fatal(err)
	}
	if id != chanID {
		t.Errorf("decrypted by %s", id.Address)
	}
	if m.SenderAddress() != sender.Address || m.SenderAddress().String() != v.Identities.Sender.Address {
		t.Errorf("sender %s", m.SenderAddress())
	}
	if m.DestinationRipe != chanID.Address.Ripe || m.Encoding != EncodingSimple || m.Bitfield != 1 ||
		m.NonceTrialsPerByte != 1000 || m.ExtraBytes != 1000 {
		t.Errorf("msg fields %+v", m)
	}
	if string(m.Message) != "Subject:Hello\nBody:This is a test message." {
		t.Errorf("message %q", m.Message)
	}
	if !bytes.Equal(m.AckPacket, unhex(t, v.Ack.Packet)) {
		t.Errorf("ack field is not ack.packet:\n%x", m.AckPacket)
	}
	if hex.EncodeToString(m.Signature) != v.Msg.Signature {
		t.Errorf("signature %x", m.Signature)
	}
	if pk := m.SenderPubkey(); pk.Address() != sender.Address || pk != PubkeyOf(sender) {
		t.Errorf("sender pubkey %+v", pk)
	}
	text, err := DecodeMessage(m.Encoding, m.Message)
	if err != nil || text.Subject != "Hello" || text.Body != "This is a test message." {
		t.Errorf("decoded %+v, %v", text, err)
	}
	signedEnd := len(plain) - 1 - len(m.Signature)
	checkRFC6979(t, sender.Signing, append(append([]byte(nil), o.SignedHeader()...), plain[:signedEnd]...), m.Signature)

	// Rebuild: same plaintext, same ciphertext, same object.
	content := MsgContent{Encoding: m.Encoding, Message: m.Message, AckPacket: m.AckPacket}
	headless, err := buildMsg(sender, PubkeyOf(chanID), chanID.Address, content, o.ExpiresTime, fixedSealer(t, v.Msg))
	if err != nil {
		t.Fatal(err)
	}
	if got := withNonce(o.Nonce, headless); !bytes.Equal(got, raw) {
		t.Errorf("rebuilt msg\n got %x\nwant %x", got, raw)
	}

	// The sender itself cannot read it.
	if _, id, err := DecryptMsg(o, []*identity.Identity{sender}); !errors.Is(err, ErrNotForUs) || id != nil {
		t.Errorf("sender decrypts: %v", err)
	}
}

func TestVectorBroadcastV5(t *testing.T) {
	v := loadVectors(t)
	sender := vectorID(t, v.Identities.Sender)
	o, raw := checkObject(t, v.Now, v.Broadcast)
	if tag, ok := BroadcastTag(o); !ok || tag != sender.Address.Tag() {
		t.Error("BroadcastTag")
	}
	tagKey := sender.Address.TagKey()
	plain, err := bmcrypto.Decrypt(o.Payload[32:], secp256k1.PrivKeyFromBytes(tagKey[:]))
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(plain) != v.Broadcast.Decrypted {
		t.Errorf("decrypted\n got %x\nwant %s", plain, v.Broadcast.Decrypted)
	}
	general, _ := address.Decode("BM-2cW67GEKkHGonXKZLCzouLLxnLym3azS8r")
	v3, _ := address.Decode("BM-2DBPTgeSawWYZceFD69AbDT5q4iUWtj1ZN") // TIGER as v3: another tag
	b, sub, err := DecryptBroadcast(o, []address.Address{general, v3, sender.Address})
	if err != nil {
		t.Fatal(err)
	}
	if sub != sender.Address || b.SenderAddress() != sender.Address {
		t.Errorf("subscription %s sender %s", sub, b.SenderAddress())
	}
	if string(b.Message) != "Subject:Broadcast test\nBody:Hello subscribers." || b.Encoding != 2 {
		t.Errorf("message %q", b.Message)
	}
	if hex.EncodeToString(b.Signature) != v.Broadcast.Signature {
		t.Errorf("signature %x", b.Signature)
	}
	if b.SenderPubkey() != PubkeyOf(sender) {
		t.Errorf("sender pubkey %+v", b.SenderPubkey())
	}
	signedEnd := len(plain) - 1 - len(b.Signature)
	checkRFC6979(t, sender.Signing, append(append([]byte(nil), raw[8:o.HeaderLen+32]...), plain[:signedEnd]...), b.Signature)

	headless, err := buildBroadcast(sender, MsgContent{Encoding: b.Encoding, Message: b.Message}, o.ExpiresTime, fixedSealer(t, v.Broadcast))
	if err != nil {
		t.Fatal(err)
	}
	if got := withNonce(o.Nonce, headless); !bytes.Equal(got, raw) {
		t.Errorf("rebuilt broadcast\n got %x\nwant %x", got, raw)
	}
	if _, _, err := DecryptBroadcast(o, []address.Address{general, v3}); !errors.Is(err, ErrNotWanted) {
		t.Errorf("unsubscribed: %v", err)
	}
}

// docs/protocol.md §6.6: the getpubkey for the TIGER v4 address.
func TestVectorGetpubkey(t *testing.T) {
	raw := unhex(t, "0000000000026380000000006553f10000000000040138"+"35718d5edb53946cc42683a80a3b5a2c5771b9fecf80f4c74cb5174b25fedf")
	o, err := wire.DecodeObject(raw)
	if err != nil {
		t.Fatal(err)
	}
	if o.InvHash().String() != "8d85c01e8de25f70e2d875394070e31197d00afb49375e13880fceed640b1ccf" {
		t.Errorf("inv %s", o.InvHash())
	}
	if !pow.Check(raw, 1699996400, 1000, 1000) {
		t.Error("proof of work")
	}
	tiger, _ := address.Decode("BM-2cWzSnwjJ7yRP3nLEWUV5LisTZyREWSzUK")
	g, err := ParseGetpubkey(o)
	if err != nil {
		t.Fatal(err)
	}
	if g.Version != 4 || g.Stream != 1 || g.Tag != tiger.Tag() || !g.For(tiger) {
		t.Errorf("getpubkey %+v", g)
	}
	if got := withNonce(o.Nonce, BuildGetpubkey(tiger, o.ExpiresTime)); !bytes.Equal(got, raw) {
		t.Errorf("rebuilt getpubkey %x", got)
	}
}

// Every truncation of every vector object fails to parse, without panics.
func TestVectorTruncations(t *testing.T) {
	v := loadVectors(t)
	sender := vectorID(t, v.Identities.Sender)
	chanID, _ := identity.Chan("bitmessage")
	for _, vo := range []vectorObject{v.Pubkey, v.Msg, v.Broadcast} {
		raw := unhex(t, vo.Object)
		for n := 0; n < len(raw); n++ {
			o, err := wire.DecodeObject(raw[:n])
			if err != nil {
				continue
			}
			if _, err := ParsePubkey(o, sender.Address); err == nil {
				t.Fatalf("pubkey truncated to %d parsed", n)
			}
			if _, _, err := DecryptMsg(o, []*identity.Identity{chanID}); err == nil {
				t.Fatalf("msg truncated to %d decrypted", n)
			}
			if _, _, err := DecryptBroadcast(o, []address.Address{sender.Address}); err == nil {
				t.Fatalf("broadcast truncated to %d decrypted", n)
			}
		}
	}
}
