package mailmap

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
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
		if _, err := w.ExecContext(ctx, `DELETE FROM outbox_once
			WHERE key IN (SELECT hash FROM inventory WHERE expires < $1) OR at < $2`,
			toMicros(before), toMicros(before.Add(-strayDeliveries))); err != nil {
			return fmt.Errorf("prune outbox keys: %w", err)
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
		if err := scanObject(rows, &o); err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, rows.Err()
}

// scanObject scans the objectCols of a row into o, after the extra
// columns that come first.
func scanObject(rows *sql.Rows, o *inventory.StoredObject, first ...any) error {
	var hash []byte
	var typ, version, stream, expires int64
	if err := rows.Scan(append(first, &hash, &typ, &version, &stream, &expires, &o.Tag, &o.Raw)...); err != nil {
		return err
	}
	if len(hash) != len(o.Hash) || typ < 0 || typ > math.MaxUint32 {
		return errors.New("malformed inventory row")
	}
	copy(o.Hash[:], hash)
	o.Type, o.Version, o.Stream, o.Expires = uint32(typ), fromU64(version), fromU64(stream), fromMicros(expires)
	return nil
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

// ClaimObjects leases up to limit due pending objects to owner until
// now+lease, in arrival order. Objects leased to another owner whose lease
// has not run out are skipped, so instances on one database share the
// work; on PostgreSQL rows another claim is taking are skipped too (SKIP
// LOCKED) rather than waited for.
func (s *sqlStore) ClaimObjects(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int) ([]inventory.StoredObject, error) {
	if limit <= 0 {
		return nil, nil
	}
	if owner == "" {
		return nil, invalid("claim without an owner")
	}
	query := `UPDATE inventory SET lease_owner = $1, lease_until = $2 WHERE id IN (
		SELECT id FROM inventory WHERE NOT processed AND NOT set_aside AND retry_at <= $3 AND lease_until <= $3
		ORDER BY id LIMIT $4` + s.d.skipLocked + `)
		RETURNING id, ` + objectCols
	type claimed struct {
		id  int64
		obj inventory.StoredObject
	}
	var got []claimed
	err := s.write(ctx, func(w *wtx) error {
		got = got[:0]
		rows, err := w.QueryContext(ctx, query, owner, toMicros(now.Add(lease)), toMicros(now), int64(limit))
		if err != nil {
			return fmt.Errorf("claim objects: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var c claimed
			if err := scanObject(rows, &c.obj, &c.id); err != nil {
				return fmt.Errorf("claim objects: %w", err)
			}
			got = append(got, c)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(got, func(a, b claimed) int { return cmp.Compare(a.id, b.id) })
	out := make([]inventory.StoredObject, len(got))
	for i, c := range got {
		out[i] = c.obj
	}
	return out, nil
}

// RenewObjects extends owner's leases on unprocessed objects to until (a
// batch still being worked on).
func (s *sqlStore) RenewObjects(ctx context.Context, owner string, until time.Time) error {
	if owner == "" {
		return invalid("renew without an owner")
	}
	if _, err := s.db.ExecContext(ctx, `UPDATE inventory SET lease_until = $1 WHERE lease_owner = $2 AND NOT processed`,
		toMicros(until), owner); err != nil {
		return fmt.Errorf("renew objects: %w", err)
	}
	return nil
}

// ReleaseObjects gives back the unprocessed objects leased to owner (a
// graceful shutdown), so another instance or a restart takes them at once.
func (s *sqlStore) ReleaseObjects(ctx context.Context, owner string) error {
	if owner == "" {
		return invalid("release without an owner")
	}
	if _, err := s.db.ExecContext(ctx, `UPDATE inventory SET lease_owner = '', lease_until = 0
		WHERE lease_owner = $1 AND NOT processed`, owner); err != nil {
		return fmt.Errorf("release objects: %w", err)
	}
	return nil
}

// MarkProcessed is the checked transition from pending to processed: it
// applies only while the object is leased to owner ("" for an object
// nobody claimed). An object already processed is left as it is (nil: the
// effects are idempotent, and whoever processed it is done); one leased to
// another owner is ErrConflict; an unknown one is ErrNotFound.
func (s *sqlStore) MarkProcessed(ctx context.Context, h wire.InvHash, owner string, now time.Time) error {
	var processed bool
	err := s.write(ctx, func(w *wtx) error {
		res, err := w.ExecContext(ctx, `UPDATE inventory SET processed = TRUE, processed_at = $1, lease_owner = '',
			lease_until = 0 WHERE hash = $2 AND lease_owner = $3 AND NOT processed`, max(toMicros(now), 1), h[:], owner)
		if err != nil {
			return fmt.Errorf("mark processed: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 1 {
			return err
		}
		err = w.QueryRowContext(ctx, `SELECT processed FROM inventory WHERE hash = $1`, h[:]).Scan(&processed)
		if errors.Is(err, sql.ErrNoRows) {
			return errObjectNotFound
		}
		if err != nil {
			return fmt.Errorf("mark processed: %w", err)
		}
		if !processed {
			return fmt.Errorf("mark processed: %w: leased to another instance", ErrConflict)
		}
		return nil
	})
	return err
}

// InboundBacklog counts the objects waiting for the gateway and those the
// whole deployment processed since the start of the window.
func (s *sqlStore) InboundBacklog(ctx context.Context, now time.Time, window time.Duration) (InboundBacklog, error) {
	b := InboundBacklog{Window: window}
	var pending, due, leased, done int64
	err := s.rdb.QueryRowContext(ctx, `SELECT COUNT(*),
			COALESCE(SUM(CASE WHEN retry_at <= $1 THEN 1 ELSE 0 END), 0),
			COALESCE(SUM(CASE WHEN lease_until > $1 THEN 1 ELSE 0 END), 0)
		FROM inventory WHERE NOT processed AND NOT set_aside`, toMicros(now)).Scan(&pending, &due, &leased)
	if err != nil {
		return b, fmt.Errorf("inbound backlog: %w", err)
	}
	err = s.rdb.QueryRowContext(ctx, `SELECT COUNT(*) FROM inventory WHERE processed_at > $1`,
		toMicros(now.Add(-window))).Scan(&done)
	if err != nil {
		return b, fmt.Errorf("inbound backlog: %w", err)
	}
	b.Pending, b.Due, b.Leased, b.Processed = int(pending), int(due), int(leased), int(done)
	return b, nil
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
