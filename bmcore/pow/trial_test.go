package pow

import (
	"bytes"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func randomHash(r *rand.Rand) [64]byte {
	var ih [64]byte
	for i := 0; i < 64; i += 8 {
		v := r.Uint64()
		for k := range 8 {
			ih[i+k] = byte(v >> (8 * k))
		}
	}
	return ih
}

// checkBatches runs k for iters batches with a target nothing reaches (so
// every batch runs) and compares the last batch with Trial.
func checkBatches(t *testing.T, k kernel, ih *[64]byte, nonces [8]uint64, incr, iters uint64) {
	t.Helper()
	var out [8]uint64
	in := nonces
	if n := k.search(newJob(ih), &in, incr, iters, 0, &out); n != iters {
		// A trial value of 0 would stop early; it has probability 2^-64.
		t.Fatalf("%s: ran %d batches, want %d", k.name, n, iters)
	}
	if in != nonces {
		t.Fatalf("%s: nonces changed", k.name)
	}
	for i := range k.lanes {
		nonce := nonces[i] + (iters-1)*incr
		if want := Trial(nonce, ih); out[i] != want {
			t.Fatalf("%s lane %d: trial(%#x, %x) = %#x, want %#x", k.name, i, nonce, ih[:], out[i], want)
		}
	}
}

func TestKernelsMatchTrial(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	edges := []uint64{0, 1, 1 << 63, 1<<63 - 1, ^uint64(0), ^uint64(0) - 3, 0xff, 0x100}
	for _, k := range kernels {
		t.Run(k.name, func(t *testing.T) {
			for range 300 {
				ih := randomHash(r)
				var nonces [8]uint64
				for i := range nonces {
					nonces[i] = r.Uint64()
				}
				checkBatches(t, k, &ih, nonces, r.Uint64(), 1)
			}
			// Consecutive nonces, wrapping lanes, several batches.
			for _, base := range edges {
				ih := randomHash(r)
				var nonces [8]uint64
				for i := range nonces {
					nonces[i] = base + uint64(i)
				}
				checkBatches(t, k, &ih, nonces, uint64(k.lanes), 1)
				checkBatches(t, k, &ih, nonces, uint64(k.lanes), 5)
			}
			var zero, ones [64]byte
			for i := range ones {
				ones[i] = 0xff
			}
			for _, ih := range [][64]byte{zero, ones} {
				checkBatches(t, k, &ih, [8]uint64{0, 1, 2, 3, 4, 5, 6, 7}, ^uint64(0), 3)
			}
		})
	}
}

func TestTrialGoMatchesTrial(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 2000 {
		ih := randomHash(r)
		var m midstate
		m.init(&ih)
		n := r.Uint64()
		if got, want := trialGo(&m, n), Trial(n, &ih); got != want {
			t.Fatalf("trialGo(%#x, %x) = %#x, want %#x", n, ih[:], got, want)
		}
	}
}

// TestKernelsStop checks that a kernel stops at the first batch holding a
// trial value at or below the target, and reports that batch.
func TestKernelsStop(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, k := range kernels {
		t.Run(k.name, func(t *testing.T) {
			for range 50 {
				ih := randomHash(r)
				target := ^uint64(0) / uint64(20+r.IntN(200))
				var nonces [8]uint64
				base, stride := r.Uint64(), 1+r.Uint64N(5)
				for i := range k.lanes {
					nonces[i] = base + uint64(i)*stride
				}
				incr := uint64(k.lanes) * stride
				const iters = 1000
				// The batch Trial says should stop the search.
				want := uint64(iters)
			scan:
				for b := uint64(0); b < iters; b++ {
					for i := range k.lanes {
						if Trial(nonces[i]+b*incr, &ih) <= target {
							want = b + 1
							break scan
						}
					}
				}
				var out [8]uint64
				if got := k.search(newJob(&ih), &nonces, incr, iters, target, &out); got != want {
					t.Fatalf("ran %d batches, want %d", got, want)
				}
				for i := range k.lanes {
					if w := Trial(nonces[i]+(want-1)*incr, &ih); out[i] != w {
						t.Fatalf("lane %d: out %#x, want %#x", i, out[i], w)
					}
				}
			}
			// A trial value equal to the target stops the search: the
			// smallest value of three batches is reached in its batch.
			ih := randomHash(r)
			nonces := [8]uint64{0, 1, 2, 3, 4, 5, 6, 7}
			incr := uint64(k.lanes)
			target, at := ^uint64(0), uint64(0)
			for n := range 3 * incr {
				if v := Trial(n, &ih); v < target {
					target, at = v, n/incr+1
				}
			}
			var out [8]uint64
			if n := k.search(newJob(&ih), &nonces, incr, 10, target, &out); n != at {
				t.Fatalf("equal target: ran %d batches, want %d", n, at)
			}
			if n := k.search(newJob(&ih), &nonces, incr, 3, target-1, &out); n != 3 {
				t.Fatalf("target below all: ran %d batches, want 3", n)
			}
			out = [8]uint64{}
			if n := k.search(newJob(&ih), &[8]uint64{}, 1, 0, ^uint64(0), &out); n != 0 || out != [8]uint64{} {
				t.Fatalf("iters 0: ran %d batches, out %x", n, out)
			}
		})
	}
}

// FuzzTrial compares every kernel with Trial on arbitrary nonces and
// initial hashes (an initial hash shorter than 64 bytes is zero-padded).
func FuzzTrial(f *testing.F) {
	f.Add(uint64(0), uint64(1), []byte{})
	f.Add(uint64(1857419), uint64(8), []byte("interop"))
	f.Add(^uint64(0), uint64(1)<<63, make([]byte, 64))
	f.Fuzz(func(t *testing.T, nonce, incr uint64, h []byte) {
		var ih [64]byte
		copy(ih[:], h)
		var nonces [8]uint64
		for i := range nonces {
			nonces[i] = nonce + uint64(i)*incr
		}
		for _, k := range kernels {
			checkBatches(t, k, &ih, nonces, incr*uint64(k.lanes), 2)
		}
	})
}

// TestGeneratedUpToDate reruns gen_trial.go and compares its output with
// the committed files.
func TestGeneratedUpToDate(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go tool")
	}
	gotool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool")
	}
	dir := t.TempDir()
	if out, err := exec.Command(gotool, "run", "gen_trial.go", "-o", dir).CombinedOutput(); err != nil {
		t.Fatalf("go run gen_trial.go: %v\n%s", err, out)
	}
	for _, name := range []string{"trial_gen.go", "trial_amd64.s"} {
		want, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale: run go generate", name)
		}
	}
}
