package mailmap

import (
	"errors"
	"io/fs"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/bmgate/bmgate/migrations"
)

// dialect holds the few things that differ between PostgreSQL and SQLite.
// Everything else (all DML) is the same SQL text for both: $n placeholders,
// ON CONFLICT, RETURNING and TRUE/FALSE work unchanged on SQLite ≥ 3.35 and
// PostgreSQL ≥ 9.5 (docs/compatibility.md, Library facts: SQL shared by
// both backends).
type dialect struct {
	name          string
	migrations    fs.FS  // embedded schema
	migrationsDir string // directory of NNNN_name.sql files in migrations
	// lockMigrations serialises concurrent migrators (several processes
	// starting at once). SQLite's immediate transaction already does.
	lockMigrations string
	// lockUser takes the user's row lock: the order of locks is always the
	// user row first, then mailbox rows by ascending id, so concurrent
	// transactions cannot deadlock. On SQLite the single writer makes locks
	// moot and these are plain reads.
	lockUser    string // $1 user id → quota_bytes, used_bytes
	lockMailbox string // $1 mailbox id, $2 user id → mailboxCols
	// skipLocked ends the outbox claim sub-select.
	skipLocked string
	// notify says whether changes are published with pg_notify in the
	// writing transaction (cross-process); otherwise only in-process.
	notify bool
	// retryable reports a transient failure worth running the transaction again.
	retryable func(error) bool
}

var postgresDialect = &dialect{
	name:           "postgres",
	migrations:     migrations.Postgres,
	migrationsDir:  "postgres",
	lockMigrations: `SELECT pg_advisory_xact_lock(7306035447011820866)`, // arbitrary, fixed: "bmgate" migrations
	lockUser:       `SELECT quota_bytes, used_bytes FROM users WHERE id = $1 FOR NO KEY UPDATE`,
	lockMailbox:    `SELECT ` + mailboxCols + ` FROM mailboxes WHERE id = $1 AND user_id = $2 FOR NO KEY UPDATE`,
	skipLocked:     ` FOR UPDATE SKIP LOCKED`,
	notify:         true,
	retryable: func(err error) bool {
		var pe *pgconn.PgError
		// 40001 serialization_failure, 40P01 deadlock_detected.
		return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
	},
}

var sqliteDialect = &dialect{
	name:          "sqlite",
	migrations:    migrations.SQLite,
	migrationsDir: "sqlite",
	lockUser:      `SELECT quota_bytes, used_bytes FROM users WHERE id = $1`,
	lockMailbox:   `SELECT ` + mailboxCols + ` FROM mailboxes WHERE id = $1 AND user_id = $2`,
	// Immediate transactions on one writer connection do not deadlock;
	// SQLITE_BUSY means another process held the lock past busy_timeout,
	// and waiting that long again would not help the caller.
	retryable: func(error) bool { return false },
}

// isUniqueViolation reports a unique or primary-key constraint failure.
func isUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "23505"
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	return false
}

// isForeignKeyViolation reports a reference to a row that does not exist.
func isForeignKeyViolation(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "23503"
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY
	}
	return false
}
