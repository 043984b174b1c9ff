package mailmap

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

const identityCols = `id, user_id, address, label, kind, signing_key, encryption_key, publish_pubkey,
	nonce_trials_per_byte, extra_bytes, last_pubkey_sent, created_at, chan_passphrase, mailing_list, mailing_list_name`

// Sealed keys are bound to their row's address and role.
func signingContext(address string) string    { return "identity signing key " + address }
func encryptionContext(address string) string { return "identity encryption key " + address }
func passphraseContext(address string) string { return "chan passphrase " + address }

// maxChanPassphrase bounds a chan's passphrase (bytes).
const maxChanPassphrase = 4096

func (s *sqlStore) scanIdentity(row interface{ Scan(...any) error }) (Identity, error) {
	var id Identity
	var kind string
	var sk, ek, pp []byte
	var ntpb, extra, created int64
	var lastSent sql.NullInt64
	if err := row.Scan(&id.ID, &id.UserID, &id.Address, &id.Label, &kind, &sk, &ek, &id.PublishPubkey,
		&ntpb, &extra, &lastSent, &created, &pp, &id.MailingList, &id.MailingListName); err != nil {
		return Identity{}, err
	}
	var err error
	if id.SigningKey, err = s.keys.open(sk, signingContext(id.Address)); err != nil {
		return Identity{}, fmt.Errorf("identity %s: %w", id.Address, err)
	}
	if id.EncryptionKey, err = s.keys.open(ek, encryptionContext(id.Address)); err != nil {
		return Identity{}, fmt.Errorf("identity %s: %w", id.Address, err)
	}
	if pp != nil {
		p, err := s.keys.open(pp, passphraseContext(id.Address))
		if err != nil {
			return Identity{}, fmt.Errorf("identity %s: %w", id.Address, err)
		}
		id.ChanPassphrase = string(p)
	}
	id.Kind = IdentityKind(kind)
	id.NonceTrialsPerByte, id.ExtraBytes = fromU64(ntpb), fromU64(extra)
	id.LastPubkeySent = fromNullMicros(lastSent)
	id.CreatedAt = fromMicros(created)
	return id, nil
}

func (s *sqlStore) AddIdentity(ctx context.Context, id Identity) (Identity, error) {
	sealed, err := s.sealIdentity(&id)
	if err != nil {
		return Identity{}, err
	}
	err = s.write(ctx, func(w *wtx) error {
		if err := userExists(ctx, w, id.UserID); err != nil {
			return err
		}
		ok, err := insertIdentity(ctx, w, &id, sealed)
		if err != nil {
			return err
		}
		if !ok {
			return ErrExists
		}
		return nil
	})
	if err != nil {
		return Identity{}, err
	}
	return id, nil
}

// sealedIdentity is an identity's secrets as stored.
type sealedIdentity struct {
	sk, ek []byte
	pp     any // NULL: no passphrase
}

// sealIdentity checks an identity to be added, fills its defaults and
// seals its secrets.
func (s *sqlStore) sealIdentity(id *Identity) (sealedIdentity, error) {
	var out sealedIdentity
	if id.Kind == "" {
		id.Kind = KindNormal
	}
	switch {
	case id.Address == "" || !validText(id.Address, 128):
		return out, invalid("identity address")
	case !validText(id.Label, 1024):
		return out, invalid("identity label")
	case id.Kind != KindNormal && id.Kind != KindChan:
		return out, invalid("identity kind")
	case len(id.SigningKey) != 32 || len(id.EncryptionKey) != 32:
		return out, invalid("identity private keys must be 32 bytes")
	case id.ChanPassphrase != "" && id.Kind != KindChan:
		return out, invalid("only a chan has a passphrase")
	case len(id.ChanPassphrase) > maxChanPassphrase:
		return out, invalid("chan passphrase too long")
	case id.MailingList && id.Kind == KindChan:
		return out, invalid("a chan cannot be a mailing list")
	case !validText(id.MailingListName, 1024):
		return out, invalid("mailing list name")
	}
	var err error
	if out.sk, err = s.keys.seal(id.SigningKey, signingContext(id.Address)); err != nil {
		return out, err
	}
	if out.ek, err = s.keys.seal(id.EncryptionKey, encryptionContext(id.Address)); err != nil {
		return out, err
	}
	if id.ChanPassphrase != "" {
		if out.pp, err = s.keys.seal([]byte(id.ChanPassphrase), passphraseContext(id.Address)); err != nil {
			return out, err
		}
	}
	if id.CreatedAt.IsZero() {
		id.CreatedAt = s.now()
	}
	id.CreatedAt, id.LastPubkeySent = stored(id.CreatedAt), stored(id.LastPubkeySent)
	return out, nil
}

