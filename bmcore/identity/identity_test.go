package identity

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/bmgate/bmgate/bmcore/address"
)

const samplesPath = "../testdata/pybitmessage_samples.json"

type samples struct {
	Vectors struct {
		V2 struct {
			PrivSigning    string `json:"priv_signing_key_hex"`
			PrivEncryption string `json:"priv_encryption_key_hex"`
			PubSigning     string `json:"pub_signing_key_hex"`
			PubEncryption  string `json:"pub_encryption_key_hex"`
			Address        string `json:"address"`
		} `json:"keypair_ripe_address_v2"`
		Tiger struct {
			Passphrase     string `json:"passphrase"`
			SignNonce      uint64 `json:"signing_key_nonce"`
			EncNonce       uint64 `json:"encryption_key_nonce"`
			PrivSigning    string `json:"priv_signing_key_hex"`
			PrivEncryption string `json:"priv_encryption_key_hex"`
			Ripe           string `json:"ripe_hex"`
			AddressV3      string `json:"address_v3"`
			AddressV4      string `json:"address_v4"`
		} `json:"deterministic_address_tiger"`
		WIF struct {
			PrivSigning       string `json:"priv_signing_key_hex"`
			PrivSigningWIF    string `json:"priv_signing_key_wif"`
			PrivEncryption    string `json:"priv_encryption_key_hex"`
			PrivEncryptionWIF string `json:"priv_encryption_key_wif"`
		} `json:"wif_chan_bitmessage"`
		Chans struct {
			Chans []struct {
				Passphrase     string `json:"passphrase"`
				SignNonce      uint64 `json:"signing_key_nonce"`
				PrivSigning    string `json:"priv_signing_key_hex"`
				PrivEncryption string `json:"priv_encryption_key_hex"`
				PubSigning     string `json:"pub_signing_key_hex"`
				PubEncryption  string `json:"pub_encryption_key_hex"`
				AddressV4      string `json:"address_v4"`
				AddressV3      string `json:"address_v3"`
			} `json:"chans"`
		} `json:"computed_chan_addresses"`
	} `json:"vectors"`
}

func loadSamples(t testing.TB) samples {
	t.Helper()
	b, err := os.ReadFile(samplesPath)
	if err != nil {
		t.Fatalf("read samples: %v", err)
	}
	var s samples
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("parse samples: %v", err)
	}
	return s
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

func checkKeys(t *testing.T, name string, id *Identity, sign, enc string) {
	t.Helper()
	if got := hex.EncodeToString(id.Signing.Serialize()); got != sign {
		t.Errorf("%s: signing key %s, want %s", name, got, sign)
	}
	if got := hex.EncodeToString(id.Encryption.Serialize()); got != enc {
		t.Errorf("%s: encryption key %s, want %s", name, got, enc)
	}
	if r := address.RipeFromKeys(id.PublicSigning(), id.PublicEncryption()); r != id.Address.Ripe {
		t.Errorf("%s: ripe of public keys %x != %x", name, r, id.Address.Ripe)
	}
}

// docs/protocol.md §7.6: the TIGER passphrase gives its address on the 22nd attempt.
func TestDeterministicTiger(t *testing.T) {
	v := loadSamples(t).Vectors.Tiger
	for _, c := range []struct {
		version uint64
		want    string
	}{{3, v.AddressV3}, {4, v.AddressV4}} {
		ids, err := Deterministic([]byte(v.Passphrase), c.version, 1, 1)
		if err != nil {
			t.Fatal(err)
		}
		id := ids[0]
		if id.Address.String() != c.want || hex.EncodeToString(id.Address.Ripe[:]) != v.Ripe {
			t.Errorf("v%d: %s ripe %x, want %s", c.version, id.Address, id.Address.Ripe, c.want)
		}
		checkKeys(t, "TIGER", id, v.PrivSigning, v.PrivEncryption)
		if id.NonceTrialsPerByte != 1000 || id.ExtraBytes != 1000 || id.Bitfield != BitfieldDoesAck {
			t.Errorf("defaults %d/%d/%d", id.NonceTrialsPerByte, id.ExtraBytes, id.Bitfield)
		}
	}
	// The keys are those of nonces 42 and 43.
	if got := deterministicKey([]byte(v.Passphrase), v.SignNonce).Serialize(); hex.EncodeToString(got) != v.PrivSigning {
		t.Errorf("nonce %d key %x", v.SignNonce, got)
	}
	if got := deterministicKey([]byte(v.Passphrase), v.EncNonce).Serialize(); hex.EncodeToString(got) != v.PrivEncryption {
		t.Errorf("nonce %d key %x", v.EncNonce, got)
	}
}

