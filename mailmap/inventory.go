package mailmap

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/bmgate/bmgate/bmcore/inventory"
	"github.com/bmgate/bmgate/bmcore/wire"
)

// errObjectNotFound satisfies both inventory.Inventory's and this package's
// not-found checks.
var errObjectNotFound = fmt.Errorf("%w (%w)", inventory.ErrNotFound, ErrNotFound)

func (s *sqlStore) Has(ctx context.Context, h wire.InvHash) (bool, error) {
	var one int
	err := s.rdb.QueryRowContext(ctx, `SELECT 1 FROM inventory WHERE hash = $1`, h[:]).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("inventory lookup: %w", err)
	}
	return true, nil
}

func (s *sqlStore) Get(ctx context.Context, h wire.InvHash) ([]byte, error) {
	var raw []byte
	err := s.rdb.QueryRowContext(ctx, `SELECT raw FROM inventory WHERE hash = $1`, h[:]).Scan(&raw)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errObjectNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("inventory read: %w", err)
	}
	return raw, nil
}

// Put stores a validated object, pending for the gateway (processed=false).
// It is durable when Put returns.
func (s *sqlStore) Put(ctx context.Context, obj inventory.StoredObject) (bool, error) {
	if len(obj.Raw) == 0 {
		return false, invalid("empty object")
	}
	var tag any
	if len(obj.Tag) > 0 {
		tag = obj.Tag
	}
	res, err := s.db.ExecContext(ctx, `INSERT INTO inventory (hash, type, version, stream, expires, tag, raw, processed)
		VALUES ($1, $2, $3, $4, $5, $6, $7, FALSE) ON CONFLICT (hash) DO NOTHING`,
		obj.Hash[:], int64(obj.Type), u64(obj.Version), u64(obj.Stream), toMicros(obj.Expires), tag, obj.Raw)
	if err != nil {
		return false, fmt.Errorf("inventory put: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("inventory put: %w", err)
	}
	return n == 1, nil
}

func scanHashes(rows *sql.Rows) ([]wire.InvHash, error) {
	defer rows.Close()
	var out []wire.InvHash
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			return nil, err
		}
		var h wire.InvHash
		if len(b) != len(h) {
			return nil, fmt.Errorf("inventory hash of %d bytes", len(b))
		}
		copy(h[:], b)
		out = append(out, h)
	}
	return out, rows.Err()
}

