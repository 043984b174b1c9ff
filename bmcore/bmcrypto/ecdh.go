package bmcrypto

import (
	"encoding/binary"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
)

// Trial decryption computes k·R for one ephemeral point R and many private
// keys k. It writes k in signed w-bit digits, k = Σ d_i·2^(w·i), and
// tabulates T[i][|d|] = |d|·2^(w·i)·R, so that k·R is the sum of one table
// point, negated for a negative digit, per non-zero digit. It runs a batch of
// keys in lockstep window by window with every accumulator in affine
// coordinates: the additions of one window share a single field inversion
// (Montgomery's trick), which makes an addition cost 5M+1S instead of the
// 7M+4S of a mixed Jacobian one, and the results need no conversion to affine
// at the end. Like secp256k1.ScalarMultNonConst none of this is constant-time
// in k.
//
// Digits: the W = ⌈256/w⌉ windows are read from the least significant end; a
// window's bits plus the carry from the one below give v, and below the top
// window a v > 2^(w-1) becomes the digit v - 2^w with a carry of 1, so that
// |d_i| ≤ 2^(w-1) and the table needs 2^(w-1) points per window. The top
// window, r = 256 - w·(W-1) bits wide, keeps v unsigned, 0 ≤ v ≤ 2^r, and
// has 2^r points. Signed digits halve the table for the same w; with the 8 MiB
// bound that buys a bit of window and two or three additions fewer per key.
//
// Why no addition ever has equal x coordinates (a doubling, or P + (-P),
// which the affine formula cannot do) for a key k in [1, N-1], where
// N = 2^256 - δ with δ < 2^129: after windows 0..i-1 the accumulator is a·R
// with |a| ≤ 2^(w-1)·(2^(w·i)-1)/(2^w-1) < (2/3)·2^(w·i), and the point added
// is b·R with b = d_i·2^(w·i), |b| ≥ 2^(w·i) > |a|, so a ≠ ±b as integers.
// Below the top window |a| + |b| < 2^(w·i+w) ≤ 2^255 < N, so a ≢ ±b mod N
// either. In the top window, with m = w·(W-1) ≥ 243, a + b = k ≢ 0 rules out
// P + (-P), and a ≡ b would need b - a = N (as 0 < b - a < 2N), so
// b = N + a ≡ 0 mod 2^m and a ≡ δ mod 2^m: a = δ - 2^m is too large in
// magnitude, and a = δ gives k = a + b = N + 2δ > N.
// Building the table adds (j-2^L)·2^(w·i)·R and 2^L·2^(w·i)·R for
// 2^L < j < 2^(L+1): their difference and their sum are (j-2^(L+1))·2^(w·i)
// and j·2^(w·i), non-zero products of numbers below the prime N, so not
// 0 mod N. The adder still checks x1 ≠ x2 on every addition: a key that would
// need such an addition is computed with secp256k1.ScalarMultNonConst, and a
// table that would need one is not used at all (TestPointTableExceptional).

// affinePoint is a point other than infinity in affine coordinates, both
// normalized.
type affinePoint struct {
	x, y secp256k1.FieldVal
}

// Sizes of the trial-decryption machinery.
const (
	// mulBatch is how many keys run in lockstep; each window costs one field
	// inversion per batch. 2048 keys' state (about 600 KiB) stays in L2;
	// measured 4% faster than 512 at 10 000 keys.
	mulBatch = 2048
	// maxTableBytes bounds the table; a 13-bit one (78 336 points) fits.
	maxTableBytes = 8 << 20
	maxWindow     = 13
	minWindow     = 2
)

// windowCount is the number of w-bit windows of a 256-bit scalar; the last
// one is narrower when w does not divide 256.
func windowCount(w uint) int { return (256 + int(w) - 1) / int(w) }

// windowWidth is the width in bits of window i.
func windowWidth(w uint, i int) uint { return min(w, 256-w*uint(i)) }

// tableSize is the number of points of a w-bit table: 2^(w-1) for each
// window but the top one, 2^r for that, r bits wide.
func tableSize(w uint) int {
	n := windowCount(w)
	return (n-1)*(1<<(w-1)) + 1<<windowWidth(w, n-1)
}

// digits returns how many points window i of a w-bit table has.
func (t *pointTable) digits(i int) int {
	if i == t.windows-1 {
		return 1 << windowWidth(t.w, i)
	}
	return t.stride
}

