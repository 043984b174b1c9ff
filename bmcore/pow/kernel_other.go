//go:build !amd64 && !purego

package pow

import (
	"runtime"

	"golang.org/x/sys/cpu"
)

func init() {
	if runtime.GOARCH == "arm64" && cpu.ARM64.HasSHA512 {
		kernels = append(kernels, kernel{name: "sha512", lanes: 1, search: searchNaive})
	}
	kernels = append(kernels, goKernel)
}