// Several addresses from one passphrase: the nonces continue, not restart.
func TestDeterministicContinues(t *testing.T) {
	pass := []byte("TIGER, tiger, burning bright. In the forests of the night")
	ids, err := Deterministic(pass, 4, 1, 3)
	if err != nil || len(ids) != 3 {
		t.Fatalf("%d ids, %v", len(ids), err)
	}
	if ids[0].Address.String() != "BM-2cWzSnwjJ7yRP3nLEWUV5LisTZyREWSzUK" {
		t.Errorf("first address %s", ids[0].Address)
	}
	// Independent search from nonce 44 (after the first address's 42/43).
	n := uint64(44)
	for i := 1; i < 3; i++ {
		for {
			s, e := deterministicKey(pass, n), deterministicKey(pass, n+1)
			n += 2
			r := address.RipeFromKeys(s.PubKey().SerializeUncompressed(), e.PubKey().SerializeUncompressed())
			if r[0] == 0 {
				if r != ids[i].Address.Ripe || !s.Key.Equals(&ids[i].Signing.Key) {
					t.Errorf("address %d: ripe %x, want %x", i, ids[i].Address.Ripe, r)
				}
				break
			}
		}
	}
	if ids[1].Address == ids[0].Address || ids[2].Address == ids[1].Address {
		t.Error("addresses repeat")
	}
	if _, err := Deterministic(pass, 2, 1, 1); !errors.Is(err, ErrVersion) {
		t.Errorf("v2: %v", err)
	}
}

func TestChans(t *testing.T) {
	s := loadSamples(t)
	for _, c := range s.Vectors.Chans.Chans {
		id, err := Chan(c.Passphrase)
		if err != nil {
			t.Fatal(err)
		}
		if id.Address.String() != c.AddressV4 {
			t.Errorf("chan %q: %s, want %s", c.Passphrase, id.Address, c.AddressV4)
		}
		checkKeys(t, c.Passphrase, id, c.PrivSigning, c.PrivEncryption)
		if hex.EncodeToString(id.PublicSigning()) != c.PubSigning[2:] || hex.EncodeToString(id.PublicEncryption()) != c.PubEncryption[2:] {
			t.Errorf("chan %q: public keys differ", c.Passphrase)
		}
		if c.Passphrase != "general" {
			continue // joining repeats the derivation: once is enough
		}
		// Join with either the v4 or the v3 address of the chan.
		for _, text := range []string{c.AddressV4, c.AddressV3} {
			a, err := address.Decode(text)
			if err != nil {
				t.Fatal(err)
			}
			j, err := JoinChan(c.Passphrase, a)
			if err != nil {
				t.Errorf("join %q as %s: %v", c.Passphrase, text, err)
				continue
			}
			if j.Address != a {
				t.Errorf("join %q: %s", c.Passphrase, j.Address)
			}
			checkKeys(t, c.Passphrase, j, c.PrivSigning, c.PrivEncryption)
		}
	}
	general, _ := address.Decode("BM-2cW67GEKkHGonXKZLCzouLLxnLym3azS8r")
	if _, err := JoinChan("General", general); !errors.Is(err, ErrChanAddress) {
		t.Errorf("wrong name: %v", err)
	}
	other := general
	other.Ripe[19] ^= 1
	if _, err := JoinChan("general", other); !errors.Is(err, ErrChanAddress) {
		t.Errorf("wrong ripe: %v", err)
	}
	// The stream is not part of the ripe: join takes it from the address.
	other = general
	other.Stream = 2
	if j, err := JoinChan("general", other); err != nil || j.Address != other {
		t.Errorf("stream 2: %v, %v", j, err)
	}
	bitmessage, err := Chan("bitmessage")
	if err != nil || bitmessage.Address.String() != "BM-2cWy7cvHoq3f1rYMerRJp8PT653jjSuEdY" {
		t.Errorf("chan bitmessage: %v %v", bitmessage, err)
	}
}

