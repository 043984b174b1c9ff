package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/bmgate/bmgate/mailmap"
)

// OpenStore opens the configured database with the secret key. For an
// SQLite path it first creates the file's directory (mode 0700: it holds the
// secret key and everyone's mail).
func (c *Config) OpenStore(ctx context.Context, logger *slog.Logger) (mailmap.Store, error) {
	return c.openStore(ctx, logger, false)
}

// openStore is OpenStore; short-lived commands (command) leave the header
// index backfill to the server.
func (c *Config) openStore(ctx context.Context, logger *slog.Logger, command bool) (mailmap.Store, error) {
	if path, ok := sqlitePath(c.DB); ok {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("create data directory: %w", err)
		}
		// The file holds everyone's mail: create it 0600, as secret.key
		// (SQLite gives its -wal and -shm files the database's mode). An
		// empty file is a valid new database.
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		switch {
		case err == nil:
			f.Close()
		case !errors.Is(err, fs.ErrExist):
			return nil, fmt.Errorf("create database: %w", err)
		}
	}
	key, err := c.loadSecretKey(ctx)
	if err != nil {
		return nil, err
	}
	st, err := mailmap.Open(ctx, c.DB, mailmap.Options{SecretKey: key, Logger: logger, Network: c.Network,
		NoHeaderBackfill: command})
	if errors.Is(err, mailmap.ErrSecretKey) {
		return nil, fmt.Errorf("open database: the secret key (secret_key, or the file %s) is not the one this database was created with: %w", c.SecretKeyFile, err)
	}
	if errors.Is(err, mailmap.ErrNetworkMismatch) {
		return nil, fmt.Errorf("open database %s: %w", redactURL(c.DB), err)
	}
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	return st, nil
}

// openStore is OpenStore for the administration commands, which log only
// warnings and errors, to standard error.
func (inv *invocation) openStore(ctx context.Context, cfg Config) (mailmap.Store, error) {
	cfg.LogLevel = "warn"
	return cfg.openStore(ctx, cfg.NewLogger(inv.stderr), true)
}

// userByName finds a user, saying which one is missing.
func userByName(ctx context.Context, st mailmap.Store, name string) (mailmap.User, error) {
	if name == "" {
		return mailmap.User{}, fmt.Errorf("%w: --user is required", errUsage)
	}
	u, err := st.UserByName(ctx, name)
	if errors.Is(err, mailmap.ErrNotFound) {
		return mailmap.User{}, fmt.Errorf("no user %q (see bmgate user list)", name)
	}
	if err != nil {
		return mailmap.User{}, fmt.Errorf("find user: %w", err)
	}
	return u, nil
}
