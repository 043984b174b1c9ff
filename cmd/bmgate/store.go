package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/bmgate/bmgate/mailmap"
)

// OpenStore opens the configured database with the secret key. For an
// SQLite path it first creates the file's directory (mode 0700: it holds the
// secret key and everyone's mail).
func (c *Config) OpenStore(ctx context.Context, logger *slog.Logger) (mailmap.Store, error) {
	if !IsPostgres(c.DB) && !strings.HasPrefix(c.DB, "file:") {
		dir := filepath.Dir(strings.TrimPrefix(c.DB, "sqlite:"))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create data directory: %w", err)
		}
	}
	key, err := c.loadSecretKey(ctx)
	if err != nil {
		return nil, err
	}
	st, err := mailmap.Open(ctx, c.DB, mailmap.Options{SecretKey: key, Logger: logger})
	if errors.Is(err, mailmap.ErrSecretKey) {
		return nil, fmt.Errorf("open database: the secret key (secret_key, or the file %s) is not the one this database was created with: %w", c.SecretKeyFile, err)
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
	return cfg.OpenStore(ctx, cfg.NewLogger(inv.stderr))
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
