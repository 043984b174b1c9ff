package mailmap

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	"modernc.org/sqlite"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
	sqlite3 "modernc.org/sqlite/lib"
)

// ErrSecretKey is returned by Open when Options.SecretKey is missing or is
// not the key the database's identity keys were sealed with.
var ErrSecretKey = errors.New("mailmap: secret key is missing or does not match the database")

// Options configure Open.
type Options struct {
	// SecretKey (32 bytes, required) seals identity private keys at rest
	// with AES-256-GCM, so a database dump alone does not give them away.
	// Every process opening one database must use the same key.
	SecretKey []byte
	// Logger receives operational messages (migrations, LISTEN reconnects);
	// nil discards them. Credentials and message bodies are never logged.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// NoHeaderBackfill leaves the indexing of mail stored before the
	// header index existed to another process: short-lived commands set
	// it, so that a cron job's sendmail does not write index batches each
	// time it runs; the server does the backfill.
	NoHeaderBackfill bool
	// Network is the Bitmessage network the caller runs on. The first
	// open records it; a later open with another one fails with
	// ErrNetworkMismatch. "" skips the check.
	Network string
}

// sqlStore is the database/sql implementation of Store for both dialects.
type sqlStore struct {
	db  *sql.DB // writes; for SQLite a single connection with immediate transactions
	rdb *sql.DB // reads; for SQLite a read-only pool, for PostgreSQL the same pool as db
	d   *dialect

	keys   *keySealer
	log    *slog.Logger
	now    func() time.Time
	hub    *hub
	origin string // identifies this Store in PostgreSQL notifications

	migrateTo int64 // > 0: apply migrations only up to this version (tests)

	headerIndex  bool // the schema has message_headers (not so only in tests of older schemas)
	stmtMu       sync.Mutex
	stmts        map[string]*sql.Stmt // prepared on rdb; see prepared
	stopBackfill func()               // stops the header index backfill; nil when none runs

	gen   accountGen // PostgreSQL: the accounts generation, kept by the LISTEN loop
	users userStates // per-command account checks (UserActive)

	closeOnce  sync.Once
	stopListen func() // stops the PostgreSQL LISTEN loop; nil for SQLite

	dbID string // settings database_id, read at open

}

// Open opens (creating if needed) the database named by dsn and brings its
// schema up to date. A dsn starting with postgres:// or postgresql:// is a
// PostgreSQL connection string; anything else is an SQLite file path,
// optionally prefixed with "sqlite:" or given as a "file:" URI.
func Open(ctx context.Context, dsn string, opts Options) (Store, error) {
	s, err := open(ctx, dsn, opts, 0)
	if err != nil {
		return nil, err
	}
	if !opts.NoHeaderBackfill {
		s.startHeaderBackfill()
	}
	return s, nil
}

// open is Open; migrateTo > 0 stops the schema at that version (tests of
// migrations start from an older schema).
// The header index backfill is not started (Open starts it).
func open(ctx context.Context, dsn string, opts Options, migrateTo int64) (*sqlStore, error) {
	keys, err := newKeySealer(opts.SecretKey)
	if err != nil {
		return nil, err
	}
	s := &sqlStore{keys: keys, log: opts.Logger, now: opts.Now, hub: newHub(), migrateTo: migrateTo,
		headerIndex: migrateTo == 0 || migrateTo >= headerIndexVersion}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	var origin [8]byte
	if _, err := rand.Read(origin[:]); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	s.origin = hex.EncodeToString(origin[:])

	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		err = s.openPostgres(ctx, dsn)
	} else {
		err = s.openSQLite(dsn)
	}
	if err != nil {
		s.closeDBs()
		return nil, err
	}
	if err := s.migrate(ctx); err != nil {
		s.closeDBs()
		return nil, err
	}
	if err := s.checkSecretKey(ctx); err != nil {
		s.closeDBs()
		return nil, err
	}
	if err := s.checkMeta(ctx, opts.Network); err != nil {
		s.closeDBs()
		return nil, err
	}
	if err := s.migrateChanSecrets(ctx); err != nil {
		s.closeDBs()
		return nil, err
	}
	if s.d.notify {
		stop, err := s.listen(ctx, dsn)
		if err != nil {
			s.closeDBs()
			return nil, err
		}
		s.stopListen = stop
		// Listening already: a change committed from here on raises the
		// generation past what this read returns.
		if _, err := s.ReadAccountsGeneration(ctx); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

func (s *sqlStore) openPostgres(ctx context.Context, dsn string) error {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return fmt.Errorf("open postgres: %w", err)
	}
	db.SetMaxOpenConns(32)
	db.SetMaxIdleConns(8)
	db.SetConnMaxIdleTime(5 * time.Minute)
	s.db, s.rdb, s.d = db, db, postgresDialect
	if err := db.PingContext(ctx); err != nil {
		return fmt.Errorf("connect postgres: %w", err)
	}
	return nil
}

// sqlitePragmas are set on every connection (the pool opens many), see
// docs/compatibility.md, Library facts: modernc.org/sqlite.
// synchronous=FULL because nothing is acknowledged before it is durable.
const sqlitePragmas = "_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=synchronous(FULL)"

