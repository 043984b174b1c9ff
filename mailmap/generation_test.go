package mailmap_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/bmgate/bmgate/mailmap"
	"github.com/bmgate/bmgate/mailmap/storetest"
)

// TestGenerationTriggers: the accounts generation is raised by the
// database itself, so even SQL that bypasses mailmap (an operator's fix, an
// older or newer bmgate) moves it; the mail counters on users do not.
func TestGenerationTriggers(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			dsn := b.dsn(t)
			s := openDSN(t, dsn)
			u, err := s.CreateUser(ctx, "alice", "pw")
			if err != nil {
				t.Fatal(err)
			}
			db := b.raw(t, dsn)
			read := func() uint64 {
				t.Helper()
				g, err := s.ReadAccountsGeneration(ctx)
				if err != nil {
					t.Fatal(err)
				}
				return g
			}
			exec := func(query string, args ...any) {
				t.Helper()
				if _, err := db.ExecContext(ctx, query, args...); err != nil {
					t.Fatalf("%s: %v", query, err)
				}
			}
			for _, q := range []struct {
				query string
				moves bool
			}{
				{`UPDATE users SET used_bytes = used_bytes + 1, next_uidvalidity = next_uidvalidity + 1 WHERE id = $1`, false},
				{`UPDATE users SET disabled = TRUE WHERE id = $1`, true},
				{`INSERT INTO contacts (user_id, alias, address) VALUES ($1, 'bob@example.org', 'BM-bob')`, true},
				{`UPDATE contacts SET address = 'BM-bob2' WHERE user_id = $1`, true},
				{`DELETE FROM contacts WHERE user_id = $1`, true},
				{`INSERT INTO subscriptions (user_id, address) VALUES ($1, 'BM-news')`, true},
				{`UPDATE subscriptions SET label = 'News' WHERE user_id = $1`, true},
				{`DELETE FROM subscriptions WHERE user_id = $1`, true},
				{`DELETE FROM users WHERE id = $1`, true},
			} {
				before := read()
				exec(q.query, u.ID)
				if moved := read() != before; moved != q.moves {
					t.Errorf("%s: generation moved = %v, want %v", q.query, moved, q.moves)
				}
			}
		})
	}
}

// TestPostgresListenReconnectGeneration: when the LISTEN connection dies,
// notifications may have been missed, so the in-memory generation changes
// once it is back, without any account change; later changes from another
// store are seen again.
func TestPostgresListenReconnectGeneration(t *testing.T) {
	ctx := context.Background()
	dsn := storetest.PostgresDSN(t)
	s1, s2 := openDSN(t, dsn), openDSN(t, dsn)
	g0, err := s1.AccountsGeneration(ctx)
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	res, err := db.ExecContext(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND query LIKE 'LISTEN %' AND pid <> pg_backend_pid()`)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n != 2 {
		t.Fatalf("terminated %d listening backends, want 2", n)
	}
	g1 := waitGen(t, s1, g0, "the LISTEN connection came back")
	if direct, err := s1.ReadAccountsGeneration(ctx); err != nil || direct != g1 {
		t.Fatalf("ReadAccountsGeneration = %d, %v; want %d (nothing changed since)", direct, err, g1)
	}
	if _, err := s2.CreateUser(ctx, "bob", "pw"); err != nil {
		t.Fatal(err)
	}
	waitGen(t, s1, g1, "another store created a user after the reconnect")
}

// waitGen waits until the store's AccountsGeneration differs from from.
func waitGen(t *testing.T, s mailmap.Store, from uint64, what string) uint64 {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Millisecond) {
		g, err := s.AccountsGeneration(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if g != from {
			return g
		}
		if time.Now().After(deadline) {
			t.Fatalf("AccountsGeneration unchanged after %s", what)
		}
	}
}
