//go:build unix

package child

import (
	"os"

	"golang.org/x/sys/unix"
)

// redirectStdout moves the frame stream to a private duplicate of fd 1 and points fd 1 at
// stderr, so that anything else printing to stdout (fmt.Println, a C library) lands on stderr
// and can never corrupt a frame.
func redirectStdout() (*os.File, error) {
	fd, err := unix.FcntlInt(1, unix.F_DUPFD_CLOEXEC, 3)
	if err != nil {
		return nil, err
	}
	if err := unix.Dup2(2, 1); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), "supervise-frames"), nil
}
