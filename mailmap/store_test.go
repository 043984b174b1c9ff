package mailmap_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bmgate/bmgate/mailmap"
	"github.com/bmgate/bmgate/mailmap/storetest"
	"github.com/bmgate/bmgate/migrations"
)

var testKey = bytes.Repeat([]byte{0x42}, 32)

func openDSN(tb testing.TB, dsn string) mailmap.Store {
	tb.Helper()
	s, err := mailmap.Open(context.Background(), dsn, mailmap.Options{SecretKey: testKey})
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func sqlitePath(tb testing.TB) string { return filepath.Join(tb.TempDir(), "mail.db") }

func openSQLite(tb testing.TB) mailmap.Store   { return openDSN(tb, sqlitePath(tb)) }
func openPostgres(tb testing.TB) mailmap.Store { return openDSN(tb, storetest.PostgresDSN(tb)) }

func TestSQLite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) mailmap.Store { return openSQLite(t) })
}

func TestPostgres(t *testing.T) {
	storetest.PostgresDSN(t) // skips (or fails in CI) without a server
	storetest.Run(t, func(t *testing.T) mailmap.Store { return openPostgres(t) })
}

func TestSQLiteShared(t *testing.T) {
	storetest.RunShared(t, storetest.Shared{New: func(t *testing.T) func(t *testing.T) mailmap.Store {
		path := sqlitePath(t)
		return func(t *testing.T) mailmap.Store { return openDSN(t, path) }
	}})
}

func TestPostgresShared(t *testing.T) {
	storetest.PostgresDSN(t)
	storetest.RunShared(t, storetest.Shared{
		New: func(t *testing.T) func(t *testing.T) mailmap.Store {
			dsn := storetest.PostgresDSN(t)
			return func(t *testing.T) mailmap.Store { return openDSN(t, dsn) }
		},
		CrossInstanceNotify: true,
	})
}

// backend is one database for the tests below, which look at it directly.
type backend struct {
	name string
	dsn  func(t *testing.T) string
	// raw opens the database without mailmap.
	raw func(t *testing.T, dsn string) *sql.DB
	// files lists files holding the database, when it lives in files.
	files func(dsn string) []string
}

func backends() []backend {
	return []backend{
		{
			name: "sqlite",
			dsn:  func(t *testing.T) string { return sqlitePath(t) },
			raw: func(t *testing.T, dsn string) *sql.DB {
				db, err := sql.Open("sqlite", dsn)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { db.Close() })
				return db
			},
			files: func(dsn string) []string { return []string{dsn, dsn + "-wal", dsn + "-shm"} },
		},
		{
			name: "postgres",
			dsn:  func(t *testing.T) string { return storetest.PostgresDSN(t) },
			raw: func(t *testing.T, dsn string) *sql.DB {
				db, err := sql.Open("pgx", dsn)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { db.Close() })
				return db
			},
		},
	}
}

func TestMigrations(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			dsn := b.dsn(t)
			s := openDSN(t, dsn)
			s.Close()
			db := b.raw(t, dsn)
			var n, version int64
			if err := db.QueryRowContext(ctx, `SELECT COUNT(*), MAX(version) FROM schema_migrations`).Scan(&n, &version); err != nil {
				t.Fatal(err)
			}
			// Opening again applies nothing and records nothing.
			openDSN(t, dsn).Close()
			var n2 int64
			if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations`).Scan(&n2); err != nil {
				t.Fatal(err)
			}
			if n2 != n || n == 0 {
				t.Fatalf("schema_migrations has %d rows after the first open, %d after the second", n, n2)
			}
			// A database from a newer bmgate is refused, with a clear message.
			if _, err := db.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, 'future', 0)`,
				version+1); err != nil {
				t.Fatal(err)
			}
			_, err := mailmap.Open(ctx, dsn, mailmap.Options{SecretKey: testKey})
			if !errors.Is(err, mailmap.ErrNewerSchema) {
				t.Fatalf("Open of a newer schema: %v, want ErrNewerSchema", err)
			}
			if !strings.Contains(err.Error(), "newer bmgate") {
				t.Fatalf("refusal does not say what to do: %v", err)
			}
		})
	}
}

func TestSecretKey(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			dsn := b.dsn(t)
			openDSN(t, dsn).Close()
			other := bytes.Repeat([]byte{0x43}, 32)
			if _, err := mailmap.Open(ctx, dsn, mailmap.Options{SecretKey: other}); !errors.Is(err, mailmap.ErrSecretKey) {
				t.Fatalf("Open with another key: %v, want ErrSecretKey", err)
			}
			for _, k := range [][]byte{nil, testKey[:16]} {
				if _, err := mailmap.Open(ctx, dsn, mailmap.Options{SecretKey: k}); !errors.Is(err, mailmap.ErrSecretKey) {
					t.Fatalf("Open with a %d-byte key: %v, want ErrSecretKey", len(k), err)
				}
			}
		})
	}
}

