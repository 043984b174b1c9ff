//go:build unix

package pow

import (
	"syscall"
	"time"
)

// cpuClock is the CPU time this process has used: ratios measured with it
// hold when other processes share the machine's cores.
func cpuClock() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
