package main

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The file system calls of the digest worker. They are made as raw system calls, without
// telling the Go scheduler: on files in the page cache they take a few microseconds, and the
// scheduler's bookkeeping around each call (and the monitor thread it keeps waking, 19,000
// nanosleeps on 20,000 small files) cost more than the calls. A call that blocks on a cold
// disk holds its thread, which the worker can spare: the handler runs one file at a time.

const atFDCWD = unix.AT_FDCWD

func openat(dirfd int, name string) (int, error) {
	p, err := unix.BytePtrFromString(name)
	if err != nil {
		return -1, err
	}
	fd, _, errno := unix.RawSyscall6(unix.SYS_OPENAT, uintptr(dirfd), uintptr(unsafe.Pointer(p)),
		uintptr(unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOCTTY|unix.O_NONBLOCK), 0, 0, 0)
	if errno != 0 {
		return -1, errno
	}
	return int(fd), nil
}

func openDir(dir string) (int, error) {
	return unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
}

func readFile(fd int, buf []byte) (int, error) {
	n, _, errno := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(buf))), uintptr(len(buf)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

func closeFile(fd int) { unix.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0) }

func fileSize(fd int) (int64, error) {
	var st syscall.Stat_t
	err := syscall.Fstat(fd, &st)
	return st.Size, err
}
