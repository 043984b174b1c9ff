package mailmap

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// NoteEncoding records that a msg or broadcast in that encoding arrived
// from address (raising, never lowering, the highest one seen).
func (s *sqlStore) NoteEncoding(ctx context.Context, address string, encoding uint64) error {
	if address == "" || !validText(address, 128) {
		return invalid("encoding address")
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO peer_encodings (address, max_encoding, updated_at) VALUES ($1, $2, $3)
		ON CONFLICT (address) DO UPDATE SET
			max_encoding = CASE WHEN excluded.max_encoding > peer_encodings.max_encoding
				THEN excluded.max_encoding ELSE peer_encodings.max_encoding END,
			updated_at = excluded.updated_at`,
		address, u64(encoding), toMicros(s.now()))
	if err != nil {
		return fmt.Errorf("note encoding: %w", err)
	}
	return nil
}

// EncodingSeen returns the highest encoding seen from address, 0 when none.
func (s *sqlStore) EncodingSeen(ctx context.Context, address string) (uint64, error) {
	var e int64
	err := s.rdb.QueryRowContext(ctx, `SELECT max_encoding FROM peer_encodings WHERE address = $1`, address).Scan(&e)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("read encoding seen: %w", err)
	}
	return fromU64(e), nil
}

// OutboxByInvHash returns the user's outbox row whose last published msg
// has that inventory hash.
func (s *sqlStore) OutboxByInvHash(ctx context.Context, userID int64, hash []byte) (OutboxItem, error) {
	if len(hash) == 0 {
		return OutboxItem{}, ErrNotFound
	}
	it, err := scanOutbox(s.rdb.QueryRowContext(ctx, `SELECT `+outboxCols+` FROM outbox
		WHERE inv_hash = $1 AND user_id = $2 ORDER BY id DESC LIMIT 1`, hash, userID))
	if errors.Is(err, sql.ErrNoRows) {
		return OutboxItem{}, ErrNotFound
	}
	if err != nil {
		return OutboxItem{}, fmt.Errorf("outbox by inventory hash: %w", err)
	}
	return it, nil
}

// PubkeyRequest returns the latest getpubkey request any row waiting for
// the pubkey of address made: how many that row made and when the last
// went out. ErrNotFound when no waiting row has asked yet.
func (s *sqlStore) PubkeyRequest(ctx context.Context, address string) (attempts int, sentAt time.Time, err error) {
	var a int64
	var at sql.NullInt64
	err = s.rdb.QueryRowContext(ctx, `SELECT attempts, sent_at FROM outbox
		WHERE to_address = $1 AND state = 'awaiting_pubkey' AND sent_at IS NOT NULL
		ORDER BY sent_at DESC LIMIT 1`, address).Scan(&a, &at)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return 0, time.Time{}, ErrNotFound
	case err != nil:
		return 0, time.Time{}, fmt.Errorf("pubkey request: %w", err)
	}
	return int(a), fromNullMicros(at), nil
}

// PendingSend is the size and destination of an outbox row that still
// needs its proof of work, for estimates: no content is read.
type PendingSend struct {
	UserID        int64
	Kind          OutboxKind
	ToAddress     string
	Encoding      uint64
	TTL           time.Duration
	TextBytes     int // subject, body and extras
	OriginalBytes int // the submitted mail
}

// PendingSends lists the rows in queued, awaiting_pubkey or doing_pow, of
// one user (userID > 0) or of all.
func (s *sqlStore) PendingSends(ctx context.Context, userID int64) ([]PendingSend, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT user_id, kind, to_address, encoding, ttl,
			length(subject) + length(body) + COALESCE(length(extra), 0), COALESCE(length(original), 0)
		FROM outbox WHERE state IN ('queued', 'awaiting_pubkey', 'doing_pow') AND ($1 = 0 OR user_id = $1)
		ORDER BY id`, userID)
	if err != nil {
		return nil, fmt.Errorf("pending sends: %w", err)
	}
	defer rows.Close()
	var out []PendingSend
	for rows.Next() {
		var p PendingSend
		var kind string
		var enc, ttl, text, orig int64
		if err := rows.Scan(&p.UserID, &kind, &p.ToAddress, &enc, &ttl, &text, &orig); err != nil {
			return nil, fmt.Errorf("pending sends: %w", err)
		}
		p.Kind, p.Encoding, p.TTL, p.TextBytes, p.OriginalBytes = OutboxKind(kind), fromU64(enc), time.Duration(ttl), int(text), int(orig)
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pending sends: %w", err)
	}
	return out, nil
}
