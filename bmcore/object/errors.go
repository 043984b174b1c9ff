package object

import "errors"

// Errors returned by the parsers and builders. A parser's error wraps one of
// these; what it means for the caller is in each comment.
var (
	// ErrType means the object is not of the type the parser handles.
	ErrType = errors.New("object: wrong object type")
	// ErrVersion means an object, address or sender version PyBitmessage
	// does not process. Such objects are still relayed.
	ErrVersion = errors.New("object: unsupported version")
	// ErrSize means the object is outside the length PyBitmessage accepts
	// for its type (docs/protocol.md §5.3 step 6, §10.2).
	ErrSize = errors.New("object: length outside the accepted range")
	// ErrMalformed means a field is truncated, non-minimal or out of range.
	ErrMalformed = errors.New("object: malformed payload")
	// ErrNotForUs means no key decrypted the object: it is someone else's.
	ErrNotForUs = errors.New("object: not encrypted to any of our keys")
	// ErrNotWanted means the object's tag or address is not one we asked
	// for or subscribe to.
	ErrNotWanted = errors.New("object: not for an address we want")
	// ErrMismatch means embedded data (version, stream, keys, tag) does not
	// match the address it claims to belong to.
	ErrMismatch = errors.New("object: embedded data does not match the address")
	// ErrDestination means a msg was decrypted with our key but names
	// another destination ripe: a surreptitious forwarding attempt.
	ErrDestination = errors.New("object: msg destination is not the receiving address")
	// ErrSignature means the signature does not verify with SHA-1 or SHA-256.
	ErrSignature = errors.New("object: invalid signature")
	// ErrBadKey means an embedded public key is not a point on secp256k1.
	ErrBadKey = errors.New("object: invalid public key")
	// ErrIgnoredEncoding means a broadcast with encoding 0, which
	// PyBitmessage ignores without checking its signature.
	ErrIgnoredEncoding = errors.New("object: message encoding 0 is not shown")
	// ErrTooLarge means a built object would exceed 2^18 bytes with its nonce.
	ErrTooLarge = errors.New("object: larger than 2^18 bytes")
)
