// Package bmcrypto owns Bitmessage's public-key cryptography: the pyelliptic
// flavour of ECIES on secp256k1 (docs/protocol.md §8) and ECDSA signatures with
// SHA-256 for signing and SHA-1 or SHA-256 for verifying (docs/protocol.md §9.1).
//
// Decryption never panics on any input and checks the MAC, in constant time,
// before it returns or uses any plaintext (Envelope.TryDecrypt looks at the
// padding of the last block first, only to skip the HMAC for wrong keys). An
// Envelope parses a ciphertext once; TryDecrypt then tries it against many
// private keys at a fraction of the cost of one ECDH each (ecdh.go).
//
// It imports only the standard library and github.com/decred/dcrd/dcrec/secp256k1/v4
// (with its ecdsa package). It must not import any other bmcore package.
package bmcrypto