// Costs in field multiplications, measured with decred's FieldVal on amd64
// (a squaring is about 0.6 of a multiplication): one batched affine addition
// including its share of the inversion bookkeeping; one table point, fitted
// from the CPU time per key at 1 000 to 20 000 keys and window widths around
// the optimum (a point costs more than its addition: the table is written
// once and read with cache misses once it outgrows L2); one inversion; one
// secp256k1.ScalarMultNonConst (GLV, wNAF); and the 256 doublings plus the
// conversion that start a table.
const (
	costAdd        = 7
	costTablePoint = 13
	costInverse    = 175
	costScalarMult = 2000
	costTableBase  = 3000
)

// chooseWindow returns the window width that minimises the estimated cost of
// n keys, or 0 when plain scalar multiplications are cheaper than any table.
func chooseWindow(n int) uint {
	if n == 0 {
		return 0
	}
	best, bestCost := uint(0), n*costScalarMult
	batches := (n + mulBatch - 1) / mulBatch
	for w := uint(minWindow); w <= maxWindow; w++ {
		size := tableSize(w)
		if size*int(sizeofAffine) > maxTableBytes {
			break
		}
		windows := windowCount(w)
		// The table is built level by level (digits 2^L..2^(L+1)-1 of every
		// window), each level in chunks of mulBatch additions.
		tableInverses := int(w) - 1 + size/mulBatch
		cost := costTableBase + size*costTablePoint + tableInverses*costInverse +
			n*windows*costAdd + batches*windows*costInverse
		if cost < bestCost {
			best, bestCost = w, cost
		}
	}
	return best
}

// sizeofAffine is the size of an affinePoint (two 10×32-bit field values).
const sizeofAffine = 80

// pointTable holds d·2^(w·i)·R for every window i and digit magnitude
// 1 ≤ d ≤ 2^(w-1) (2^r in the top window).
type pointTable struct {
	w       uint
	windows int
	stride  int           // 2^(w-1)
	points  []affinePoint // window i, digit d at i*stride + d-1
	r       secp256k1.JacobianPoint
}

// trialScratch is the memory of one TryDecrypt call, kept in a pool since a
// table of the larger sizes is several MiB.
type trialScratch struct {
	table  pointTable
	pow    []secp256k1.JacobianPoint // 2^m·R, m = 0..256
	powA   []affinePoint
	adder  affineAdder
	limbs  [][4]uint64
	state  []uint8
	carry  []uint8
	index  []int         // positions in the batch of the queued additions
	gather []affinePoint // their table points
	out    []affinePoint
	scalar []*secp256k1.ModNScalar
	keyIdx []int
	jac    []secp256k1.JacobianPoint
	slow   int // keys computed the generic way, for tests
}

// build fills t for R with w-bit windows; it reports false if an addition
// would have been exceptional (impossible, see above), and t is then unusable.
func (t *pointTable) build(r *secp256k1.PublicKey, w uint, s *trialScratch) bool {
	t.w = w
	t.windows = windowCount(w)
	t.stride = 1 << (w - 1)
	size := tableSize(w)
	if cap(t.points) < size {
		t.points = make([]affinePoint, size)
	}
	t.points = t.points[:size]
	r.AsJacobian(&t.r)

	// 2^m·R for every bit position m.
	if s.pow == nil {
		s.pow = make([]secp256k1.JacobianPoint, 257)
		s.powA = make([]affinePoint, 257)
	}
	s.pow[0].Set(&t.r)
	for m := 1; m < len(s.pow); m++ {
		secp256k1.DoubleNonConst(&s.pow[m-1], &s.pow[m])
	}
	toAffineBatch(s.pow) // N is an odd prime: 2^m·R is never at infinity
	for m := range s.pow {
		s.powA[m].x.Set(&s.pow[m].X)
		s.powA[m].y.Set(&s.pow[m].Y)
	}

	// Level L: T[i][2^L] = 2^(w·i+L)·R, and T[i][j] = T[i][j-2^L] + T[i][2^L]
	// for 2^L < j < 2^(L+1), all of a level's additions independent of each
	// other.
	a := &s.adder
	a.reset()
	for i := 0; i < t.windows; i++ {
		t.points[i*t.stride] = s.powA[int(w)*i]
	}
	for L := uint(1); L <= w; L++ {
		for i := 0; i < t.windows; i++ {
			top := t.digits(i)
			if 1<<L > top {
				continue
			}
			row := t.points[i*t.stride:]
			base := &s.powA[int(w)*i+int(L)]
			row[1<<L-1] = *base
			for j := 1<<L + 1; j < 1<<(L+1) && j <= top; j++ {
				a.queue(&row[j-1<<L-1], base, &row[j-1])
				if len(a.p1) == mulBatch {
					if a.run() > 0 {
						return false
					}
					a.reset()
				}
			}
		}
		// The next level reads this one's results.
		if a.run() > 0 {
			return false
		}
		a.reset()
	}
	return true
}

