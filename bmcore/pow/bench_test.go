package pow

import (
	"context"
	"encoding/binary"
	"runtime"
	"testing"
	"time"
)

// The benchmarks report trials/s. BenchmarkTrialFast and
// BenchmarkSolveAllCores also time the naive Trial loop right after their
// own run and report the ratio as x-naive, so the ratio holds even on a busy
// machine.

var benchHash = InitialHash([]byte("bmgate proof-of-work benchmark"))

// naiveRate times n naive trials on one goroutine, in trials/s.
func naiveRate(n int) float64 {
	start := time.Now()
	var sink uint64
	for i := range n {
		sink += Trial(uint64(i), &benchHash)
	}
	benchSink = sink
	return float64(n) / time.Since(start).Seconds()
}

var benchSink uint64

func BenchmarkTrialNaive(b *testing.B) {
	var sink uint64
	for i := range b.N {
		sink += Trial(uint64(i), &benchHash)
	}
	benchSink = sink
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "trials/s")
}

// BenchmarkTrialFast measures each kernel on one goroutine; one op is one trial.
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
				iters := min((left+uint64(k.lanes)-1)/uint64(k.lanes), chunkTrials)
				// Target 0: every batch runs.
				n := k.search(j, &nonces, incr, iters, 0, &out)
				left -= min(left, n*uint64(k.lanes))
				for i := range k.lanes {
					nonces[i] += n * incr
				}
			}
			b.StopTimer()
			rate := float64(b.N) / b.Elapsed().Seconds()
			b.ReportMetric(rate, "trials/s")
			b.ReportMetric(rate/naiveRate(max(b.N/4, 1000)), "x-naive")
		})
	}
}

// BenchmarkSolveAllCores solves a target of about 2^21 expected trials with
// every CPU; one op is one Solve.
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
	rate := float64(trials) / b.Elapsed().Seconds()
	b.ReportMetric(rate, "trials/s")
	b.ReportMetric(float64(runtime.NumCPU()), "workers")
	b.ReportMetric(rate/naiveRate(1<<20), "x-naive-1core")
}
