package object

import (
	"errors"
	"fmt"
	"io"

	"github.com/bmgate/bmgate/bmcore/address"
	"github.com/bmgate/bmgate/bmcore/bmcrypto"
	"github.com/bmgate/bmgate/bmcore/identity"
	"github.com/bmgate/bmgate/bmcore/wire"
	"github.com/decred/dcrd/dcrec/secp256k1/v4"
)

// minBroadcastLen is PyBitmessage's floor for a whole broadcast object
// (bmobject.checkBroadcast).
const minBroadcastLen = 180

// Broadcast is a decrypted and verified broadcast (docs/protocol.md §10.4).
type Broadcast struct {
	SenderVersion, SenderStream uint64
	Bitfield                    uint32
	// SigningKey and EncryptionKey are the sender's, 64-byte X‖Y.
	SigningKey, EncryptionKey [64]byte
	// NonceTrialsPerByte and ExtraBytes are the sender's demand (v3+ only).
	NonceTrialsPerByte, ExtraBytes uint64
	Encoding                       uint64
	Message                        []byte
	Signature                      []byte
}

// SenderPubkey returns the sender's key block, to cache as its pubkey.
func (b *Broadcast) SenderPubkey() PubkeyData {
	return PubkeyData{
		Version: b.SenderVersion, Stream: b.SenderStream, Bitfield: b.Bitfield,
		SigningKey: b.SigningKey, EncryptionKey: b.EncryptionKey,
		NonceTrialsPerByte: b.NonceTrialsPerByte, ExtraBytes: b.ExtraBytes,
	}
}

// SenderAddress returns the address of the embedded sender keys.
func (b *Broadcast) SenderAddress() address.Address { return b.SenderPubkey().Address() }

// SigHash is DSHA512(signature)[32:64], PyBitmessage's duplicate detector.
func (b *Broadcast) SigHash() [32]byte { return sigHash(b.Signature) }

// broadcastKey is the private key a sender's broadcasts are encrypted to:
// the tag key for v4 addresses, the single-SHA-512 key for v2/v3 (docs/protocol.md §7.4).
func broadcastKey(a address.Address) *secp256k1.PrivateKey {
	if a.Version >= 4 {
		return keyFromBytes(a.TagKey())
	}
	return keyFromBytes(a.BroadcastKey())
}

// BuildBroadcast returns the headless broadcast object of sender
// (docs/protocol.md §10.4): version 5 with the tag in clear for v4
// addresses, version 4 for v2/v3; signed with SHA-256 and encrypted to the
// key every subscriber can derive from the address. content.AckPacket must
// be empty.
func BuildBroadcast(sender *identity.Identity, content MsgContent, expires uint64, rand io.Reader) ([]byte, error) {
	return buildBroadcast(sender, content, expires, newSealer(rand))
}

func buildBroadcast(sender *identity.Identity, content MsgContent, expires uint64, s sealer) ([]byte, error) {
	a := sender.Address
	if a.Version < 2 || a.Version > 4 {
		return nil, fmt.Errorf("build broadcast: %w %d", ErrVersion, a.Version)
	}
	if len(content.AckPacket) != 0 {
		return nil, errors.New("build broadcast: broadcasts carry no ack")
	}
	version := uint64(4)
	if a.Version >= 4 {
		version = 5
	}
	header := appendHeadless(make([]byte, 0, 64), expires, wire.ObjectBroadcast, version, a.Stream)
	if version == 5 {
		tag := a.Tag()
		header = append(header, tag[:]...)
	}
	pd := PubkeyOf(sender)
	plain := wire.AppendVarInt(make([]byte, 0, 300+len(content.Message)), a.Version)
	plain = wire.AppendVarInt(plain, a.Stream)
	plain = pd.appendKeyBlock(plain)
	plain = wire.AppendVarInt(plain, content.Encoding)
	plain = wire.AppendVarStr(plain, content.Message)
	sig := s.sign(sender.Signing, append(header[:len(header):len(header)], plain...))
	plain = wire.AppendVarStr(plain, sig)
	ct, err := s.encrypt(plain, broadcastKey(a).PubKey())
	if err != nil {
		return nil, fmt.Errorf("build broadcast: %w", err)
	}
	return checkSize(append(header, ct...))
}

// BroadcastTag returns the tag of a v5 broadcast, which names its sender's
// address, so the caller can look the subscription up by tag.
func BroadcastTag(o *wire.Object) ([32]byte, bool) {
	var tag [32]byte
	if checkDecoded(o) != nil || o.Type != wire.ObjectBroadcast || o.Version != 5 || len(o.Payload) < 32 {
		return tag, false
	}
	copy(tag[:], o.Payload)
	return tag, true
}

// DecryptBroadcast decrypts a broadcast from one of the subscribed addresses
// with PyBitmessage's checks (processbroadcast, docs/protocol.md §10.4). A v5
// broadcast is decrypted only with the v4 subscription whose tag it carries;
// a v4 broadcast is tried with every v2/v3 subscription's key (all of them,
// for even timing). Then: sender version 2–3 (v4 broadcast) or 4 (v5), inner
// stream equal to the object's, the embedded keys hashing to the
// subscription's ripe (v4) or tag (v5), encoding not 0 (ErrIgnoredEncoding),
// and the signature. It returns the subscription that matched, also with
// errors found after decryption.
func DecryptBroadcast(o *wire.Object, subs []address.Address) (*Broadcast, address.Address, error) {
	b, sub, err := decryptBroadcast(o, subs)
	if err != nil {
		return nil, sub, fmt.Errorf("decrypt broadcast: %w", err)
	}
	return b, sub, nil
}