// TestKeysAtRest: identity private keys never reach the database (rows or,
// for SQLite, the files) in plaintext.
func TestKeysAtRest(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			dsn := b.dsn(t)
			s := openDSN(t, dsn)
			u, err := s.CreateUser(ctx, "alice", "pw")
			if err != nil {
				t.Fatal(err)
			}
			sk, ek := make([]byte, 32), make([]byte, 32)
			for i := range sk {
				sk[i], ek[i] = byte(0x10+i), byte(0x90+i)
			}
			id, err := s.AddIdentity(ctx, mailmap.Identity{UserID: u.ID, Address: "BM-atrest", SigningKey: sk, EncryptionKey: ek})
			if err != nil {
				t.Fatal(err)
			}
			got, err := s.IdentityByAddress(ctx, id.Address)
			if err != nil || !bytes.Equal(got.SigningKey, sk) || !bytes.Equal(got.EncryptionKey, ek) {
				t.Fatalf("keys do not round-trip: %v", err)
			}
			secrets := [][]byte{sk, ek, []byte(hex.EncodeToString(sk)), []byte(hex.EncodeToString(ek)),
				sk[:16], sk[16:], ek[:16], ek[16:]}
			check := func(where string, data []byte) {
				for _, sec := range secrets {
					if bytes.Contains(data, sec) {
						t.Fatalf("a private key is in plaintext in %s", where)
					}
				}
			}
			db := b.raw(t, dsn)
			rows, err := db.QueryContext(ctx, `SELECT * FROM identities`)
			if err != nil {
				t.Fatal(err)
			}
			cols, _ := rows.Columns()
			n := 0
			for rows.Next() {
				vals := make([]any, len(cols))
				ptrs := make([]any, len(cols))
				for i := range vals {
					ptrs[i] = &vals[i]
				}
				if err := rows.Scan(ptrs...); err != nil {
					t.Fatal(err)
				}
				for i, v := range vals {
					switch v := v.(type) {
					case []byte:
						check("column "+cols[i], v)
					case string:
						check("column "+cols[i], []byte(v))
					}
				}
				n++
			}
			rows.Close()
			if n != 1 {
				t.Fatalf("identities has %d rows", n)
			}
			if b.files != nil {
				s.Close()
				db.Close()
				for _, f := range b.files(dsn) {
					data, err := os.ReadFile(f)
					if errors.Is(err, os.ErrNotExist) {
						continue
					}
					if err != nil {
						t.Fatal(err)
					}
					check(filepath.Base(f), data)
				}
			}
		})
	}
}

func BenchmarkDeliver(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) { storetest.BenchDeliver(b, openSQLite, 1) })
	b.Run("sqlite-4", func(b *testing.B) { storetest.BenchDeliver(b, openSQLite, 4) })
	b.Run("postgres", func(b *testing.B) { storetest.BenchDeliver(b, openPostgres, 1) })
	b.Run("postgres-4", func(b *testing.B) { storetest.BenchDeliver(b, openPostgres, 4) })
}

func BenchmarkList10k(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) { storetest.BenchList(b, openSQLite, 10000) })
	b.Run("postgres", func(b *testing.B) { storetest.BenchList(b, openPostgres, 10000) })
}

// TestPostgresListenReconnect: when the LISTEN connection dies, subscribers
// are told to resynchronise and changes from other processes flow again.
func TestPostgresListenReconnect(t *testing.T) {
	ctx := context.Background()
	dsn := storetest.PostgresDSN(t)
	s1, s2 := openDSN(t, dsn), openDSN(t, dsn)
	u, err := s1.CreateUser(ctx, "alice", "pw")
	if err != nil {
		t.Fatal(err)
	}
	in, err := s1.Mailbox(ctx, u.ID, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	ch, cancel := s2.Subscribe(u.ID)
	defer cancel()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// Both stores listen; kill every listening backend.
	res, err := db.ExecContext(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND query LIKE 'LISTEN %' AND pid <> pg_backend_pid()`)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n != 2 {
		t.Fatalf("terminated %d listening backends, want 2", n)
	}
	deadline := time.After(30 * time.Second)
	for resynced := false; !resynced; {
		select {
		case c := <-ch:
			resynced = c == mailmap.Change{UserID: u.ID, Kind: mailmap.ChangeMailboxes}
		case <-deadline:
			t.Fatal("no resync notice after the LISTEN connection died")
		}
	}
	if _, err := s1.AppendMessage(ctx, u.ID, in.ID, []byte("Subject: after\r\n\r\nx"), nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	want := mailmap.Change{UserID: u.ID, MailboxID: in.ID, Kind: mailmap.ChangeNew, UID: 1}
	for {
		select {
		case c := <-ch:
			if c == want {
				return
			}
		case <-deadline:
			t.Fatal("no change from the other store after reconnecting")
		}
	}
}

// TestConcurrentOpen: several processes starting at once on a fresh
// database migrate it once, without errors.
func TestConcurrentOpen(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			dsn := b.dsn(t)
			errs := make(chan error, 4)
			for range 4 {
				go func() {
					s, err := mailmap.Open(context.Background(), dsn, mailmap.Options{SecretKey: testKey})
					if err == nil {
						err = s.Close()
					}
					errs <- err
				}()
			}
			for range 4 {
				if err := <-errs; err != nil {
					t.Fatalf("concurrent Open: %v", err)
				}
			}
			// One row per migration: none was applied twice.
			entries, err := fs.Glob(migrations.SQLite, "sqlite/*.sql")
			if err != nil || len(entries) == 0 {
				t.Fatalf("list migrations: %v, %v", entries, err)
			}
			var n int
			if err := b.raw(t, dsn).QueryRow(`SELECT COUNT(*) FROM schema_migrations`).Scan(&n); err != nil || n != len(entries) {
				t.Fatalf("schema_migrations rows = %d, %v; want %d", n, err, len(entries))
			}
		})
	}
}