// toAffineBatch converts points to affine with one field inversion in all
// (Montgomery's trick). No point may be at infinity.
func toAffineBatch(ps []secp256k1.JacobianPoint) {
	prefix := make([]secp256k1.FieldVal, len(ps))
	var acc secp256k1.FieldVal
	acc.SetInt(1)
	for i := range ps {
		acc.Mul(&ps[i].Z).Normalize()
		prefix[i].Set(&acc)
	}
	inv := new(secp256k1.FieldVal).Set(&acc).Inverse()
	var zInv, zInv2 secp256k1.FieldVal
	for i := len(ps) - 1; i >= 0; i-- {
		if i > 0 {
			zInv.Mul2(inv, &prefix[i-1]) // 1/Z_i
		} else {
			zInv.Set(inv)
		}
		inv.Mul(&ps[i].Z).Normalize() // drop Z_i from the running inverse
		zInv2.SquareVal(&zInv)
		ps[i].X.Mul(&zInv2).Normalize()
		ps[i].Y.Mul(zInv2.Mul(&zInv)).Normalize()
		ps[i].Z.SetInt(1)
	}
}

// affineAdder computes queued affine additions out = p1 + p2 with one field
// inversion for all of them.
type affineAdder struct {
	p1, p2, out []*affinePoint
	d, prefix   []secp256k1.FieldVal
	failed      []bool
}

func (a *affineAdder) reset() {
	a.p1, a.p2, a.out = a.p1[:0], a.p2[:0], a.out[:0]
}

// queue adds out = p1 + p2 to the batch; out may be p1 (but not p2). All
// coordinates must be normalized except p2's y, which may have magnitude 2
// (a negated table point); out's come out normalized.
func (a *affineAdder) queue(p1, p2, out *affinePoint) {
	a.p1 = append(a.p1, p1)
	a.p2 = append(a.p2, p2)
	a.out = append(a.out, out)
}

// run performs the queued additions. An addition whose two x coordinates are
// equal (a doubling or P + (-P)) is not performed: its out is left as it was,
// failed[j] is set, and run returns how many there were.
func (a *affineAdder) run() int {
	n := len(a.p1)
	if n == 0 {
		return 0
	}
	if cap(a.d) < n {
		a.d = make([]secp256k1.FieldVal, n, max(n, mulBatch))
		a.prefix = make([]secp256k1.FieldVal, n, max(n, mulBatch))
		a.failed = make([]bool, n, max(n, mulBatch))
	}
	d, prefix, failed := a.d[:n], a.prefix[:n], a.failed[:n]
	var acc secp256k1.FieldVal
	acc.SetInt(1)
	for j := range n {
		d[j].NegateVal(&a.p1[j].x, 1).Add(&a.p2[j].x) // x2 - x1, mag 3
		acc.Mul(&d[j])
		prefix[j].Set(&acc)
	}
	bad := 0
	if acc.Normalize().IsZero() {
		// Some x2 = x1 (never with a correct table and keys in [1, N-1]):
		// find them and leave them out.
		acc.SetInt(1)
		for j := range n {
			failed[j] = d[j].Normalize().IsZero()
			if failed[j] {
				d[j].SetInt(1)
				bad++
			}
			acc.Mul(&d[j])
			prefix[j].Set(&acc)
		}
	} else {
		clear(failed)
	}
	inv := acc.Inverse() // 1/(d_0···d_(n-1))
	var dInv, lambda, t, x3, y3 secp256k1.FieldVal
	for j := n - 1; j >= 0; j-- {
		if j > 0 {
			dInv.Mul2(inv, &prefix[j-1]) // 1/d_j
			inv.Mul(&d[j])               // 1/(d_0···d_(j-1))
		} else {
			dInv.Set(inv)
		}
		if failed[j] {
			continue
		}
		p1, p2 := a.p1[j], a.p2[j]
		// λ = (y2 - y1)/(x2 - x1), x3 = λ² - x1 - x2, y3 = λ(x1 - x3) - y1
		lambda.NegateVal(&p1.y, 1).Add(&p2.y).Mul(&dInv) // mag ≤ 4 → 1
		t.Set(&p1.x).Add(&p2.x).Negate(2)                // mag 3
		x3.SquareVal(&lambda).Add(&t).Normalize()        // mag 4 → 1
		y3.NegateVal(&x3, 1).Add(&p1.x).Mul(&lambda)     // mag 3 → 1
		y3.Add(t.NegateVal(&p1.y, 1)).Normalize()        // mag 3 → 1
		out := a.out[j]
		out.x.Set(&x3)
		out.y.Set(&y3)
	}
	return bad
}

