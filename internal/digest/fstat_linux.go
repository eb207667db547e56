package digest

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// fstat is a raw call too (see openat.go): syscall.Fstat wakes the scheduler's monitor thread.
func fstat(fd int, st *unix.Stat_t) error {
	if _, _, errno := unix.RawSyscall(unix.SYS_FSTAT, uintptr(fd), uintptr(unsafe.Pointer(st)), 0); errno != 0 {
		return errno
	}
	return nil
}
