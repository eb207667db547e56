//go:build !amd64 || purego

package mbsha512

import "unsafe"

func haveAsm() bool { return false }

func blocks(state *[32]uint64, ptrs *[4]unsafe.Pointer, n int) { blocksGeneric(state, ptrs, n) }