func (s *sqlStore) Hashes(ctx context.Context, stream uint64, now time.Time) ([]wire.InvHash, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT hash FROM inventory WHERE stream = $1 AND expires > $2 ORDER BY id`,
		u64(stream), toMicros(now))
	if err != nil {
		return nil, fmt.Errorf("inventory hashes: %w", err)
	}
	out, err := scanHashes(rows)
	if err != nil {
		return nil, fmt.Errorf("inventory hashes: %w", err)
	}
	return out, nil
}

// Expire deletes the objects that expired before the cut-off, and with
// them their delivery keys (DeliverOnce): an object that old is refused by
// the node, so it cannot be processed again.
func (s *sqlStore) Expire(ctx context.Context, before time.Time) (int, error) {
	var n int64
	err := s.write(ctx, func(w *wtx) error {
		if _, err := w.ExecContext(ctx, `DELETE FROM deliveries
			WHERE inv_hash IN (SELECT hash FROM inventory WHERE expires < $1) OR at < $2`,
			toMicros(before), toMicros(before.Add(-strayDeliveries))); err != nil {
			return fmt.Errorf("prune deliveries: %w", err)
		}
		res, err := w.ExecContext(ctx, `DELETE FROM inventory WHERE expires < $1`, toMicros(before))
		if err != nil {
			return fmt.Errorf("inventory expire: %w", err)
		}
		if n, err = res.RowsAffected(); err != nil {
			return fmt.Errorf("inventory expire: %w", err)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return int(n), nil
}

const objectCols = `hash, type, version, stream, expires, tag, raw`

func (s *sqlStore) queryObjects(ctx context.Context, query string, args ...any) ([]inventory.StoredObject, error) {
	rows, err := s.rdb.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []inventory.StoredObject
	for rows.Next() {
		var o inventory.StoredObject
		var hash []byte
		var typ, version, stream, expires int64
		if err := rows.Scan(&hash, &typ, &version, &stream, &expires, &o.Tag, &o.Raw); err != nil {
			return nil, err
		}
		if len(hash) != len(o.Hash) || typ < 0 || typ > math.MaxUint32 {
			return nil, errors.New("malformed inventory row")
		}
		copy(o.Hash[:], hash)
		o.Type, o.Version, o.Stream, o.Expires = uint32(typ), fromU64(version), fromU64(stream), fromMicros(expires)
		out = append(out, o)
	}
	return out, rows.Err()
}

// PendingObjects returns up to limit objects the gateway has not processed,
// in arrival order, leaving out objects set aside and objects whose retry
// (ObjectFailed) is not due at now.
func (s *sqlStore) PendingObjects(ctx context.Context, now time.Time, limit int) ([]inventory.StoredObject, error) {
	if limit <= 0 {
		return nil, nil
	}
	out, err := s.queryObjects(ctx, `SELECT `+objectCols+` FROM inventory
		WHERE NOT processed AND NOT set_aside AND retry_at <= $1 ORDER BY id LIMIT $2`, toMicros(now), int64(limit))
	if err != nil {
		return nil, fmt.Errorf("pending objects: %w", err)
	}
	return out, nil
}

// ObjectsByTag returns the unexpired objects of a type with that tag, in
// arrival order.
func (s *sqlStore) ObjectsByTag(ctx context.Context, objectType uint32, tag []byte, now time.Time) ([]inventory.StoredObject, error) {
	if len(tag) == 0 {
		return nil, nil
	}
	out, err := s.queryObjects(ctx, `SELECT `+objectCols+` FROM inventory WHERE tag = $1 AND type = $2 AND expires > $3
		ORDER BY id`, tag, int64(objectType), toMicros(now))
	if err != nil {
		return nil, fmt.Errorf("objects by tag: %w", err)
	}
	return out, nil
}

func (s *sqlStore) MarkProcessed(ctx context.Context, h wire.InvHash) error {
	res, err := s.db.ExecContext(ctx, `UPDATE inventory SET processed = TRUE WHERE hash = $1`, h[:])
	if err := rowsAffected("mark processed", res, err); err != nil {
		if errors.Is(err, ErrNotFound) {
			return errObjectNotFound
		}
		return err
	}
	return nil
}

func (s *sqlStore) InventoryCount(ctx context.Context) (int, error) {
	var n int64
	if err := s.rdb.QueryRowContext(ctx, `SELECT COUNT(*) FROM inventory`).Scan(&n); err != nil {
		return 0, fmt.Errorf("inventory count: %w", err)
	}
	return int(n), nil
}

// Known nodes (docs/protocol.md §15).

func (s *sqlStore) ListNodes(ctx context.Context, stream uint64, limit int) ([]inventory.KnownNode, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.rdb.QueryContext(ctx, `SELECT addr, stream, services, last_seen, rating FROM known_nodes
		WHERE stream = $1 ORDER BY last_seen DESC, addr LIMIT $2`, u64(stream), int64(limit))
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	defer rows.Close()
	var out []inventory.KnownNode
	for rows.Next() {
		var n inventory.KnownNode
		var st, services, seen int64
		if err := rows.Scan(&n.Addr, &st, &services, &seen, &n.Rating); err != nil {
			return nil, fmt.Errorf("list nodes: %w", err)
		}
		n.Stream, n.Services, n.LastSeen = fromU64(st), fromU64(services), fromMicros(seen)
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	return out, nil
}

func (s *sqlStore) UpsertNode(ctx context.Context, n inventory.KnownNode) error {
	if n.Addr == "" || !validText(n.Addr, 300) {
		return invalid("node address")
	}
	rating := n.Rating
	if math.IsNaN(rating) {
		rating = 0
	}
	rating = max(-1, min(1, rating))
	_, err := s.db.ExecContext(ctx, `INSERT INTO known_nodes (addr, stream, services, last_seen, rating)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (addr, stream) DO UPDATE SET services = excluded.services, last_seen = excluded.last_seen,
			rating = excluded.rating`,
		n.Addr, u64(n.Stream), u64(n.Services), toMicros(n.LastSeen), rating)
	if err != nil {
		return fmt.Errorf("upsert node: %w", err)
	}
	return nil
}

func (s *sqlStore) RemoveNode(ctx context.Context, addr string, stream uint64) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM known_nodes WHERE addr = $1 AND stream = $2`, addr, u64(stream)); err != nil {
		return fmt.Errorf("remove node: %w", err)
	}
	return nil
}
