package address

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/big"
	"os"
	"strings"
	"testing"
)

const samplesPath = "../testdata/pybitmessage_samples.json"

type chanSample struct {
	Passphrase    string `json:"passphrase"`
	PubSigning    string `json:"pub_signing_key_hex"`
	PubEncryption string `json:"pub_encryption_key_hex"`
	Ripe          string `json:"ripe_hex"`
	AddressV4     string `json:"address_v4"`
	AddressV3     string `json:"address_v3"`
	TagV4         string `json:"tag_v4_hex"`
	TagKeyV4      string `json:"privkey_for_pubkey_decryption_v4_hex"`
}

type samples struct {
	Vectors struct {
		DoubleSHA512Hello struct {
			Data string `json:"data_hex"`
			Want string `json:"double_sha512_hex"`
		} `json:"double_sha512_hello"`
		V2 struct {
			PubSigning    string `json:"pub_signing_key_hex"`
			PubEncryption string `json:"pub_encryption_key_hex"`
			Ripe          string `json:"ripe_hex"`
			Version       uint64 `json:"address_version"`
			Stream        uint64 `json:"stream"`
			Address       string `json:"address"`
		} `json:"keypair_ripe_address_v2"`
		Tiger struct {
			Ripe      string `json:"ripe_hex"`
			AddressV3 string `json:"address_v3"`
			AddressV4 string `json:"address_v4"`
			IntV3     string `json:"address_v3_base58_int_dec"`
			IntV4     string `json:"address_v4_base58_int_dec"`
		} `json:"deterministic_address_tiger"`
		Chans struct {
			Chans []chanSample `json:"chans"`
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

func ripe20(t testing.TB, s string) [20]byte {
	var r [20]byte
	if copy(r[:], unhex(t, s)) != 20 {
		t.Fatalf("ripe %q is not 20 bytes", s)
	}
	return r
}

// rawAddress encodes arbitrary address data with a valid checksum, to reach
// the checks behind the checksum.
func rawAddress(data []byte) string {
	sum := DoubleSHA512(data)
	return Prefix + EncodeBase58(append(append([]byte(nil), data...), sum[:4]...))
}

func TestDoubleSHA512(t *testing.T) {
	s := loadSamples(t)
	got := DoubleSHA512(unhex(t, s.Vectors.DoubleSHA512Hello.Data))
	if hex.EncodeToString(got[:]) != s.Vectors.DoubleSHA512Hello.Want {
		t.Fatalf("DSHA512(hello) = %x", got)
	}
}

// docs/protocol.md §7.2: 04 prefixes are part of the hashed data, whether the caller
// passes 64- or 65-byte keys.
func TestRipeFromKeys(t *testing.T) {
	v := loadSamples(t).Vectors.V2
	sign65, enc65 := unhex(t, v.PubSigning), unhex(t, v.PubEncryption)
	want := ripe20(t, v.Ripe)
	if got := RipeFromKeys(sign65, enc65); got != want {
		t.Errorf("65-byte keys: ripe %x, want %x", got, want)
	}
	if got := RipeFromKeys(sign65[1:], enc65[1:]); got != want {
		t.Errorf("64-byte keys: ripe %x, want %x", got, want)
	}
	if got := RipeFromKeys(sign65[1:], enc65); got != want {
		t.Errorf("mixed keys: ripe %x, want %x", got, want)
	}
	// Without the prefixes the hash is different (docs/protocol.md §7.2 "845ea24b…").
	concat := append(append([]byte(nil), sign65[1:]...), enc65[1:]...)
	if got := RipeFromKeys(concat[:65], concat[65:]); hex.EncodeToString(got[:]) != "845ea24b2adafbf131168c38be606c0b15fc7eba" {
		t.Errorf("unprefixed hash = %x", got)
	}
}

func TestEncodeDecodeVectors(t *testing.T) {
	s := loadSamples(t)
	v := s.Vectors.V2
	sampleRipe := ripe20(t, v.Ripe)
	tiger := ripe20(t, s.Vectors.Tiger.Ripe)
	cases := []struct {
		text string
		addr Address
	}{
		{v.Address, Address{Version: v.Version, Stream: v.Stream, Ripe: sampleRipe}},
		// docs/protocol.md §7.6 table, PyB sample keys as v3 and v4.
		{"BM-2D8MV1Jc2WVMPv1x6u9ze3oZU8Jbc63RY8", Address{Version: 3, Stream: 1, Ripe: sampleRipe}},
		{"BM-2cTxU7btjgxEDMA38KVK8B5M6dZYNgaeF5", Address{Version: 4, Stream: 1, Ripe: sampleRipe}},
		{s.Vectors.Tiger.AddressV3, Address{Version: 3, Stream: 1, Ripe: tiger}},
		{s.Vectors.Tiger.AddressV4, Address{Version: 4, Stream: 1, Ripe: tiger}},
	}
	for _, c := range s.Vectors.Chans.Chans {
		r := ripe20(t, c.Ripe)
		cases = append(cases,
			struct {
				text string
				addr Address
			}{c.AddressV4, Address{Version: 4, Stream: 1, Ripe: r}},
			struct {
				text string
				addr Address
			}{c.AddressV3, Address{Version: 3, Stream: 1, Ripe: r}})
	}
	for _, c := range cases {
		if got := c.addr.String(); got != c.text {
			t.Errorf("String(%+v) = %s, want %s", c.addr, got, c.text)
		}
		got, err := Decode(c.text)
		if err != nil {
			t.Errorf("Decode(%s): %v", c.text, err)
			continue
		}
		if got != c.addr {
			t.Errorf("Decode(%s) = %+v, want %+v", c.text, got, c.addr)
		}
		// Without prefix and with surrounding whitespace (PyB strips both).
		if got, err := Decode(" \t" + strings.TrimPrefix(c.text, Prefix) + "\n"); err != nil || got != c.addr {
			t.Errorf("Decode(unprefixed %s) = %+v, %v", c.text, got, err)
		}
	}
	// The base58 integers of the TIGER addresses (PyB test_addresses.py).
	for text, dec := range map[string]string{
		s.Vectors.Tiger.AddressV3: s.Vectors.Tiger.IntV3,
		s.Vectors.Tiger.AddressV4: s.Vectors.Tiger.IntV4,
	} {
		b, ok := DecodeBase58(strings.TrimPrefix(text, Prefix))
		want, _ := new(big.Int).SetString(dec, 10)
		if !ok || new(big.Int).SetBytes(b).Cmp(want) != 0 {
			t.Errorf("base58 integer of %s = %x, want %s", text, b, dec)
		}
	}
}

// docs/protocol.md §7.4: tag, tag key and (v2/v3) broadcast key.
func TestDerivedKeys(t *testing.T) {
	for _, c := range loadSamples(t).Vectors.Chans.Chans {
		a, err := Decode(c.AddressV4)
		if err != nil {
			t.Fatal(err)
		}
		tag, key := a.Tag(), a.TagKey()
		if hex.EncodeToString(tag[:]) != c.TagV4 {
			t.Errorf("%s: tag %x, want %s", c.Passphrase, tag, c.TagV4)
		}
		if hex.EncodeToString(key[:]) != c.TagKeyV4 {
			t.Errorf("%s: tag key %x, want %s", c.Passphrase, key, c.TagKeyV4)
		}
		if got := RipeFromKeys(unhex(t, c.PubSigning), unhex(t, c.PubEncryption)); got != a.Ripe {
			t.Errorf("%s: ripe of keys %x != address ripe %x", c.Passphrase, got, a.Ripe)
		}
	}
	tiger, _ := Decode("BM-2cWzSnwjJ7yRP3nLEWUV5LisTZyREWSzUK")
	if tag := tiger.Tag(); hex.EncodeToString(tag[:]) != "3835718d5edb53946cc42683a80a3b5a2c5771b9fecf80f4c74cb5174b25fedf" {
		t.Errorf("TIGER tag %x", tag)
	}
	if k := tiger.TagKey(); hex.EncodeToString(k[:]) != "bdeccc8a32cea62c79c02e14c166868519ea7023dcc536023e4e1b93e42ecf65" {
		t.Errorf("TIGER tag key %x", k)
	}
	// Single SHA-512, computed independently with Python hashlib.
	v3, _ := Decode("BM-2D8MV1Jc2WVMPv1x6u9ze3oZU8Jbc63RY8")
	if k := v3.BroadcastKey(); hex.EncodeToString(k[:]) != "ef22e23e62f93e3a15459fdeeb08afc1c7cc0112dfdb36c7274ad727783a60af" {
		t.Errorf("v3 broadcast key %x", k)
	}
	v2, _ := Decode("BM-onkVu1KKL2UaUss5Upg9vXmqd3esTmV79")
	if k := v2.BroadcastKey(); hex.EncodeToString(k[:]) != "d5e21b4b0e82447a048c483390e0ced55e4341d978e8dd4849704d846ee9b827" {
		t.Errorf("v2 broadcast key %x", k)
	}
}

// Ripe shortening (docs/protocol.md §7.3): v2/v3 drop at most two zero bytes, v4 all.
func TestRipeShortening(t *testing.T) {
	var r [20]byte
	r[3], r[19] = 0x11, 0x22 // three leading zero bytes
	for _, v := range []uint64{2, 3, 4} {
		a := Address{Version: v, Stream: 1, Ripe: r}
		got, err := Decode(a.String())
		if err != nil || got != a {
			t.Errorf("v%d three-zero ripe: %+v, %v", v, got, err)
		}
	}
	// v4 with only 4 non-zero bytes is the shortest legal ripe.
	var short [20]byte
	copy(short[16:], []byte{1, 2, 3, 4})
	a := Address{Version: 4, Stream: 7, Ripe: short}
	if got, err := Decode(a.String()); err != nil || got != a {
		t.Errorf("v4 4-byte ripe: %+v, %v", got, err)
	}
	var tooShort [20]byte
	copy(tooShort[17:], []byte{1, 2, 3})
	if _, err := Decode(Address{Version: 4, Stream: 1, Ripe: tooShort}.String()); !errors.Is(err, ErrRipeTooShort) {
		t.Errorf("v4 3-byte ripe: %v", err)
	}
}

func TestDecodeErrors(t *testing.T) {
	const good = "BM-2cWzSnwjJ7yRP3nLEWUV5LisTZyREWSzUK"
	ripe := ripe20(t, "00cfb69416ae76f68a81c459de4e13460c7d17eb")
	cases := []struct {
		name, in string
		want     error
		text     string // a phrase the message must carry
	}{
		{"empty", "", ErrInvalidCharacters, ""},
		{"zero", "BM-1111", ErrInvalidCharacters, ""},
		{"bad char 0", "BM-2cWzSnwjJ7yRP3nLEWUV5LisTZyREWSzU0", ErrInvalidCharacters, ""},
		{"bad char l", "BM-2cWzSnwjJ7yRP3nLEWUV5LisTZyREWSzUl", ErrInvalidCharacters, ""},
		{"space inside", "BM-2cWzSnwjJ7yRP3nLEW UV5LisTZyREWSzUK", ErrInvalidCharacters, ""},
		{"one char changed", "BM-2cWzSnwjJ7yRP3nLEWUV5LisTZyREWSzUL", ErrChecksum, "mistyped"},
		{"two letters lower-cased", "BM-2cWzSnwjJ7yRP3nLEWUV5LisTZyREWSzuk", ErrChecksum, "case-sensitive"},
		{"lower-cased", strings.ToLower(good), ErrInvalidCharacters, "case-sensitive"},
		{"lower-cased body", "BM-" + strings.ToLower(good[3:]), ErrInvalidCharacters, "case-sensitive"},
		{"upper-cased body", "BM-" + strings.ToUpper(good[3:]), ErrInvalidCharacters, "case-sensitive"},
		{"too long", "BM-" + strings.Repeat("2", 65), ErrLength, ""},
		// A leading zero byte is lost in the base58 integer, as in PyB.
		{"version 0", rawAddress(append([]byte{0, 1}, ripe[1:]...)), ErrChecksum, ""},
		{"version 1", rawAddress(append([]byte{1, 1}, ripe[:]...)), ErrVersion, ""},
		{"version 5", rawAddress(append([]byte{5, 1}, ripe[1:]...)), ErrVersion, ""},
		{"non-minimal version", rawAddress(append([]byte{0xfd, 0, 4, 1}, ripe[1:]...)), ErrVarInt, ""},
		{"non-minimal stream", rawAddress(append([]byte{4, 0xfd, 0, 1}, ripe[1:]...)), ErrVarInt, ""},
		{"v4 leading zero", rawAddress(append([]byte{4, 1}, ripe[:]...)), ErrEncoding, ""},
		{"v4 21 bytes", rawAddress(append([]byte{4, 1, 9}, ripe[:]...)), ErrRipeTooLong, ""},
		{"v3 21 bytes", rawAddress(append([]byte{3, 1, 9}, ripe[:]...)), ErrRipeTooLong, ""},
		{"v3 17 bytes", rawAddress(append([]byte{3, 1}, ripe[3:]...)), ErrRipeTooShort, ""},
		{"v4 no ripe", rawAddress([]byte{4, 1}), ErrRipeTooShort, ""},
	}
	for _, c := range cases {
		_, err := Decode(c.in)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: Decode(%q) error %v, want %v", c.name, c.in, err, c.want)
			continue
		}
		if c.text != "" && !strings.Contains(err.Error(), c.text) {
			t.Errorf("%s: message %q lacks %q", c.name, err, c.text)
		}
	}
}

// A case-mangled address that still uses only base58 characters fails its
// checksum, and the message must say why.
func TestDecodeCaseChangedChecksum(t *testing.T) {
	// Find a real address whose lower-cased body avoids 'l' (not in base58).
	for i := 0; i < 200; i++ {
		var r [20]byte
		r[0], r[1] = 0x5a, byte(i)
		a := Address{Version: 4, Stream: 1, Ripe: r}.String()
		lower := Prefix + strings.ToLower(a[3:])
		if strings.ContainsRune(lower[3:], 'l') {
			continue
		}
		_, err := Decode(lower)
		if !errors.Is(err, ErrChecksum) {
			t.Fatalf("Decode(%s) = %v, want ErrChecksum", lower, err)
		}
		if !strings.Contains(err.Error(), "case-sensitive") {
			t.Fatalf("message %q does not mention case", err)
		}
		return
	}
	t.Fatal("no candidate address found")
}

func TestBase58RoundTrip(t *testing.T) {
	for _, b := range [][]byte{{1}, {0xff}, {1, 0, 0}, {0x80, 1, 2, 3, 4, 5}, make([]byte, 0)} {
		s := EncodeBase58(b)
		got, ok := DecodeBase58(s)
		if !ok || new(big.Int).SetBytes(got).Cmp(new(big.Int).SetBytes(b)) != 0 {
			t.Errorf("round trip %x -> %s -> %x", b, s, got)
		}
	}
	if EncodeBase58([]byte{0, 0, 57}) != "z" || EncodeBase58(nil) != "1" {
		t.Error("leading zeros must not be encoded")
	}
}

func FuzzDecodeAddress(f *testing.F) {
	for _, s := range []string{
		"BM-2cWzSnwjJ7yRP3nLEWUV5LisTZyREWSzUK", "BM-onkVu1KKL2UaUss5Upg9vXmqd3esTmV79",
		"2DBPTgeSawWYZceFD69AbDT5q4iUWtj1ZN", "bm-2cwzsnwjj7yrp3nlewuv5listzyrewszuk", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := Decode(s)
		if err != nil {
			return
		}
		// Every accepted address has one canonical text form, which decodes
		// to the same value.
		text := a.String()
		b, err := Decode(text)
		if err != nil || b != a {
			t.Fatalf("Decode(%q) = %+v; re-encoded %s decodes to %+v, %v", s, a, text, b, err)
		}
	})
}