// sqliteBase splits an SQLite DSN into what the driver opens and the
// separator before the parameters bmgate adds.
func sqliteBase(dsn string) (base, sep string, err error) {
	switch {
	case strings.HasPrefix(dsn, "file:"):
		// A URI: SQLite parses it; our parameters join any already given.
		base, sep = dsn, "?"
		if strings.Contains(dsn, "?") {
			sep = "&"
		}
	default:
		path := strings.TrimPrefix(dsn, "sqlite:")
		if path == "" || strings.ContainsAny(path, "?#") {
			return "", "", fmt.Errorf("open sqlite: invalid database path %q (use a file: URI for parameters)", path)
		}
		base, sep = path, "?"
	}
	if strings.Contains(base, ":memory:") || strings.Contains(base, "mode=memory") {
		return "", "", errors.New("open sqlite: in-memory databases are not supported (reads and writes use separate connections)")
	}
	return base, sep, nil
}

func (s *sqlStore) openSQLite(dsn string) error {
	base, sep, err := sqliteBase(dsn)
	if err != nil {
		return err
	}
	// One writer connection: SQLite has a single writer anyway, and queueing
	// in the pool (honouring contexts) beats spinning on SQLITE_BUSY.
	// Immediate transactions take the write lock at BEGIN, so a transaction
	// that reads then writes cannot fail to upgrade its lock.
	w, err := sql.Open("sqlite", base+sep+sqlitePragmas+"&_txlock=immediate")
	if err != nil {
		return fmt.Errorf("open sqlite: %w", err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxIdleTime(0)
	s.db, s.d = w, sqliteDialect
	r, err := sql.Open("sqlite", base+sep+sqlitePragmas+"&_pragma=query_only(1)")
	if err != nil {
		return fmt.Errorf("open sqlite: %w", err)
	}
	n := max(4, 2*runtime.NumCPU())
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	s.rdb = r
	// The first connection creates the file and switches it to WAL. Several
	// processes starting at once on a new file race for that switch, and
	// SQLite answers the losers SQLITE_BUSY at once, without its busy
	// handler: try again for a while.
	deadline := time.Now().Add(10 * time.Second) // busy_timeout's bound
	for wait := 5 * time.Millisecond; ; wait = min(2*wait, 200*time.Millisecond) {
		err := w.Ping()
		if err == nil {
			return nil
		}
		if !isBusy(err) || time.Now().After(deadline) {
			return fmt.Errorf("open sqlite: %w", err)
		}
		time.Sleep(wait)
	}
}

// isBusy reports SQLite's SQLITE_BUSY (another connection holds a lock).
func isBusy(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_BUSY
}

func (s *sqlStore) closeDBs() {
	if s.rdb != nil && s.rdb != s.db {
		s.rdb.Close()
	}
	if s.db != nil {
		s.db.Close()
	}
}

// Close stops change notifications, closes every subscriber channel and
// closes the database.
func (s *sqlStore) Close() error {
	var err error
	s.closeOnce.Do(func() {
		if s.stopBackfill != nil {
			s.stopBackfill()
		}
		s.stmtMu.Lock()
		for _, st := range s.stmts {
			st.Close()
		}
		s.stmts = nil
		s.stmtMu.Unlock()
		if s.stopListen != nil {
			s.stopListen()
		}
		s.hub.close()
		if s.rdb != s.db {
			if e := s.rdb.Close(); e != nil {
				err = fmt.Errorf("close store: %w", e)
			}
		}
		if e := s.db.Close(); e != nil && err == nil {
			err = fmt.Errorf("close store: %w", e)
		}
	})
	return err
}

// keyCheckName is the settings row that proves the secret key is right.
const keyCheckName = "key_check"

// checkSecretKey makes a wrong SecretKey fail at Open instead of at the
// first identity read: the first Open seals a known value, later ones must
// be able to open it.
func (s *sqlStore) checkSecretKey(ctx context.Context) error {
	sealed, err := s.keys.seal([]byte("bmgate"), keyCheckName)
	if err != nil {
		return err
	}
	return s.write(ctx, func(w *wtx) error {
		res, err := w.ExecContext(ctx,
			`INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`,
			keyCheckName, sealed)
		if err != nil {
			return fmt.Errorf("store key check: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("store key check: %w", err)
		} else if n == 1 {
			// No key check yet, but identities sealed with some key (the
			// row was lost): the key must open them.
			var addr string
			var sk []byte
			err := w.QueryRowContext(ctx, `SELECT address, signing_key FROM identities ORDER BY id LIMIT 1`).Scan(&addr, &sk)
			if err == nil {
				if _, err := s.keys.open(sk, signingContext(addr)); err != nil {
					return ErrSecretKey
				}
			} else if !errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("read identity: %w", err)
			}
		}
		var stored []byte
		if err := w.QueryRowContext(ctx, `SELECT value FROM settings WHERE name = $1`, keyCheckName).Scan(&stored); err != nil {
			return fmt.Errorf("read key check: %w", err)
		}
		if _, err := s.keys.open(stored, keyCheckName); err != nil {
			return ErrSecretKey
		}
		return nil
	})
}
