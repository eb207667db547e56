package digest

import (
	"errors"
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
		uintptr(unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_NOFOLLOW), 0, 0, 0)
	if errno != 0 {
		return -1, errno
	}
	return int(fd), nil
}

// OpenDir opens a directory for reading its entries, as the walk does.
func OpenDir(dir string) (int, error) {
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

// errChanged and errLinkNow are what a worker says of a path that the walk listed as a regular
// file and that is something else when the worker opens it.
var (
	errChanged = errors.New("not a regular file (it changed after the walk listed it)")
	errLinkNow = errors.New("a symbolic link (it changed after the walk listed it)")
)

// openRegular opens name, in directory dirfd, to hash it, and returns its size. It does not
// follow a symbolic link, and opens nothing but a regular file: between the walk and the
// open, a file may have been swapped for a FIFO (read as empty), or a link to /dev/zero (read
// forever).
func openRegular(dirfd int, name string) (fd int, size int64, err error) {
	fd, err = Retry(func() (int, error) { return openat(dirfd, name) })
	if errors.Is(err, syscall.ELOOP) {
		return -1, 0, errLinkNow
	}
	if err != nil {
		return -1, 0, err
	}
	var st unix.Stat_t
	if err := fstat(fd, &st); err != nil {
		closeFile(fd)
		return -1, 0, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		closeFile(fd)
		return -1, 0, errChanged
	}
	return fd, st.Size, nil
}

// atEnd says whether a read of n bytes into a buffer of len bytes, after which total bytes of
// a file of size bytes (fstat's) were read, was the last: it returned nothing, or it was
// short and the file is read to its size. A short read alone is not the end (files in /proc
// say size 0 and come in pieces; network file systems read short), and a file that grows is
// read on to its end, as sha512sum does.
func atEnd(n, len int, total, size int64) bool {
	return n == 0 || (n < len && total == size)
}
