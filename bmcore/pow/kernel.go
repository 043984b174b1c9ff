package pow

// job is what the kernels need to know about one initial hash.
type job struct {
	ih [64]byte
	m  midstate
}

func newJob(ih *[64]byte) *job {
	j := &job{ih: *ih}
	j.m.init(ih)
	return j
}

// A kernel computes trial values for lanes nonces at a time.
type kernel struct {
	name  string
	lanes int
	// search runs batches of lanes trials: lane i of the first batch tries
	// nonces[i], and each further batch adds incr to every lane (wrapping).
	// It stops after the first batch in which some lane's trial value is at
	// most target, or after iters batches, writes the trial values of the
	// last batch it ran to out[:lanes] and returns how many batches it ran.
	// It does nothing when iters is 0.
	search func(j *job, nonces *[8]uint64, incr, iters, target uint64, out *[8]uint64) uint64
}

// goKernel is the portable kernel: one nonce at a time through trialGo.
var goKernel = kernel{name: "go", lanes: 1, search: searchGo}

func searchGo(j *job, nonces *[8]uint64, incr, iters, target uint64, out *[8]uint64) uint64 {
	n := nonces[0]
	for i := uint64(1); i <= iters; i++ {
		t := trialGo(&j.m, n)
		if t <= target || i == iters {
			out[0] = t
			return i
		}
		n += incr
	}
	return 0
}

// searchNaive is the kernel for CPUs on which crypto/sha512 has SHA-512
// instructions, which beat any specialisation in Go.
func searchNaive(j *job, nonces *[8]uint64, incr, iters, target uint64, out *[8]uint64) uint64 {
	n := nonces[0]
	for i := uint64(1); i <= iters; i++ {
		t := Trial(n, &j.ih)
		if t <= target || i == iters {
			out[0] = t
			return i
		}
		n += incr
	}
	return 0
}

// kernels lists the kernels this CPU can run, fastest first; Solve uses the
// first. It is set by the architecture's kernel file.
var kernels []kernel
