// Package address owns Bitmessage addresses (docs/protocol.md §7.2–§7.4): the RIPE
// hash of a key pair, the base58 "BM-" text form with its checksum, and the
// values derived from an address (tag, tag key, v2/v3 broadcast key).
//
// Decode is strict and never repairs its input: base58 is case-sensitive, so
// a mistyped or case-mangled address fails its checksum and is refused with a
// reason a person can act on.
//
// It imports only the standard library, golang.org/x/crypto/ripemd160 and
// bmcore/wire (var_int). It must not import any other bmcore package.
package address
