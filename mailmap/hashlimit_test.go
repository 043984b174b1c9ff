package mailmap

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestPasswordHashLimit: however many logins arrive at once, at most the
// configured number of argon2id computations run; a check that finds no
// slot within the wait fails with ErrBusy (and one whose context ends, with
// the context's error) without hashing.
func TestPasswordHashLimit(t *testing.T) {
	ctx := context.Background()
	st, err := Open(ctx, filepath.Join(t.TempDir(), "mail.db"), Options{SecretKey: bytes.Repeat([]byte{1}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.CreateUser(ctx, "alice", "right"); err != nil {
		t.Fatal(err)
	}
	defer SetPasswordHashLimit(0, 0)

	SetPasswordHashLimit(2, time.Minute)
	ResetPasswordHashPeak()
	before := PasswordHashStatus()
	var wg sync.WaitGroup
	for i := range 12 {
		wg.Go(func() {
			name := "alice"
			if i%3 == 0 {
				name = "nobody" // the dummy check counts as well
			}
			if _, err := st.Authenticate(ctx, name, "wrong"); !errors.Is(err, ErrAuthFailed) {
				t.Errorf("Authenticate = %v, want ErrAuthFailed", err)
			}
		})
	}
	wg.Wait()
	after := PasswordHashStatus()
	if after.Peak > 2 || after.Peak < 1 {
		t.Errorf("peak of concurrent hashes = %d, want 1..2", after.Peak)
	}
	if got := after.Total - before.Total; got != 12 {
		t.Errorf("%d hashes for 12 checks", got)
	}
	if after.Waited == before.Waited {
		t.Error("no check waited for a slot")
	}

	// Every slot taken: a check waits its bounded time, then ErrBusy.
	SetPasswordHashLimit(1, 20*time.Millisecond)
	release, err := hashes.acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Authenticate(ctx, "alice", "right"); !errors.Is(err, ErrBusy) {
		t.Errorf("Authenticate with no free slot = %v, want ErrBusy", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	SetPasswordHashLimit(1, time.Minute)
	release()
	release, _ = hashes.acquire(ctx)
	if _, err := hashes.acquire(cctx); !errors.Is(err, context.Canceled) {
		t.Errorf("waiting for a slot with a cancelled context = %v", err)
	}
	release()
	if _, err := st.Authenticate(ctx, "alice", "right"); err != nil {
		t.Errorf("Authenticate once a slot is free: %v", err)
	}
	if st := PasswordHashStatus(); st.InFlight != 0 || st.Refused < 2 {
		t.Errorf("stats after the test: %+v", st)
	}
}
