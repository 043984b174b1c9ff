package mailmap

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"

	"golang.org/x/crypto/argon2"
)

// keySealer encrypts identity private keys at rest with AES-256-GCM.
type keySealer struct{ aead cipher.AEAD }

// sealVersion prefixes every sealed value so the scheme can change later.
const sealVersion = 1

func newKeySealer(secret []byte) (*keySealer, error) {
	if len(secret) != 32 {
		return nil, fmt.Errorf("%w: Options.SecretKey must be 32 bytes, got %d", ErrSecretKey, len(secret))
	}
	// A derived key keeps this use separate from any other use of the secret.
	k, err := hkdf.Key(sha256.New, secret, nil, "bmgate mailmap identity keys v1", 32)
	if err != nil {
		return nil, fmt.Errorf("derive sealing key: %w", err)
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, fmt.Errorf("derive sealing key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("derive sealing key: %w", err)
	}
	return &keySealer{aead: aead}, nil
}

// seal returns version || nonce || ciphertext. context is authenticated, not
// stored: it binds the value to its place (e.g. the identity address and the
// key's role), so sealed values swapped between rows do not open.
func (k *keySealer) seal(plain []byte, context string) ([]byte, error) {
	out := make([]byte, 1+k.aead.NonceSize(), 1+k.aead.NonceSize()+len(plain)+k.aead.Overhead())
	out[0] = sealVersion
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, fmt.Errorf("seal key: %w", err)
	}
	return k.aead.Seal(out, out[1:], plain, []byte(context)), nil
}

var errUnseal = errors.New("mailmap: cannot decrypt a sealed key (wrong secret key or damaged row)")

func (k *keySealer) open(sealed []byte, context string) ([]byte, error) {
	ns := k.aead.NonceSize()
	if len(sealed) < 1+ns+k.aead.Overhead() || sealed[0] != sealVersion {
		return nil, errUnseal
	}
	plain, err := k.aead.Open(nil, sealed[1:1+ns], sealed[1+ns:], []byte(context))
	if err != nil {
		return nil, errUnseal
	}
	return plain, nil
}

// Password hashing: argon2id (RFC 9106) with OWASP's minimum cost
// (19 MiB, 2 passes, 1 lane). Logins are frequent (IMAP clients reconnect
// often), so the cost stays moderate; the parameters are stored with each
// hash, so raising them later re-hashes on the next successful login.
const (
	argonTime    = 2
	argonMemory  = 19 * 1024 // KiB
	argonThreads = 1
	argonKeyLen  = 32
	argonSaltLen = 16
)

type argonParams struct {
	time, memory uint32
	threads      uint8
}

var currentArgon = argonParams{argonTime, argonMemory, argonThreads}

// hashPassword returns a PHC string: $argon2id$v=19$m=…,t=…,p=…$salt$hash.
func hashPassword(password string) (string, error) {
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	p := currentArgon
	sum := argon2.IDKey([]byte(password), salt, p.time, p.memory, p.threads, argonKeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.memory, p.time, p.threads, b64.EncodeToString(salt), b64.EncodeToString(sum)), nil
}

// Limits on stored parameters, so a tampered row cannot make a login
// allocate gigabytes.
const (
	maxArgonMemory = 1 << 20 // KiB (1 GiB)
	maxArgonTime   = 16
)

// verifyPassword compares in constant time. needsRehash is true when the
// hash was made with other parameters than the current ones.
func verifyPassword(encoded, password string) (ok, needsRehash bool) {
	parts := strings.Split(encoded, "$")
	// "", "argon2id", "v=19", "m=…,t=…,p=…", salt, hash
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return false, false
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false, false
	}
	var p argonParams
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.memory, &p.time, &p.threads); err != nil {
		return false, false
	}
	if p.time == 0 || p.time > maxArgonTime || p.memory == 0 || p.memory > maxArgonMemory || p.threads == 0 {
		return false, false
	}
	b64 := base64.RawStdEncoding
	salt, err := b64.DecodeString(parts[4])
	if err != nil || len(salt) < 8 {
		return false, false
	}
	want, err := b64.DecodeString(parts[5])
	if err != nil || len(want) < 16 || len(want) > 64 {
		return false, false
	}
	got := argon2.IDKey([]byte(password), salt, p.time, p.memory, p.threads, uint32(len(want)))
	if subtle.ConstantTimeCompare(got, want) != 1 {
		return false, false
	}
	return true, p != currentArgon || len(want) != argonKeyLen
}

// dummyHash is verified against when a login names no user, so a missing
// user costs as much time as a wrong password (no user enumeration by timing).
var dummyHash = sync.OnceValue(func() string {
	h, err := hashPassword("bmgate-no-such-user")
	if err != nil {
		return ""
	}
	return h
})
