package wire

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"runtime"
	"testing"
)

// Paths to the shared vectors, relative to this package (COMMON.md).
const (
	samplesPath = "../testdata/pybitmessage_samples.json"
	vectorsPath = "../testdata/test-vectors.json"
)

type pybSamples struct {
	Vectors struct {
		Varint struct {
			Cases []struct {
				Value string `json:"value"`
				Hex   string `json:"hex"`
			} `json:"cases"`
		} `json:"varint"`
		EncodeHost struct {
			Cases []struct {
				Host string `json:"host"`
				Hex  string `json:"hex"`
			} `json:"cases"`
		} `json:"encode_host"`
		AddrMessagePayload struct {
			Time       uint64 `json:"time"`
			Stream     uint32 `json:"stream"`
			Services   uint64 `json:"services"`
			Host       string `json:"host"`
			Port       uint16 `json:"port"`
			Count      int    `json:"count"`
			CountHex   string `json:"count_hex"`
			EntryHex   string `json:"entry_hex"`
			PayloadSHA string `json:"payload_sha512_hex"`
		} `json:"addr_message_payload"`
		PacketHeader struct {
			MagicHex      string `json:"magic_hex"`
			PingPacketHex string `json:"ping_empty_packet_hex"`
		} `json:"packet_header"`
		ObjectSample struct {
			ObjectHex     string `json:"object_hex"`
			Nonce         uint64 `json:"nonce"`
			ExpiresTime   uint64 `json:"expires_time"`
			ObjectType    uint32 `json:"object_type"`
			ObjectVersion uint64 `json:"object_version"`
			Stream        uint64 `json:"stream"`
			PayloadASCII  string `json:"payload_ascii"`
			InvHex        string `json:"inventory_hash_hex"`
		} `json:"object_sample_minode"`
	} `json:"vectors"`
}

type compositeObject struct {
	Object string `json:"object"`
	Packet string `json:"packet"`
	Inv    string `json:"inv"`
	Length int    `json:"object_length"`
}

func loadSamples(t testing.TB) *pybSamples {
	t.Helper()
	var s pybSamples
	loadJSON(t, samplesPath, &s)
	return &s
}

func loadComposite(t testing.TB) map[string]compositeObject {
	t.Helper()
	var raw map[string]json.RawMessage
	loadJSON(t, vectorsPath, &raw)
	out := map[string]compositeObject{}
	for _, k := range []string{"pubkey_v4", "ack", "msg", "broadcast_v5"} {
		var o compositeObject
		if err := json.Unmarshal(raw[k], &o); err != nil {
			t.Fatalf("vector %s: %v", k, err)
		}
		out[k] = o
	}
	return out
}

func loadJSON(t testing.TB, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read vectors: %v", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// checkTruncations asserts that decode fails with ErrTruncated on every
// proper prefix of a valid encoding (btcd's fixedIO idea applied to []byte
// decoders).
func checkTruncations(t *testing.T, full []byte, decode func([]byte) error) {
	t.Helper()
	if err := decode(full); err != nil {
		t.Fatalf("full encoding does not decode: %v", err)
	}
	for i := 0; i < len(full); i++ {
		// A fresh copy, so a decoder reading past the prefix would be caught
		// by the race detector or a panic rather than by the spare capacity.
		prefix := append([]byte(nil), full[:i]...)
		err := decode(prefix)
		if !errors.Is(err, ErrTruncated) {
			t.Fatalf("prefix of %d/%d bytes: err = %v, want ErrTruncated", i, len(full), err)
		}
	}
}

// allocBytes returns the bytes f allocates per call, averaged over runs.
// Tests use it to show that a lying length field costs nothing in proportion
// to what it claims.
// The bound callers use is loose (16 KiB): TotalAlloc also counts the race
// detector's and other goroutines' allocations, while the bugs it catches
// allocate megabytes.
func allocBytes(runs int, f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range runs {
		f()
	}
	runtime.ReadMemStats(&after)
	return (after.TotalAlloc - before.TotalAlloc) / uint64(runs)
}