// insertIdentity inserts a sealed identity and sets its ID; false when the
// user already has that address.
func insertIdentity(ctx context.Context, w *wtx, id *Identity, sealed sealedIdentity) (bool, error) {
	err := w.QueryRowContext(ctx, `INSERT INTO identities (user_id, address, label, kind, signing_key, encryption_key,
			publish_pubkey, nonce_trials_per_byte, extra_bytes, last_pubkey_sent, created_at, chan_passphrase,
			mailing_list, mailing_list_name)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) ON CONFLICT DO NOTHING RETURNING id`,
		id.UserID, id.Address, id.Label, string(id.Kind), sealed.sk, sealed.ek, id.PublishPubkey,
		u64(id.NonceTrialsPerByte), u64(id.ExtraBytes), toNullMicros(id.LastPubkeySent), toMicros(id.CreatedAt), sealed.pp,
		id.MailingList, id.MailingListName).Scan(&id.ID)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("add identity: %w", err)
	}
	return true, nil
}

// userExists returns ErrNotFound for an unknown user id.
func userExists(ctx context.Context, q queryer, userID int64) error {
	var one int
	if err := q.QueryRowContext(ctx, `SELECT 1 FROM users WHERE id = $1`, userID).Scan(&one); err != nil {
		return notFound("read user", err)
	}
	return nil
}

func (s *sqlStore) identities(ctx context.Context, query string, args ...any) ([]Identity, error) {
	rows, err := s.rdb.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list identities: %w", err)
	}
	defer rows.Close()
	var out []Identity
	for rows.Next() {
		id, err := s.scanIdentity(rows)
		if err != nil {
			return nil, fmt.Errorf("list identities: %w", err)
		}
		out = append(out, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list identities: %w", err)
	}
	return out, nil
}

func (s *sqlStore) Identities(ctx context.Context, userID int64) ([]Identity, error) {
	return s.identities(ctx, `SELECT `+identityCols+` FROM identities WHERE user_id = $1 ORDER BY id`, userID)
}

func (s *sqlStore) AllIdentities(ctx context.Context) ([]Identity, error) {
	return s.identities(ctx, `SELECT `+identityCols+` FROM identities ORDER BY id`)
}

func (s *sqlStore) IdentityByAddress(ctx context.Context, address string) (Identity, error) {
	id, err := s.scanIdentity(s.rdb.QueryRowContext(ctx, `SELECT `+identityCols+` FROM identities WHERE address = $1 ORDER BY id LIMIT 1`, address))
	if err != nil {
		return Identity{}, notFound("read identity", err)
	}
	return id, nil
}

func (s *sqlStore) IdentitiesByAddress(ctx context.Context, address string) ([]Identity, error) {
	return s.identities(ctx, `SELECT `+identityCols+` FROM identities WHERE address = $1 ORDER BY id`, address)
}

func (s *sqlStore) MarkPubkeySent(ctx context.Context, identityID int64, at time.Time) error {
	res, err := s.db.ExecContext(ctx, `UPDATE identities SET last_pubkey_sent = $1 WHERE id = $2`, toNullMicros(at), identityID)
	return rowsAffected("mark pubkey sent", res, err)
}

func (s *sqlStore) DeleteIdentity(ctx context.Context, userID, identityID int64) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM identities WHERE id = $1 AND user_id = $2`, identityID, userID)
	return rowsAffected("delete identity", res, err)
}

// Contacts.

func (s *sqlStore) AddContact(ctx context.Context, c Contact) (Contact, error) {
	c.Alias = strings.ToLower(c.Alias)
	if c.Alias == "" || !validText(c.Alias, 320) {
		return Contact{}, invalid("contact alias")
	}
	if c.Address == "" || !validText(c.Address, 128) {
		return Contact{}, invalid("contact address")
	}
	err := s.write(ctx, func(w *wtx) error {
		if err := userExists(ctx, w, c.UserID); err != nil {
			return err
		}
		err := w.QueryRowContext(ctx, `INSERT INTO contacts (user_id, alias, address) VALUES ($1, $2, $3)
			ON CONFLICT DO NOTHING RETURNING id`, c.UserID, c.Alias, c.Address).Scan(&c.ID)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrExists
		}
		if err != nil {
			return fmt.Errorf("add contact: %w", err)
		}
		return nil
	})
	if err != nil {
		return Contact{}, err
	}
	return c, nil
}

func (s *sqlStore) Contacts(ctx context.Context, userID int64) ([]Contact, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT id, user_id, alias, address FROM contacts WHERE user_id = $1 ORDER BY alias`, userID)
	if err != nil {
		return nil, fmt.Errorf("list contacts: %w", err)
	}
	defer rows.Close()
	var out []Contact
	for rows.Next() {
		var c Contact
		if err := rows.Scan(&c.ID, &c.UserID, &c.Alias, &c.Address); err != nil {
			return nil, fmt.Errorf("list contacts: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list contacts: %w", err)
	}
	return out, nil
}

