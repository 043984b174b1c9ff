package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bmgate/bmgate/bmcore/identity"
	"github.com/bmgate/bmgate/mailmap"
)

// backendEnvs are the command environments of the tests below: SQLite in the
// data directory, and PostgreSQL when BMGATE_TEST_PG is set.
func backendEnvs(t *testing.T) map[string]func(t *testing.T) map[string]string {
	return map[string]func(t *testing.T) map[string]string{
		"sqlite": testEnv,
		"postgres": func(t *testing.T) map[string]string {
			env := testEnv(t)
			env["BMGATE_DB"] = testPostgres(t)
			return env
		},
	}
}

// checkNoSecretAtRest fails when secret (or its hex) is anywhere in the
// database: every column of every table, the SQLite files byte for byte,
// and pg_dump's output when pg_dump is installed.
func checkNoSecretAtRest(t *testing.T, env map[string]string, secret string) {
	t.Helper()
	ctx := context.Background()
	needles := [][]byte{[]byte(secret), []byte(hex.EncodeToString([]byte(secret)))}
	check := func(where string, data []byte) {
		t.Helper()
		for _, n := range needles {
			if bytes.Contains(data, n) {
				t.Errorf("the chan passphrase is in clear in %s", where)
			}
		}
	}
	dsn, driver := env["BMGATE_DB"], "pgx"
	tq := `SELECT tablename FROM pg_tables WHERE schemaname = 'public'`
	if dsn == "" {
		dsn, driver = filepath.Join(env["BMGATE_DATA"], SQLiteFile), "sqlite"
		tq = `SELECT name FROM sqlite_master WHERE type = 'table'`
		for _, f := range []string{dsn, dsn + "-wal", dsn + "-shm"} {
			data, err := os.ReadFile(f)
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			check(filepath.Base(f), data)
		}
	} else if pgDump, err := exec.LookPath("pg_dump"); err == nil {
		out, err := exec.CommandContext(ctx, pgDump, "--dbname="+dsn).Output()
		if err != nil {
			t.Logf("pg_dump failed (%v): checking the rows only", err)
		} else {
			check("pg_dump's output", out)
		}
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, tq)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, n)
	}
	rows.Close()
	if len(tables) < 10 {
		t.Fatalf("tables: %v", tables)
	}
	for _, table := range tables {
		rows, err := db.QueryContext(ctx, `SELECT * FROM `+table)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals, ptrs := make([]any, len(cols)), make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			for i, v := range vals {
				switch v := v.(type) {
				case []byte:
					check(table+"."+cols[i], v)
				case string:
					check(table+"."+cols[i], []byte(v))
				}
			}
		}
		rows.Close()
	}
}

// TestChanJoinKeepsPassphraseSecret: bmgate chan join stores the passphrase
// only sealed; the label and folder come from --name or the address.
func TestChanJoinKeepsPassphraseSecret(t *testing.T) {
	for name, mkEnv := range backendEnvs(t) {
		t.Run(name, func(t *testing.T) {
			env := mkEnv(t)
			ctx := context.Background()
			const pass1, pass2 = "Zq7 correct horse battery staple xk2", "second chan Zq7 9f3k"
			mustRun(t, env, "pw\n", "user", "add", "alice")
			ch1, err := identity.Chan(pass1)
			if err != nil {
				t.Fatal(err)
			}
			ch2, err := identity.Chan(pass2)
			if err != nil {
				t.Fatal(err)
			}
			addr1, addr2 := ch1.Address.String(), ch2.Address.String()

			// From standard input (a prompt on a terminal), out of the shell history.
			if got := strings.TrimSpace(mustRun(t, env, pass1+"\r\n", "chan", "join", "--user", "alice")); got != addr1 {
				t.Fatalf("chan join from stdin = %s, want %s", got, addr1)
			}
			// From a file, named, checked against its address.
			mustFail(t, env, 2, "--name must not be the passphrase",
				"chan", "join", "--user", "alice", "--name", pass2, pass2)
			mustFail(t, env, 1, "already has a chan named",
				"chan", "join", "--user", "alice", "--name", mailmap.DefaultChanName(addr1), pass2)
			mustFail(t, env, 1, "does not match", "chan", "join", "--user", "alice",
				"--passphrase-file", writeFile(t, "pp", pass2+"\n"), addr1)
			if got := strings.TrimSpace(mustRun(t, env, "", "chan", "join", "--user", "alice", "--name", "Friends",
				"--passphrase-file", writeFile(t, "pp", pass2+"\n"), addr2)); got != addr2 {
				t.Fatalf("chan join --passphrase-file = %s, want %s", got, addr2)
			}
			mustFail(t, env, 1, "alice has already joined", "chan", "join", "--user", "alice", pass1)

			st := openTestStore(t, env)
			u, err := st.UserByName(ctx, "alice")
			if err != nil {
				t.Fatal(err)
			}
			ids, err := st.Identities(ctx, u.ID)
			if err != nil || len(ids) != 2 {
				t.Fatalf("identities: %d, %v", len(ids), err)
			}
			def := "chan-" + addr1[3:13]
			if ids[0].Label != def || ids[0].ChanPassphrase != pass1 || ids[1].Label != "Friends" || ids[1].ChanPassphrase != pass2 {
				t.Errorf("chans: %q %q, %q %q", ids[0].Label, ids[0].ChanPassphrase, ids[1].Label, ids[1].ChanPassphrase)
			}
			checkFolder(t, st, u.ID, "Chans/"+def)
			checkFolder(t, st, u.ID, "Chans/Friends")
			if list := mustRun(t, env, "", "address", "list", "--user", "alice"); strings.Contains(list, pass1) ||
				!strings.Contains(list, addr1+"\t"+addr1+"@bmaddr.lan\tchan\t"+def+"\n") {
				t.Errorf("address list:\n%s", list)
			}
			checkNoSecretAtRest(t, env, pass1)
			checkNoSecretAtRest(t, env, pass2)
			st.Close()
			checkNoSecretAtRest(t, env, pass1)
		})
	}
}

// TestSecretKeyNotRecreated: with secret.key gone and keys sealed in the
// database, every command refuses with what to do, and no new secret.key
// appears (a new key could open nothing and would hide the loss).
func TestSecretKeyNotRecreated(t *testing.T) {
	for name, mkEnv := range backendEnvs(t) {
		t.Run(name, func(t *testing.T) {
			env := mkEnv(t)
			keyFile := filepath.Join(env["BMGATE_DATA"], "secret.key")
			mustRun(t, env, "pw\n", "user", "add", "alice")
			if _, err := os.Stat(keyFile); err != nil {
				t.Fatalf("first use did not create secret.key: %v", err)
			}
			// The key check alone (no identity yet) already needs the key.
			if err := os.Remove(keyFile); err != nil {
				t.Fatal(err)
			}
			for _, args := range [][]string{{"user", "list"}, {"address", "new", "--user", "alice"}} {
				mustFail(t, env, 1, "secret key missing", args...)
				mustFail(t, env, 1, "Restore secret.key from your backup", args...)
				if _, err := os.Stat(keyFile); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("bmgate %s created a new secret.key: %v", strings.Join(args, " "), err)
				}
			}
		})
	}
}

// TestSecretKeyCreatedForNewDatabase: a fresh data directory still gets
// its key on first use, with or without an empty database file.
func TestSecretKeyCreatedForNewDatabase(t *testing.T) {
	env := testEnv(t)
	mustRun(t, env, "", "user", "list")
	if _, err := os.Stat(filepath.Join(env["BMGATE_DATA"], "secret.key")); err != nil {
		t.Fatalf("secret.key not created: %v", err)
	}
}
