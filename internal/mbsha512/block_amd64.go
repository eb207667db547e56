//go:build amd64 && !purego

package mbsha512

import (
	"unsafe"

	"golang.org/x/sys/cpu"
)

// The assembly needs AVX-512VL (and F, which VL implies): 64-bit rotates, three-input logic
// and 32 vector registers, on 256-bit vectors. x/sys/cpu also checks that the OS saves the
// AVX-512 state.
var haveAsm = cpu.X86.HasAVX512F && cpu.X86.HasAVX512VL

//go:noescape
func blocks4(state *[32]uint64, ptrs *[4]unsafe.Pointer, n int)

func blocks(state *[32]uint64, ptrs *[4]unsafe.Pointer, n int) {
	if haveAsm {
		blocks4(state, ptrs, n)
		return
	}
	blocksGeneric(state, ptrs, n)
}