// DeleteContact removes one of the user's aliases (ErrNotFound: none).
func (s *sqlStore) DeleteContact(ctx context.Context, userID int64, alias string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM contacts WHERE user_id = $1 AND alias = $2`, userID, strings.ToLower(alias))
	return rowsAffected("delete contact", res, err)
}

func (s *sqlStore) ResolveAlias(ctx context.Context, userID int64, alias string) (string, error) {
	var addr string
	err := s.rdb.QueryRowContext(ctx, `SELECT address FROM contacts WHERE user_id = $1 AND alias = $2`,
		userID, strings.ToLower(alias)).Scan(&addr)
	if err != nil {
		return "", notFound("resolve alias", err)
	}
	return addr, nil
}

// Subscriptions.

func (s *sqlStore) AddSubscription(ctx context.Context, sub Subscription) (Subscription, error) {
	if sub.Address == "" || !validText(sub.Address, 128) {
		return Subscription{}, invalid("subscription address")
	}
	if !validText(sub.Label, 1024) {
		return Subscription{}, invalid("subscription label")
	}
	err := s.write(ctx, func(w *wtx) error {
		if err := userExists(ctx, w, sub.UserID); err != nil {
			return err
		}
		err := w.QueryRowContext(ctx, `INSERT INTO subscriptions (user_id, address, label) VALUES ($1, $2, $3)
			ON CONFLICT DO NOTHING RETURNING id`, sub.UserID, sub.Address, sub.Label).Scan(&sub.ID)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrExists
		}
		if err != nil {
			return fmt.Errorf("add subscription: %w", err)
		}
		return nil
	})
	if err != nil {
		return Subscription{}, err
	}
	return sub, nil
}

// DeleteSubscription stops following address (ErrNotFound: not followed).
func (s *sqlStore) DeleteSubscription(ctx context.Context, userID int64, address string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM subscriptions WHERE user_id = $1 AND address = $2`, userID, address)
	return rowsAffected("delete subscription", res, err)
}

func (s *sqlStore) subscriptions(ctx context.Context, query string, args ...any) ([]Subscription, error) {
	rows, err := s.rdb.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list subscriptions: %w", err)
	}
	defer rows.Close()
	var out []Subscription
	for rows.Next() {
		var sub Subscription
		if err := rows.Scan(&sub.ID, &sub.UserID, &sub.Address, &sub.Label); err != nil {
			return nil, fmt.Errorf("list subscriptions: %w", err)
		}
		out = append(out, sub)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list subscriptions: %w", err)
	}
	return out, nil
}

func (s *sqlStore) Subscriptions(ctx context.Context, userID int64) ([]Subscription, error) {
	return s.subscriptions(ctx, `SELECT id, user_id, address, label FROM subscriptions WHERE user_id = $1 ORDER BY id`, userID)
}

func (s *sqlStore) AllSubscriptions(ctx context.Context) ([]Subscription, error) {
	return s.subscriptions(ctx, `SELECT id, user_id, address, label FROM subscriptions ORDER BY id`)
}

// Pubkey cache.

func (s *sqlStore) PutPubkey(ctx context.Context, p Pubkey) error {
	if p.Address == "" || !validText(p.Address, 128) || !validText(p.Source, 64) {
		return invalid("pubkey address or source")
	}
	if len(p.SigningKey) != 64 || len(p.EncryptionKey) != 64 {
		return invalid("pubkey keys must be 64 bytes (X||Y)")
	}
	if p.LearnedAt.IsZero() {
		p.LearnedAt = s.now()
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO pubkeys (address, version, stream, bitfield, signing_key, encryption_key,
			nonce_trials_per_byte, extra_bytes, source, learned_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
		ON CONFLICT (address) DO UPDATE SET version = excluded.version, stream = excluded.stream,
			bitfield = excluded.bitfield, signing_key = excluded.signing_key, encryption_key = excluded.encryption_key,
			nonce_trials_per_byte = excluded.nonce_trials_per_byte, extra_bytes = excluded.extra_bytes,
			source = excluded.source, learned_at = excluded.learned_at`,
		p.Address, u64(p.Version), u64(p.Stream), int64(p.Bitfield), p.SigningKey, p.EncryptionKey,
		u64(p.NonceTrialsPerByte), u64(p.ExtraBytes), p.Source, toMicros(p.LearnedAt))
	if err != nil {
		return fmt.Errorf("put pubkey: %w", err)
	}
	return nil
}

func (s *sqlStore) Pubkey(ctx context.Context, address string) (Pubkey, error) {
	var p Pubkey
	var version, stream, bitfield, ntpb, extra, learned int64
	err := s.rdb.QueryRowContext(ctx, `SELECT address, version, stream, bitfield, signing_key, encryption_key,
			nonce_trials_per_byte, extra_bytes, source, learned_at FROM pubkeys WHERE address = $1`, address).
		Scan(&p.Address, &version, &stream, &bitfield, &p.SigningKey, &p.EncryptionKey, &ntpb, &extra, &p.Source, &learned)
	if err != nil {
		return Pubkey{}, notFound("read pubkey", err)
	}
	p.Version, p.Stream, p.Bitfield = fromU64(version), fromU64(stream), uint32(bitfield)
	p.NonceTrialsPerByte, p.ExtraBytes = fromU64(ntpb), fromU64(extra)
	p.LearnedAt = fromMicros(learned)
	return p, nil
}
