package pow

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

const (
	samplesPath = "../testdata/pybitmessage_samples.json"
	vectorsPath = "../testdata/test-vectors.json"
)

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustUint(t *testing.T, s string) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

type samples struct {
	Vectors struct {
		Smallest struct {
			Object      string `json:"object_without_nonce_hex"`
			InitialHash string `json:"initial_hash_hex"`
			Target      string `json:"target_float_division"`
			Nonce       uint64 `json:"nonce"`
			Trial       string `json:"trial_value"`
			WithNonce   string `json:"object_with_nonce_hex"`
		} `json:"pow_example_smallest_nonce"`
		OpenCL struct {
			InitialHash string `json:"initial_hash_hex"`
			Target      string `json:"target"`
			Nonce       uint64 `json:"nonce"`
			Trial       string `json:"trial_value"`
		} `json:"pow_opencl_test_case"`
	} `json:"vectors"`
}

// TestSolveSmallestNonce: PyBitmessage's loop from nonce 1 stops at 1857419
// for this target; one worker from StartNonce 1 must find the same nonce.
func TestSolveSmallestNonce(t *testing.T) {
	var s samples
	readJSON(t, samplesPath, &s)
	v := s.Vectors.Smallest
	payload := mustHex(t, v.Object)
	target := mustUint(t, v.Target)
	ih := InitialHash(payload)
	if hex.EncodeToString(ih[:]) != v.InitialHash {
		t.Fatalf("initial hash %x", ih)
	}
	if got := Trial(v.Nonce, &ih); got != mustUint(t, v.Trial) {
		t.Fatalf("trial %d", got)
	}
	opts := Options{Workers: 1, StartNonce: 1}
	if testing.Short() && kernels[0].lanes == 1 {
		opts.StartNonce = v.Nonce - 40000 // the portable kernel needs seconds from 1
	}
	obj, err := SolveObject(context.Background(), payload, target, opts)
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(obj) != v.WithNonce {
		t.Fatalf("object %x, want %s", obj, v.WithNonce)
	}
	// Every kernel, through the same search: the portable ones start nearer
	// (no nonce below 1857419 passes, so the answer is the same).
	for _, k := range kernels {
		opts := Options{Workers: 1, StartNonce: 1}
		if k.lanes == 1 {
			opts.StartNonce = v.Nonce - 40000
		}
		got, err := solve(context.Background(), newJob(&ih), target, opts, k)
		if err != nil || got != v.Nonce {
			t.Errorf("%s: nonce %d, %v; want %d", k.name, got, err, v.Nonce)
		}
	}
}

// TestSolveOpenCLCase: the vector's nonce (found by PyBitmessage's C PoW) is
// valid; a one-worker search starting a little below it finds it or an
// earlier valid nonce, and nothing valid in between.
func TestSolveOpenCLCase(t *testing.T) {
	var s samples
	readJSON(t, samplesPath, &s)
	v := s.Vectors.OpenCL
	var ih [64]byte
	copy(ih[:], mustHex(t, v.InitialHash))
	target := mustUint(t, v.Target)
	if got := Trial(v.Nonce, &ih); got != mustUint(t, v.Trial) || got > target {
		t.Fatalf("trial %d, want %s <= %d", got, v.Trial, target)
	}
	for _, k := range kernels {
		start := v.Nonce - 100000
		got, err := solve(context.Background(), newJob(&ih), target, Options{Workers: 1, StartNonce: start}, k)
		if err != nil {
			t.Fatal(err)
		}
		if got > v.Nonce || got < start || Trial(got, &ih) > target {
			t.Fatalf("%s: nonce %d", k.name, got)
		}
		for n := start; n < got; n++ {
			if Trial(n, &ih) <= target {
				t.Fatalf("%s: skipped valid nonce %d for %d", k.name, n, got)
			}
		}
	}
}

