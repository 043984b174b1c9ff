// Package identity owns a Bitmessage identity: the two private keys behind an
// address and the settings published with it (docs/protocol.md §7.5, §7.6, §10). It
// creates random, deterministic (passphrase) and chan identities exactly as
// PyBitmessage does, and reads and writes keys.dat's WIF private keys.
//
// It imports only the standard library, secp256k1, bmcore/address and
// bmcore/wire. It must not import bmcore/object or anything above bmcore.
package identity