func TestWIF(t *testing.T) {
	v := loadSamples(t).Vectors.WIF
	for _, c := range [][2]string{{v.PrivSigning, v.PrivSigningWIF}, {v.PrivEncryption, v.PrivEncryptionWIF}} {
		key := unhex(t, c[0])
		if got := EncodeWIF(key); got != c[1] {
			t.Errorf("EncodeWIF(%s) = %s, want %s", c[0], got, c[1])
		}
		got, err := DecodeWIF(c[1])
		if err != nil || hex.EncodeToString(got) != c[0] {
			t.Errorf("DecodeWIF(%s) = %x, %v", c[1], got, err)
		}
	}
	bad := []byte(v.PrivSigningWIF)
	bad[10] = 'x'
	for _, s := range []string{string(bad), "", "0OIl", v.PrivSigningWIF + "1", EncodeWIF(make([]byte, 31))} {
		if _, err := DecodeWIF(s); !errors.Is(err, ErrWIF) {
			t.Errorf("DecodeWIF(%q) = %v", s, err)
		}
	}
}

// docs/protocol.md §7.6 last row: the PyB sample keys as v2, v3 and v4.
func TestFromKeys(t *testing.T) {
	v := loadSamples(t).Vectors.V2
	sign, enc := unhex(t, v.PrivSigning), unhex(t, v.PrivEncryption)
	for version, want := range map[uint64]string{
		2: v.Address,
		3: "BM-2D8MV1Jc2WVMPv1x6u9ze3oZU8Jbc63RY8",
		4: "BM-2cTxU7btjgxEDMA38KVK8B5M6dZYNgaeF5",
	} {
		id, err := FromKeys(version, 1, sign, enc)
		if err != nil {
			t.Fatal(err)
		}
		if id.Address.String() != want {
			t.Errorf("v%d: %s, want %s", version, id.Address, want)
		}
		if hex.EncodeToString(id.PublicSigning()) != v.PubSigning[2:] || hex.EncodeToString(id.PublicEncryption()) != v.PubEncryption[2:] {
			t.Errorf("v%d: public keys differ", version)
		}
	}
	n := unhex(t, "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141")
	for _, k := range [][]byte{make([]byte, 32), sign[:31], n, append(sign, 0)} {
		if _, err := FromKeys(4, 1, k, enc); !errors.Is(err, ErrPrivateKey) {
			t.Errorf("FromKeys(%x) = %v", k, err)
		}
	}
	if _, err := FromKeys(5, 1, sign, enc); !errors.Is(err, ErrVersion) {
		t.Errorf("v5: %v", err)
	}
}

func TestNewRandom(t *testing.T) {
	rng := rand.NewChaCha8([32]byte{1})
	seen := map[address.Address]bool{}
	for i := 0; i < 3; i++ {
		id, err := NewRandom(1, rng)
		if err != nil {
			t.Fatal(err)
		}
		if id.Address.Version != 4 || id.Address.Stream != 1 || id.Address.Ripe[0] != 0 {
			t.Errorf("address %+v", id.Address)
		}
		if r := address.RipeFromKeys(id.PublicSigning(), id.PublicEncryption()); r != id.Address.Ripe {
			t.Errorf("ripe %x != %x", r, id.Address.Ripe)
		}
		if a, err := address.Decode(id.Address.String()); err != nil || a != id.Address {
			t.Errorf("round trip %s: %v", id.Address, err)
		}
		if seen[id.Address] {
			t.Error("repeated address")
		}
		seen[id.Address] = true
	}
	if _, err := NewRandom(1, errReader{}); err == nil {
		t.Error("failing reader accepted")
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("no entropy") }
