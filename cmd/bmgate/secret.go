package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/bmgate/bmgate/mailmap"
)

// secretKeyLen is the size of the key that encrypts private keys at rest.
const secretKeyLen = 32

// LoadSecretKey returns the key that encrypts the Bitmessage private keys in
// the database: secret_key when set, else the content of secret_key_file,
// which is created with a fresh random key (mode 0600) when it does not
// exist and the database holds nothing sealed yet. When the database does
// hold sealed keys, a missing file is an error (errSecretKeyMissing) and
// nothing is created: a new key could open none of them, and a new file in
// place of the lost one would only hide the loss. Losing the key loses every
// identity stored with it.
func (c *Config) LoadSecretKey() ([]byte, error) { return c.loadSecretKey(context.Background()) }

// errSecretKeyMissing: the key file is gone but the database needs it.
var errSecretKeyMissing = errors.New("secret key missing")

func (c *Config) loadSecretKey(ctx context.Context) ([]byte, error) {
	if c.SecretKey != "" {
		return decodeSecretKey(c.SecretKey)
	}
	k, err := readSecretKey(c.SecretKeyFile)
	if !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	sealed, err := mailmap.HoldsSealedKeys(ctx, c.DB)
	if err != nil {
		return nil, fmt.Errorf("secret key file %s does not exist, and the database could not be checked for keys sealed with it: %w",
			c.SecretKeyFile, err)
	}
	if sealed {
		return nil, fmt.Errorf("%w: %s does not exist, but the database (%s) holds private keys sealed with it. "+
			"Restore secret.key from your backup (or set secret_key / BMGATE_SECRET_KEY); "+
			"a new key could open none of them, so none was created", errSecretKeyMissing, c.SecretKeyFile, redactURL(c.DB))
	}
	return createSecretKey(c.SecretKeyFile)
}

func readSecretKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read secret key: %w", err)
	}
	k, err := decodeSecretKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("read secret key %s: %w", path, err)
	}
	return k, nil
}

// createSecretKey writes a new random key. O_EXCL makes two processes that
// start on a fresh data directory at once agree on one key: the loser reads
// the winner's file.
func createSecretKey(path string) ([]byte, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create secret key directory: %w", err)
	}
	k := make([]byte, secretKeyLen)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("generate secret key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return readSecretKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("create secret key: %w", err)
	}
	_, err = f.WriteString(hex.EncodeToString(k) + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("write secret key: %w", err)
	}
	return k, nil
}
