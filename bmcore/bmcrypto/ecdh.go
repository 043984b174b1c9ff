package bmcrypto

import "github.com/decred/dcrd/dcrec/secp256k1/v4"

// pointTable speeds up ECDH of many private keys with one ephemeral point R,
// which is what trial decryption does: it holds j·2^(w·i)·R for every w-bit
// window i and digit j ≥ 1, in affine form, so k·R costs one mixed addition
// per non-zero window of k instead of a full scalar multiplication. Like
// secp256k1.ScalarMultNonConst it is not constant-time.
type pointTable struct {
	w      uint
	points []secp256k1.JacobianPoint // window i, digit j at i*(2^w-1) + j-1
}

// When the tables pay off, measured in CPU time against
// secp256k1.ScalarMultNonConst: a 4-bit table costs about 15 scalar
// multiplications to build and makes each one 2.4 times cheaper; an 8-bit
// table costs about 90 and makes each 4 times cheaper.
const (
	smallTableMinKeys = 32
	largeTableMinKeys = 512
)

func newPointTable(r *secp256k1.PublicKey, w uint) *pointTable {
	windows := 256 / int(w)
	digits := 1<<w - 1
	t := &pointTable{w: w, points: make([]secp256k1.JacobianPoint, windows*digits)}
	var base secp256k1.JacobianPoint
	r.AsJacobian(&base)
	for i := 0; i < windows; i++ {
		row := t.points[i*digits : (i+1)*digits]
		row[0].Set(&base)
		for j := 1; j < digits; j++ {
			secp256k1.AddNonConst(&row[j-1], &base, &row[j])
		}
		// The next window's base is 2^w·base = (2^w-1)·base + base.
		secp256k1.AddNonConst(&row[digits-1], &base, &base)
		base.ToAffine() // keeps the additions above mixed (Z2 = 1)
	}
	toAffineBatch(t.points)
	return t
}

// toAffineBatch converts points to affine with one field inversion in all
// (Montgomery's trick). No point may be at infinity: j·2^(w·i) < N for every
// table entry, so none is.
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

// mul sets result to k·R in Jacobian form.
func (t *pointTable) mul(k *secp256k1.ModNScalar, result *secp256k1.JacobianPoint) {
	kb := k.Bytes()
	digits := 1<<t.w - 1
	mask := byte(digits)
	result.X.Zero() // the point at infinity
	result.Y.Zero()
	result.Z.Zero()
	for i := 0; i < 256/int(t.w); i++ {
		bit := uint(i) * t.w
		d := int(kb[31-bit/8] >> (bit % 8) & mask)
		if d != 0 {
			secp256k1.AddNonConst(result, &t.points[i*digits+d-1], result)
		}
	}
}

// sharedX returns the X coordinate of k·R, as GenerateSharedSecret does.
func (t *pointTable) sharedX(k *secp256k1.ModNScalar) []byte {
	var p secp256k1.JacobianPoint
	t.mul(k, &p)
	p.ToAffine()
	x := p.X.Bytes()
	return x[:]
}