func decryptBroadcast(o *wire.Object, subs []address.Address) (*Broadcast, address.Address, error) {
	var none address.Address
	if err := checkDecoded(o); err != nil {
		return nil, none, err
	}
	if o.Type != wire.ObjectBroadcast {
		return nil, none, fmt.Errorf("%w %d", ErrType, o.Type)
	}
	if len(o.Raw) < minBroadcastLen {
		return nil, none, fmt.Errorf("%w: %d bytes", ErrSize, len(o.Raw))
	}
	if o.Version != 4 && o.Version != 5 {
		return nil, none, fmt.Errorf("%w %d", ErrVersion, o.Version)
	}
	var (
		sub    address.Address
		plain  []byte
		header []byte
		tag    [32]byte
	)
	if o.Version == 5 {
		tag, _ = BroadcastTag(o)
		found := false
		for _, s := range subs {
			if s.Version >= 4 && s.Tag() == tag {
				sub, found = s, true
				break
			}
		}
		if !found {
			return nil, none, fmt.Errorf("%w: tag %x", ErrNotWanted, tag)
		}
		var err error
		if plain, err = bmcrypto.Decrypt(o.Payload[32:], keyFromBytes(sub.TagKey())); err != nil {
			return nil, sub, fmt.Errorf("%w: does not decrypt with the key of %s: %w", ErrMismatch, sub, err)
		}
		header = o.Raw[8 : o.HeaderLen+32]
	} else {
		env, err := bmcrypto.ParseEnvelope(o.Payload)
		if err != nil {
			return nil, none, fmt.Errorf("%w: %w", ErrNotWanted, err)
		}
		// Only v2/v3 subscriptions can send v4 broadcasts; the others get a
		// nil key, which never matches.
		privs := make([]*secp256k1.PrivateKey, len(subs))
		for i, s := range subs {
			if s.Version == 2 || s.Version == 3 {
				privs[i] = broadcastKey(s)
			}
		}
		var i int
		plain, i, err = env.TryDecrypt(privs)
		if i < 0 {
			return nil, none, ErrNotWanted
		}
		sub = subs[i]
		if err != nil {
			return nil, sub, fmt.Errorf("%w: %w", ErrNotWanted, err)
		}
		header = o.Raw[8:o.HeaderLen]
	}
	b, err := parseBroadcastPlaintext(o, plain, header, sub, tag)
	if err != nil {
		return nil, sub, err
	}
	return b, sub, nil
}

func parseBroadcastPlaintext(o *wire.Object, plain, header []byte, sub address.Address, tag [32]byte) (*Broadcast, error) {
	r := &reader{b: plain}
	b := &Broadcast{}
	var err error
	if b.SenderVersion, err = r.varint("sender version"); err != nil {
		return nil, err
	}
	if o.Version == 4 && (b.SenderVersion < 2 || b.SenderVersion > 3) ||
		o.Version == 5 && b.SenderVersion != 4 {
		return nil, fmt.Errorf("%w: sender address version %d in a v%d broadcast", ErrVersion, b.SenderVersion, o.Version)
	}
	if b.SenderStream, err = r.varint("sender stream"); err != nil {
		return nil, err
	}
	if b.SenderStream != o.Stream {
		return nil, fmt.Errorf("%w: sender stream %d, object stream %d", ErrMismatch, b.SenderStream, o.Stream)
	}
	pd := PubkeyData{Version: b.SenderVersion, Stream: b.SenderStream}
	if err := pd.readKeyBlock(r); err != nil {
		return nil, err
	}
	b.Bitfield, b.SigningKey, b.EncryptionKey = pd.Bitfield, pd.SigningKey, pd.EncryptionKey
	b.NonceTrialsPerByte, b.ExtraBytes = pd.NonceTrialsPerByte, pd.ExtraBytes
	if o.Version == 4 {
		if pd.Ripe() != sub.Ripe {
			return nil, fmt.Errorf("%w: keys do not hash to the ripe of %s", ErrMismatch, sub)
		}
	} else if pd.Address().Tag() != tag {
		return nil, fmt.Errorf("%w: keys do not hash to the tag", ErrMismatch)
	}
	if b.Encoding, err = r.varint("encoding"); err != nil {
		return nil, err
	}
	if b.Encoding == 0 {
		return nil, ErrIgnoredEncoding
	}
	if b.Message, err = r.varstr("message"); err != nil {
		return nil, err
	}
	signedEnd := r.off
	if b.Signature, err = r.varstr("signature"); err != nil {
		return nil, err
	}
	signed := append(header[:len(header):len(header)], plain[:signedEnd]...)
	if err := signedBy(&b.SigningKey, signed, b.Signature); err != nil {
		return nil, err
	}
	return b, nil
}
