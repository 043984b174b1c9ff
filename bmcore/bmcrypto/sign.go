package bmcrypto

import (
	"crypto/sha1"
	"crypto/sha256"

	"github.com/decred/dcrd/dcrec/secp256k1/v4"
	"github.com/decred/dcrd/dcrec/secp256k1/v4/ecdsa"
)

// Sign returns the DER ECDSA signature of SHA-256(data), as PyBitmessage's
// v0.6 branch signs (docs/protocol.md §9.1). decred signs with RFC 6979 nonces and
// low S; both are valid for every verifier.
func Sign(priv *secp256k1.PrivateKey, data []byte) []byte {
	h := sha256.Sum256(data)
	return ecdsa.Sign(priv, h[:]).Serialize()
}

// Verify checks a DER signature over data by the 64- or 65-byte public key
// pubXY. Like every PyBitmessage since 0.5 it tries SHA-1 first, then
// SHA-256 (docs/protocol.md §9.1). S may be high: OpenSSL signs with either parity and
// ECDSA verification itself does not care, so nothing is normalised.
func Verify(pubXY []byte, data, sig []byte) bool {
	pub, err := ParsePublicKey(pubXY)
	if err != nil {
		return false
	}
	s, err := ecdsa.ParseDERSignature(sig)
	if err != nil {
		return false
	}
	h1 := sha1.Sum(data)
	if s.Verify(h1[:], pub) {
		return true
	}
	h256 := sha256.Sum256(data)
	return s.Verify(h256[:], pub)
}
