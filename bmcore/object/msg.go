package object

import (
	"fmt"
	"io"

	"github.com/bmgate/bmgate/bmcore/address"
	"github.com/bmgate/bmgate/bmcore/bmcrypto"
	"github.com/bmgate/bmgate/bmcore/identity"
	"github.com/bmgate/bmgate/bmcore/wire"
	"github.com/decred/dcrd/dcrec/secp256k1/v4"
)

// minMsgPlaintext is PyBitmessage's sanity floor for a decrypted msg
// (processmsg, docs/protocol.md §10.3 step 2).
const minMsgPlaintext = 170

// MsgContent is what a msg or broadcast carries besides its sender's keys.
type MsgContent struct {
	// Encoding is the message encoding (docs/protocol.md §12), usually 2.
	Encoding uint64
	// Message is the encoded message (EncodeSimple, EncodeExtended).
	Message []byte
	// AckPacket is the complete ack packet (24-byte header + ack object) or
	// empty: no ack for chans, our own addresses, or recipients without
	// does_ack (docs/protocol.md §11). Broadcasts have none.
	AckPacket []byte
}

// Msg is a decrypted and verified msg (docs/protocol.md §10.3).
type Msg struct {
	SenderVersion, SenderStream uint64
	Bitfield                    uint32
	// SigningKey and EncryptionKey are the sender's, 64-byte X‖Y.
	SigningKey, EncryptionKey [64]byte
	// NonceTrialsPerByte and ExtraBytes are the sender's demand (v3+ only).
	NonceTrialsPerByte, ExtraBytes uint64
	DestinationRipe                [20]byte
	Encoding                       uint64
	Message                        []byte
	AckPacket                      []byte
	Signature                      []byte
}

// SenderPubkey returns the sender's key block, to cache as its pubkey
// (docs/protocol.md §10.3 step 5): a reply then needs no getpubkey.
func (m *Msg) SenderPubkey() PubkeyData {
	return PubkeyData{
		Version: m.SenderVersion, Stream: m.SenderStream, Bitfield: m.Bitfield,
		SigningKey: m.SigningKey, EncryptionKey: m.EncryptionKey,
		NonceTrialsPerByte: m.NonceTrialsPerByte, ExtraBytes: m.ExtraBytes,
	}
}

// SenderAddress returns the address of the embedded sender keys.
func (m *Msg) SenderAddress() address.Address { return m.SenderPubkey().Address() }

// SigHash is DSHA512(signature)[32:64], PyBitmessage's key for dropping a
// msg it has already received.
func (m *Msg) SigHash() [32]byte { return sigHash(m.Signature) }

// BuildMsg returns the headless msg object from sender to recipientAddr,
// whose key block is recipient (docs/protocol.md §10.3): the plaintext carries the
// sender's key block (with the sender's NTPB and EXTRA for v3+; pass a copy
// of the identity with other values to publish another demand), the
// recipient's full ripe, the encoding, the message and the ack; it is signed
// with SHA-256 over expiresTime, type, version, stream and the plaintext, then
// encrypted to the recipient's encryption key. The object's stream is the
// recipient's.
func BuildMsg(sender *identity.Identity, recipient PubkeyData, recipientAddr address.Address, content MsgContent, expires uint64, rand io.Reader) ([]byte, error) {
	return buildMsg(sender, recipient, recipientAddr, content, expires, newSealer(rand))
}

func buildMsg(sender *identity.Identity, recipient PubkeyData, to address.Address, content MsgContent, expires uint64, s sealer) ([]byte, error) {
	if v := sender.Address.Version; v < 2 || v > 4 {
		return nil, fmt.Errorf("build msg: sender %w %d", ErrVersion, v)
	}
	if to.Version < 2 || to.Version > 4 {
		return nil, fmt.Errorf("build msg: recipient %w %d", ErrVersion, to.Version)
	}
	if recipient.Ripe() != to.Ripe {
		return nil, fmt.Errorf("build msg: %w: recipient keys do not belong to %s", ErrMismatch, to)
	}
	encKey, err := bmcrypto.ParsePublicKey(recipient.EncryptionKey[:])
	if err != nil {
		return nil, fmt.Errorf("build msg: recipient %w: %w", ErrBadKey, err)
	}
	header := appendHeadless(make([]byte, 0, 32), expires, wire.ObjectMsg, 1, to.Stream)
	pd := PubkeyOf(sender)
	plain := wire.AppendVarInt(make([]byte, 0, 300+len(content.Message)+len(content.AckPacket)), pd.Version)
	plain = wire.AppendVarInt(plain, pd.Stream)
	plain = pd.appendKeyBlock(plain)
	plain = append(plain, to.Ripe[:]...)
	plain = wire.AppendVarInt(plain, content.Encoding)
	plain = wire.AppendVarStr(plain, content.Message)
	plain = wire.AppendVarStr(plain, content.AckPacket)
	sig := s.sign(sender.Signing, append(header[:len(header):len(header)], plain...))
	plain = wire.AppendVarStr(plain, sig)
	ct, err := s.encrypt(plain, encKey)
	if err != nil {
		return nil, fmt.Errorf("build msg: %w", err)
	}
	return checkSize(append(header, ct...))
}