// TestSolveVectorObjects: the objects of test-vectors.json carry valid
// nonces (checked at now = 1700000000 with 1000/1000), and Solve redoes
// them: one worker from a little below the vector's nonce finds a nonce no
// greater than it, and several workers from there find a valid one soon
// (the vector's nonce is on one worker's path).
func TestSolveVectorObjects(t *testing.T) {
	var vs map[string]json.RawMessage
	readJSON(t, vectorsPath, &vs)
	const now = 1700000000
	for _, name := range []string{"pubkey_v4", "ack", "msg", "broadcast_v5"} {
		t.Run(name, func(t *testing.T) {
			var v struct {
				Object string  `json:"object"`
				Nonce  uint64  `json:"nonce"`
				Trial  *uint64 `json:"trial"`
				Target *uint64 `json:"target"`
				TTL    int64   `json:"ttl"`
			}
			if err := json.Unmarshal(vs[name], &v); err != nil {
				t.Fatal(err)
			}
			obj := mustHex(t, v.Object)
			nonce := v.Nonce
			if binary.BigEndian.Uint64(obj) != nonce {
				t.Fatalf("object nonce %d, vector says %d", binary.BigEndian.Uint64(obj), nonce)
			}
			if !Check(obj, now, 1000, 1000) {
				t.Fatal("Check fails")
			}
			payload := obj[8:]
			ih := InitialHash(payload)
			ttl := int64(binary.BigEndian.Uint64(payload)) - now
			if ttl != v.TTL {
				t.Fatalf("expiresTime - now = %d, vector says TTL %d", ttl, v.TTL)
			}
			target := Target(uint64(len(obj)), ttl, 1000, 1000)
			if v.Trial != nil && Trial(nonce, &ih) != *v.Trial {
				t.Fatalf("trial %d, want %d", Trial(nonce, &ih), *v.Trial)
			}
			if v.Target != nil && target != *v.Target {
				t.Fatalf("target %d, want %d", target, *v.Target)
			}
			got, err := Solve(context.Background(), payload, target, Options{Workers: 1, StartNonce: nonce - 20000})
			if err != nil || got > nonce || Trial(got, &ih) > target {
				t.Fatalf("one worker: nonce %d, %v", got, err)
			}
			solved, err := SolveObject(context.Background(), payload, target, Options{Workers: 3, StartNonce: nonce - 20000})
			if err != nil {
				t.Fatal(err)
			}
			if !Check(solved, now, 1000, 1000) || string(solved[8:]) != string(payload) {
				t.Fatalf("solved object %x fails", solved[:16])
			}
		})
	}
}

func TestSolveWorkersCoverEveryNonce(t *testing.T) {
	// With a target every nonce passes, worker w must return StartNonce+w
	// for its first batch; whichever wins, the nonce is one of those.
	ih := InitialHash([]byte("x"))
	for _, k := range kernels {
		for _, workers := range []int{1, 2, 3, 5} {
			got, err := solve(context.Background(), newJob(&ih), ^uint64(0), Options{Workers: workers, StartNonce: 100}, k)
			if err != nil || got < 100 || got >= 100+uint64(workers) {
				t.Fatalf("%s/%d workers: nonce %d, %v", k.name, workers, got, err)
			}
		}
	}
	// Several workers on a real target: a valid nonce, and the trial count
	// covers at least the nonces below it that one worker would have tried.
	var p Progress
	target := ^uint64(0) >> 14
	got, err := Solve(context.Background(), []byte("workers"), target, Options{Workers: 4, Progress: &p})
	if err != nil {
		t.Fatal(err)
	}
	ih = InitialHash([]byte("workers"))
	if Trial(got, &ih) > target {
		t.Fatalf("nonce %d invalid", got)
	}
	if p.Expected() != ExpectedTrials(target) || p.Trials() == 0 {
		t.Fatalf("progress %d/%d", p.Trials(), p.Expected())
	}
}

func TestSolveCancel(t *testing.T) {
	defer goleak.VerifyNone(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Solve(ctx, []byte("x"), 0, Options{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled before: %v", err)
	}
	if _, err := SolveObject(ctx, []byte("x"), 0, Options{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("SolveObject cancelled before: %v", err)
	}

	// Target 0 is practically unreachable: only the deadline ends it.
	var p Progress
	ctx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		// Read the progress while the workers write it (for -race).
		var last uint64
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			n := p.Trials()
			if n < last {
				t.Errorf("trials went back from %d to %d", last, n)
			}
			last = n
		}
	})
	start := time.Now()
	_, err := Solve(ctx, []byte("x"), 0, Options{Workers: 3, Progress: &p})
	close(stop)
	wg.Wait()
	if err != context.DeadlineExceeded {
		t.Fatalf("err %v, want %v", err, context.DeadlineExceeded)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Solve took %v after its deadline", d)
	}
	if p.Trials() == 0 || p.Expected() != ExpectedTrials(0) {
		t.Fatalf("progress %d/%d", p.Trials(), p.Expected())
	}
}

func TestSolveBadWorkers(t *testing.T) {
	if _, err := Solve(context.Background(), nil, ^uint64(0), Options{Workers: -1}); !errors.Is(err, ErrWorkers) {
		t.Fatalf("err %v", err)
	}
}

func TestSolveDefaultWorkers(t *testing.T) {
	defer goleak.VerifyNone(t)
	target := ^uint64(0) >> 10
	obj, err := SolveObject(context.Background(), []byte("default"), target, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ih := InitialHash([]byte("default"))
	if string(obj[8:]) != "default" || Trial(binary.BigEndian.Uint64(obj), &ih) > target {
		t.Fatalf("object %x", obj)
	}
}
