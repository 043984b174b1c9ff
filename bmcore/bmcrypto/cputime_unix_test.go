//go:build unix

package bmcrypto

import (
	"syscall"
	"time"
)

// processCPU is the CPU time this process has used, user and system, so
// that benchmarks on a shared machine can report what they cost rather than
// how long they waited.
func processCPU() time.Duration {
	var r syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &r) != nil {
		return 0
	}
	return time.Duration(r.Utime.Nano() + r.Stime.Nano())
}
