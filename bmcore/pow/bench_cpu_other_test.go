//go:build !unix

package pow

import "time"

var processStart = time.Now()

// cpuClock falls back to wall time where getrusage is missing.
func cpuClock() time.Duration { return time.Since(processStart) }
