// Package object owns the typed payloads of Bitmessage objects
// (docs/protocol.md §10–§12): getpubkey, pubkey (v2, v3, v4), msg, broadcast
// (v4, v5), the ack object embedded in a msg, and the message encodings 1, 2
// and 3.
//
// Builders return an object without its 8-byte nonce ("headless":
// expiresTime through the end), ready for proof of work; the caller prepends
// the nonce. Parsers take a *wire.Object decoded from the received bytes and
// check everything PyBitmessage checks before it accepts an object: sizes,
// versions, tags, decryption, destination, embedded keys and signatures.
// Nothing here panics on any input.
//
// It imports the standard library, secp256k1 and bmcore/{wire,address,
// identity,bmcrypto}. It must not import bmcore/node, bmcore/pow or anything
// above bmcore.
package object
