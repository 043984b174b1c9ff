package address

// alphabet is Bitcoin's base58 alphabet, which Bitmessage uses for addresses
// and WIF keys (docs/protocol.md §7.3).
const alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

var alphabetIndex = func() [256]int8 {
	var idx [256]int8
	for i := range idx {
		idx[i] = -1
	}
	for i := 0; i < len(alphabet); i++ {
		idx[alphabet[i]] = int8(i)
	}
	return idx
}()

// EncodeBase58 writes b, read as one big-endian integer, in base 58, most
// significant digit first. Like PyBitmessage (addresses.encodeBase58 and
// arithmetic.changebase) leading zero bytes are not kept: zero encodes as "1".
func EncodeBase58(b []byte) string {
	num := append([]byte(nil), b...)
	for len(num) > 0 && num[0] == 0 {
		num = num[1:]
	}
	if len(num) == 0 {
		return alphabet[:1]
	}
	// Each byte needs at most log(256)/log(58) < 1.37 digits.
	digits := make([]byte, 0, len(num)*138/100+1)
	for len(num) > 0 {
		var rem uint
		out := num[:0]
		for _, d := range num {
			acc := rem<<8 | uint(d)
			q := acc / 58
			rem = acc % 58
			if len(out) > 0 || q != 0 {
				out = append(out, byte(q))
			}
		}
		digits = append(digits, alphabet[rem])
		num = out
	}
	for i, j := 0, len(digits)-1; i < j; i, j = i+1, j-1 {
		digits[i], digits[j] = digits[j], digits[i]
	}
	return string(digits)
}

// DecodeBase58 reads s as a base-58 integer and returns its minimal
// big-endian bytes (empty for zero). ok is false if s holds a character
// outside the alphabet. The caller bounds len(s): the work is quadratic.
func DecodeBase58(s string) (b []byte, ok bool) {
	out := make([]byte, 0, len(s)*733/1000+1)
	for i := 0; i < len(s); i++ {
		v := alphabetIndex[s[i]]
		if v < 0 {
			return nil, false
		}
		carry := uint(v)
		// out is little-endian while we accumulate.
		for j := range out {
			carry += uint(out[j]) * 58
			out[j] = byte(carry)
			carry >>= 8
		}
		for carry > 0 {
			out = append(out, byte(carry))
			carry >>= 8
		}
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, true
}
