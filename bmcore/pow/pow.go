package pow

import (
	"crypto/sha512"
	"encoding/binary"
	"math/big"
	"math/bits"
)

// MinTTL is the TTL floor used when verifying (docs/protocol.md §6.4).
const MinTTL = 300

// SolveMargin is added to the TTL when solving, so a verifier whose clock
// lags by up to an hour still accepts the nonce (docs/protocol.md §6.2).
const SolveMargin = 3600

// Target returns floor(2^64 / (ntpb * (L + extra + floor(ttl*(L+extra)/2^16))))
// for an object of objectLen bytes (nonce included), with PyBitmessage's
// integer arithmetic. A zero or negative ttl counts as zero.
func Target(objectLen uint64, ttl int64, ntpb, extra uint64) uint64 {
	if ttl < 0 {
		ttl = 0
	}
	le := new(big.Int).SetUint64(objectLen)
	le.Add(le, new(big.Int).SetUint64(extra))
	t := new(big.Int).Mul(big.NewInt(ttl), le)
	t.Rsh(t, 16)
	d := new(big.Int).Add(le, t)
	d.Mul(d, new(big.Int).SetUint64(ntpb))
	if d.Sign() == 0 {
		return ^uint64(0)
	}
	n := new(big.Int).Lsh(big.NewInt(1), 64)
	n.Quo(n, d)
	if !n.IsUint64() {
		return ^uint64(0)
	}
	return n.Uint64()
}

// InitialHash returns SHA512 of the object without its nonce.
func InitialHash(payload []byte) [64]byte { return sha512.Sum512(payload) }

// Trial returns the trial value of a nonce: the first 8 bytes of
// DSHA512(uint64_be(nonce) || initialHash) as a big-endian integer.
func Trial(nonce uint64, initialHash *[64]byte) uint64 {
	var buf [72]byte
	binary.BigEndian.PutUint64(buf[:8], nonce)
	copy(buf[8:], initialHash[:])
	first := sha512.Sum512(buf[:])
	second := sha512.Sum512(first[:])
	return binary.BigEndian.Uint64(second[:8])
}

// Check verifies the proof of work of a whole object (nonce first) at time
// now (Unix seconds) against ntpb/extra, with the TTL floor of MinTTL. Objects
// shorter than 16 bytes fail.
func Check(object []byte, now int64, ntpb, extra uint64) bool {
	if len(object) < 16 {
		return false
	}
	expires := binary.BigEndian.Uint64(object[8:16])
	var ttl int64
	if expires > uint64(now) {
		d := expires - uint64(now)
		if d > 1<<62 {
			d = 1 << 62
		}
		ttl = int64(d)
	}
	if ttl < MinTTL {
		ttl = MinTTL
	}
	ih := InitialHash(object[8:])
	return Trial(binary.BigEndian.Uint64(object[:8]), &ih) <= Target(uint64(len(object)), ttl, ntpb, extra)
}

// ExpectedTrials is the average number of trials needed for a target.
func ExpectedTrials(target uint64) uint64 {
	if target == 0 {
		return ^uint64(0)
	}
	q, _ := bits.Div64(1, 0, target)
	return q
}
