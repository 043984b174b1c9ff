package pow

import (
	"encoding/hex"
	"testing"
)

// docs/protocol.md §6.6: the MiNode sample object and the getpubkey built for the spec.
func TestTargetSpecExamples(t *testing.T) {
	obj, _ := hex.DecodeString("00000000001be7fc00000000660f307f0000002a010248454c4c4f")
	if got := Target(uint64(len(obj)), 86400, 1000, 1000); got != 7750732804079 {
		t.Fatalf("target = %d, want 7750732804079", got)
	}
	ih := InitialHash(obj[8:])
	if got := Trial(0x1be7fc, &ih); got != 7716054263625 {
		t.Fatalf("trial = %d, want 7716054263625", got)
	}
	if !Check(obj, 1712271487-86400, 1000, 1000) {
		t.Fatal("sample object should pass at TTL 86400")
	}
	if Check(obj, 1712271487-87041, 1000, 1000) {
		t.Fatal("sample object should fail at TTL 87041")
	}
	gp, _ := hex.DecodeString("0000000000026380000000006553f10000000000040138" + "35718d5edb53946cc42683a80a3b5a2c5771b9fecf80f4c74cb5174b25fedf")
	if got := Target(uint64(len(gp)), 3600, 1000, 1000); got != 16603730039342 {
		t.Fatalf("getpubkey target = %d, want 16603730039342", got)
	}
	if !Check(gp, 1699996400, 1000, 1000) {
		t.Fatal("getpubkey vector should pass")
	}
	gp[7] ^= 1
	if Check(gp, 1699996400, 1000, 1000) {
		t.Fatal("altered nonce should fail")
	}
}
