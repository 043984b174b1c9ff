package mailmap

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
)

// Settings rows that describe the database itself.
const (
	// networkSetting is the Bitmessage network (mainnet, test) the
	// database was made for: its inventory, peers, pubkeys and outbox
	// mean nothing on another one.
	networkSetting = "network"
	// databaseIDSetting names the database, so that two processes can tell
	// whether they work on the same one (bmgate status and the admin
	// server it asks).
	databaseIDSetting = "database_id"
)

// ErrNetworkMismatch: the database was made for another network than the
// one Options.Network names.
var ErrNetworkMismatch = errors.New("database made for another Bitmessage network")

// checkMeta records the database id and the network on first use and
// refuses a database made for another network. A database from before
// the network was recorded takes the network it is next opened with.
func (s *sqlStore) checkMeta(ctx context.Context, network string) error {
	var fresh [16]byte
	if _, err := rand.Read(fresh[:]); err != nil {
		return fmt.Errorf("database id: %w", err)
	}
	return s.write(ctx, func(w *wtx) error {
		get := func(name string, value []byte) ([]byte, error) {
			if _, err := w.ExecContext(ctx,
				`INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`, name, value); err != nil {
				return nil, fmt.Errorf("record %s: %w", name, err)
			}
			var stored []byte
			if err := w.QueryRowContext(ctx, `SELECT value FROM settings WHERE name = $1`, name).Scan(&stored); err != nil {
				return nil, fmt.Errorf("read %s: %w", name, err)
			}
			return stored, nil
		}
		id, err := get(databaseIDSetting, []byte(hex.EncodeToString(fresh[:])))
		if err != nil {
			return err
		}
		s.dbID = string(id)
		if network == "" {
			return nil
		}
		stored, err := get(networkSetting, []byte(network))
		if err != nil {
			return err
		}
		if string(stored) != network {
			return fmt.Errorf("%w: it was made for the %s network, not %s; use --network %s, or another database for %s",
				ErrNetworkMismatch, stored, network, stored, network)
		}
		return nil
	})
}

// DatabaseID returns the random id recorded in the database on its first
// open: processes that report the same id work on the same database.
func (s *sqlStore) DatabaseID() string { return s.dbID }

// DatabaseID returns st's database id, or "" for a store that has none.
func DatabaseID(st Store) string {
	if d, ok := st.(interface{ DatabaseID() string }); ok {
		return d.DatabaseID()
	}
	return ""
}
