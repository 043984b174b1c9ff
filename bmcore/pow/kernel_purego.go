//go:build purego

package pow

func init() { kernels = append(kernels, goKernel) }