// Per-key state of mulKeys.
const (
	stateEmpty uint8 = iota // accumulator not set yet (all digits so far 0)
	stateSet
	stateSlow // an exceptional addition: computed the generic way
)

// mulKeys sets out[j] to ks[j]·R in affine coordinates for every scalar, none
// of them zero, running all of them in lockstep window by window.
func (t *pointTable) mulKeys(ks []*secp256k1.ModNScalar, out []affinePoint, s *trialScratch) {
	n := len(ks)
	if cap(s.limbs) < n {
		s.limbs = make([][4]uint64, n, max(n, mulBatch))
		s.state = make([]uint8, n, max(n, mulBatch))
		s.carry = make([]uint8, n, max(n, mulBatch))
		s.index = make([]int, 0, max(n, mulBatch))
		s.gather = make([]affinePoint, 0, max(n, mulBatch))
	}
	limbs, state, carry := s.limbs[:n], s.state[:n], s.carry[:n]
	for j, k := range ks {
		b := k.Bytes()
		for l := range 4 {
			limbs[j][l] = binary.BigEndian.Uint64(b[24-8*l:])
		}
		state[j] = stateEmpty
		carry[j] = 0
	}
	a := &s.adder
	for i := 0; i < t.windows; i++ {
		a.reset()
		s.index, s.gather = s.index[:0], s.gather[:0]
		bit := t.w * uint(i)
		limb, shift := bit/64, bit%64
		mask := uint64(1)<<windowWidth(t.w, i) - 1
		signed := i < t.windows-1
		half, full := uint64(t.stride), uint64(1)<<t.w
		row := t.points[i*t.stride:]
		for j := range limbs {
			v := limbs[j][limb] >> shift
			if shift+t.w > 64 && limb < 3 {
				v |= limbs[j][limb+1] << (64 - shift)
			}
			v = v&mask + uint64(carry[j])
			neg := false
			if signed && v > half {
				v, neg = full-v, true // the digit is -(2^w - v)
				carry[j] = 1
			} else {
				carry[j] = 0
			}
			if v == 0 || state[j] == stateSlow {
				continue
			}
			// Copying the table points out first, in a loop of independent
			// loads, overlaps the cache misses of a table larger than the
			// cache.
			p := &out[j]
			if state[j] == stateSet {
				s.gather = append(s.gather, row[v-1])
				s.index = append(s.index, j)
				p = &s.gather[len(s.gather)-1]
			} else {
				*p = row[v-1]
				state[j] = stateSet
			}
			if neg {
				p.y.Negate(1) // the adder takes magnitude 2 here
				if p == &out[j] {
					p.y.Normalize() // an accumulator is normalized
				}
			}
		}
		for q, j := range s.index {
			a.queue(&out[j], &s.gather[q], &out[j])
		}
		if a.run() > 0 {
			for q, j := range s.index {
				if a.failed[q] {
					state[j] = stateSlow
				}
			}
		}
	}
	clear(limbs) // no key material stays in the pool
	clear(carry)
	for j := range state {
		if state[j] != stateSet {
			s.slow++
			var p secp256k1.JacobianPoint
			secp256k1.ScalarMultNonConst(ks[j], &t.r, &p)
			p.ToAffine()
			out[j].x.Set(&p.X)
			out[j].y.Set(&p.Y)
		}
	}
}
