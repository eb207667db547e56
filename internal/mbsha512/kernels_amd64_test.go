//go:build amd64 && !purego

package mbsha512

import "testing"

var kernelNames = [...]string{kernelGeneric: "generic", kernelAVX2: "AVX2", kernelAVX512: "AVX-512VL"}

// withEachKernel runs f with each vector kernel this CPU has as the one in use.
func withEachKernel(t testing.TB, f func(name string)) {
	defer func(k int) { kernel = k }(kernel)
	ran := false
	for k := kernelAVX2; k < len(haveKernel); k++ {
		if haveKernel[k] {
			kernel, ran = k, true
			f(kernelNames[k])
		}
	}
	if !ran {
		t.Skip("no vector kernel on this CPU")
	}
}

// TestEachKernel runs the checks of the Hasher with each kernel, not only the best one.
func TestEachKernel(t *testing.T) {
	withEachKernel(t, func(name string) {
		t.Run(name, func(t *testing.T) {
			TestAssemblyMatchesGeneric(t)
			TestMatchesCryptoSHA512(t)
			TestStop(t)
		})
	})
}

func BenchmarkEachKernel(b *testing.B) {
	withEachKernel(b, func(name string) { b.Run(name, BenchmarkFourLanes) })
}
