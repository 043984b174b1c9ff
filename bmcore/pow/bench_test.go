package pow

import (
	"context"
	"encoding/binary"
	"runtime"
	"testing"
	"time"
)

// The benchmarks report trials/s (wall clock). The ratios are measured
// after the timed loop by alternating short runs of the two things compared,
// timed with the process's CPU clock, so that they hold on a shared machine
// whose load changes during the run:
//   - x-naive: the kernel against the naive Trial loop, one goroutine each;
//   - per-core-eff: trials per CPU second of Solve with every CPU against
//     Solve with one worker (1 means perfectly linear scaling when the cores
//     are free).

var (
	benchHash = InitialHash([]byte("bmgate proof-of-work benchmark"))
	benchSink uint64
)

// ratioRounds is how many times a ratio's two sides alternate; ratioSlice is
// the length of each run.
const (
	ratioRounds = 6
	ratioSlice  = 20 * time.Millisecond
)

// naiveRun runs the naive Trial loop for about d and returns how many trials.
func naiveRun(d time.Duration) uint64 {
	var n, sink uint64
	start := time.Now()
	for time.Since(start) < d {
		for range 1024 {
			sink += Trial(n, &benchHash)
			n++
		}
	}
	benchSink = sink
	return n
}

// kernelRun runs k for about d on one goroutine.
func kernelRun(k kernel, d time.Duration) uint64 {
	j := newJob(&benchHash)
	var nonces, out [8]uint64
	for i := range k.lanes {
		nonces[i] = uint64(i)
	}
	var n uint64
	start := time.Now()
	for time.Since(start) < d {
		n += k.search(j, &nonces, uint64(k.lanes), 1024, 0, &out) * uint64(k.lanes)
	}
	return n
}

// solveRun runs Solve with workers for d on a target nothing reaches.
func solveRun(workers int, d time.Duration) uint64 {
	var p Progress
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	Solve(ctx, []byte("bmgate proof-of-work benchmark"), 0, Options{Workers: workers, Progress: &p})
	return p.Trials()
}

// rateRatio alternates runs of a and b and returns the ratio of their trials
// per CPU second.
func rateRatio(a, b func(time.Duration) uint64) float64 {
	var na, nb uint64
	var ca, cb time.Duration
	for range ratioRounds {
		c := cpuClock()
		na += a(ratioSlice)
		c2 := cpuClock()
		nb += b(ratioSlice)
		ca, cb = ca+c2-c, cb+cpuClock()-c2
	}
	return (float64(na) / ca.Seconds()) / (float64(nb) / cb.Seconds())
}

func BenchmarkTrialNaive(b *testing.B) {
	var sink uint64
	for i := range b.N {
		sink += Trial(uint64(i), &benchHash)
	}
	benchSink = sink
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "trials/s")
}

// BenchmarkTrialFast measures each kernel this CPU runs on one goroutine
// (the first is the one Solve uses); one op is one trial.
func BenchmarkTrialFast(b *testing.B) {
	for _, k := range kernels {
		b.Run(k.name, func(b *testing.B) {
			j := newJob(&benchHash)
			var nonces, out [8]uint64
			for i := range k.lanes {
				nonces[i] = uint64(i)
			}
			incr := uint64(k.lanes)
			b.ResetTimer()
			for left := uint64(b.N); left > 0; {
				iters := min((left+incr-1)/incr, chunkTrials)
				// Target 0: every batch runs.
				n := k.search(j, &nonces, incr, iters, 0, &out)
				left -= min(left, n*incr)
				for i := range k.lanes {
					nonces[i] += n * incr
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "trials/s")
			b.ReportMetric(rateRatio(func(d time.Duration) uint64 { return kernelRun(k, d) }, naiveRun), "x-naive")
		})
	}
}

// BenchmarkSolveAllCores solves targets of about 2^21 expected trials with
// runtime.NumCPU() workers; one op is one Solve.
func BenchmarkSolveAllCores(b *testing.B) {
	const target = ^uint64(0) >> 21
	var p Progress
	var trials uint64
	payload := make([]byte, 64)
	opts := Options{Progress: &p}
	for i := range b.N {
		binary.BigEndian.PutUint64(payload, uint64(i))
		if _, err := Solve(context.Background(), payload, target, opts); err != nil {
			b.Fatal(err)
		}
		trials += p.Trials()
	}
	b.StopTimer()
	cpus := runtime.NumCPU()
	all := func(d time.Duration) uint64 { return solveRun(cpus, d) }
	one := func(d time.Duration) uint64 { return solveRun(1, d) }
	b.ReportMetric(float64(trials)/b.Elapsed().Seconds(), "trials/s")
	b.ReportMetric(float64(cpus), "workers")
	b.ReportMetric(rateRatio(all, one), "per-core-eff")
}
