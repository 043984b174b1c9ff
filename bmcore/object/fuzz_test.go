package object

import (
	"testing"
	"unicode/utf8"

	"github.com/bmgate/bmgate/bmcore/address"
	"github.com/bmgate/bmgate/bmcore/identity"
	"github.com/bmgate/bmgate/bmcore/wire"
)

// The seeds below are the vector objects; testdata/fuzz holds more.

func FuzzParsePubkey(f *testing.F) {
	v := loadVectors(f)
	sender := vectorID(f, v.Identities.Sender)
	f.Add(unhex(f, v.Pubkey.Object))
	v3, _ := BuildPubkey(asVersion(sender, 3, 1), uint64(v.Now), nil)
	f.Add(withNonce(0, v3))
	f.Fuzz(func(t *testing.T, data []byte) {
		o, err := wire.DecodeObject(data)
		if err != nil {
			return
		}
		if pd, err := ParsePubkey(o, sender.Address); err == nil && pd.Address() != sender.Address {
			t.Fatalf("accepted the pubkey of %s as %s", pd.Address(), sender.Address)
		}
		if pd, err := ParsePubkey(o, address.Address{}); err == nil {
			if pd.Version > 3 || pd.checkKeys() != nil {
				t.Fatalf("accepted %+v", pd)
			}
		}
	})
}

func FuzzDecryptMsg(f *testing.F) {
	v := loadVectors(f)
	chanID, err := identity.FromKeys(4, 1, unhex(f, v.Identities.Recipient.PrivSigning), unhex(f, v.Identities.Recipient.PrivEncryption))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(unhex(f, v.Msg.Object))
	f.Fuzz(func(t *testing.T, data []byte) {
		o, err := wire.DecodeObject(data)
		if err != nil {
			return
		}
		m, id, err := DecryptMsg(o, []*identity.Identity{chanID})
		if err != nil {
			return
		}
		if id != chanID || m.DestinationRipe != chanID.Address.Ripe {
			t.Fatalf("accepted a msg for %x", m.DestinationRipe)
		}
		if m.SenderVersion < 2 || m.SenderVersion > 4 || m.SenderStream == 0 {
			t.Fatalf("accepted sender version %d stream %d", m.SenderVersion, m.SenderStream)
		}
	})
}

func FuzzDecryptBroadcast(f *testing.F) {
	v := loadVectors(f)
	sender := vectorID(f, v.Identities.Sender)
	f.Add(unhex(f, v.Broadcast.Object))
	v3 := asVersion(sender, 3, 1)
	b4, _ := BuildBroadcast(v3, MsgContent{Encoding: 2, Message: EncodeSimple("s", "b")}, uint64(v.Now), nil)
	f.Add(withNonce(0, b4))
	subs := []address.Address{sender.Address, v3.Address}
	f.Fuzz(func(t *testing.T, data []byte) {
		o, err := wire.DecodeObject(data)
		if err != nil {
			return
		}
		b, sub, err := DecryptBroadcast(o, subs)
		if err != nil {
			return
		}
		if b.SenderAddress() != sub {
			t.Fatalf("broadcast from %s accepted for %s", b.SenderAddress(), sub)
		}
	})
}

func FuzzParseGetpubkey(f *testing.F) {
	tiger, _ := address.Decode("BM-2cWzSnwjJ7yRP3nLEWUV5LisTZyREWSzUK")
	f.Add(withNonce(0, BuildGetpubkey(tiger, 1700000000)))
	f.Fuzz(func(t *testing.T, data []byte) {
		o, err := wire.DecodeObject(data)
		if err != nil {
			return
		}
		if g, err := ParseGetpubkey(o); err == nil && (g.Version < 2 || g.Version > 4) {
			t.Fatalf("accepted version %d", g.Version)
		}
	})
}

func FuzzDecodeMessage(f *testing.F) {
	f.Add(uint64(EncodingSimple), []byte("Subject:Hello\nBody:This is a test message."))
	f.Add(uint64(EncodingTrivial), []byte("body only"))
	ext, _ := EncodeExtended(Extended{Subject: "s", Body: "b", Extra: map[string]string{"k": "v"}})
	f.Add(uint64(EncodingExtended), ext)
	f.Fuzz(func(t *testing.T, encoding uint64, data []byte) {
		e, err := DecodeMessage(encoding, data)
		if err != nil {
			return
		}
		if !utf8.ValidString(e.Subject) || !utf8.ValidString(e.Body) {
			t.Fatalf("invalid UTF-8 in %+v", e)
		}
		if encoding != EncodingExtended {
			return
		}
		// What was decoded encodes and decodes to the same thing.
		again, err := EncodeExtended(e)
		if err != nil {
			t.Fatal(err)
		}
		back, err := DecodeMessage(EncodingExtended, again)
		if err != nil || back.Subject != e.Subject || back.Body != e.Body || len(back.Extra) != len(e.Extra) {
			t.Fatalf("re-encoding %+v gave %+v, %v", e, back, err)
		}
		for k, v := range e.Extra {
			if back.Extra[k] != v {
				t.Fatalf("extra %q: %q != %q", k, back.Extra[k], v)
			}
		}
	})
}