// DecryptMsg tries every identity's encryption key on a msg object, always
// all of them as PyBitmessage does so the time taken does not tell which one
// matched, and then checks the plaintext as processmsg does (docs/protocol.md §10.3
// steps 1–5): sender version 2–4, at least 170 bytes, a non-zero sender
// stream, the destination ripe equal to the decrypting identity's ripe, and
// the signature (SHA-1 or SHA-256).
//
// It returns ErrNotForUs (and a nil identity) when no key decrypts the
// object; after a successful decryption any failure comes with the identity
// that decrypted it. The proof-of-work demand of step 6, the black/white
// lists and the ack are the caller's. The Msg aliases nothing in o.
func DecryptMsg(o *wire.Object, keys []*identity.Identity) (*Msg, *identity.Identity, error) {
	if err := checkDecoded(o); err != nil {
		return nil, nil, fmt.Errorf("decrypt msg: %w", err)
	}
	if o.Type != wire.ObjectMsg {
		return nil, nil, fmt.Errorf("decrypt msg: %w %d", ErrType, o.Type)
	}
	if o.Version != 1 {
		return nil, nil, fmt.Errorf("decrypt msg: %w %d", ErrVersion, o.Version)
	}
	env, err := bmcrypto.ParseEnvelope(o.Payload)
	if err != nil {
		return nil, nil, fmt.Errorf("decrypt msg: %w: %w", ErrNotForUs, err)
	}
	privs := make([]*secp256k1.PrivateKey, len(keys))
	for i, k := range keys {
		if k != nil {
			privs[i] = k.Encryption // nil keys never match
		}
	}
	plain, i, err := env.TryDecrypt(privs)
	if i < 0 {
		return nil, nil, fmt.Errorf("decrypt msg: %w", ErrNotForUs)
	}
	id := keys[i]
	if err != nil {
		// The MAC matched but the padding is bad: a faulty sender.
		return nil, id, fmt.Errorf("decrypt msg for %s: %w: %w", id.Address, ErrNotForUs, err)
	}
	m, err := parseMsgPlaintext(o, plain, id.Address.Ripe)
	if err != nil {
		return nil, id, fmt.Errorf("decrypt msg for %s: %w", id.Address, err)
	}
	return m, id, nil
}

func parseMsgPlaintext(o *wire.Object, plain []byte, ourRipe [20]byte) (*Msg, error) {
	r := &reader{b: plain}
	m := &Msg{}
	var err error
	if m.SenderVersion, err = r.varint("sender version"); err != nil {
		return nil, err
	}
	if m.SenderVersion < 2 || m.SenderVersion > 4 {
		return nil, fmt.Errorf("%w: sender address version %d", ErrVersion, m.SenderVersion)
	}
	if len(plain) < minMsgPlaintext {
		return nil, fmt.Errorf("%w: plaintext of %d bytes, minimum %d", ErrMalformed, len(plain), minMsgPlaintext)
	}
	if m.SenderStream, err = r.varint("sender stream"); err != nil {
		return nil, err
	}
	if m.SenderStream == 0 {
		return nil, fmt.Errorf("%w: sender stream 0", ErrMalformed)
	}
	pd := PubkeyData{Version: m.SenderVersion}
	if err := pd.readKeyBlock(r); err != nil {
		return nil, err
	}
	m.Bitfield, m.SigningKey, m.EncryptionKey = pd.Bitfield, pd.SigningKey, pd.EncryptionKey
	m.NonceTrialsPerByte, m.ExtraBytes = pd.NonceTrialsPerByte, pd.ExtraBytes
	dest, err := r.bytes(20, "destination ripe")
	if err != nil {
		return nil, err
	}
	copy(m.DestinationRipe[:], dest)
	if m.DestinationRipe != ourRipe {
		return nil, fmt.Errorf("%w: it names ripe %x", ErrDestination, m.DestinationRipe)
	}
	if m.Encoding, err = r.varint("encoding"); err != nil {
		return nil, err
	}
	msg, err := r.varstr("message")
	if err != nil {
		return nil, err
	}
	ack, err := r.varstr("ack")
	if err != nil {
		return nil, err
	}
	signedEnd := r.off
	sig, err := r.varstr("signature")
	if err != nil {
		return nil, err
	}
	// PyBitmessage signs the header rebuilt from the decoded version and
	// stream; wire.DecodeObject requires minimal var_ints, so that is
	// exactly the received header.
	signed := append(o.SignedHeader()[:len(o.SignedHeader()):len(o.SignedHeader())], plain[:signedEnd]...)
	if err := signedBy(&m.SigningKey, signed, sig); err != nil {
		return nil, err
	}
	m.Message, m.AckPacket, m.Signature = msg, ack, sig
	return m, nil
}
