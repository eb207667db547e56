//go:build unix

package child

import (
	"os"

	"golang.org/x/sys/unix"
)

// redirectStdio moves the frame streams to private duplicates of fd 0 and fd 1 (close-on-exec,
// so child processes do not inherit them), points fd 1 at stderr and fd 0 at /dev/null. So
// anything else printing to stdout (fmt.Println, a C library) lands on stderr and can never
// corrupt a frame, and nothing reading stdin (a child process) can steal one.
func redirectStdio() (in, out *os.File, err error) {
	inFd, err := unix.FcntlInt(0, unix.F_DUPFD_CLOEXEC, 3)
	if err != nil {
		return nil, nil, err
	}
	outFd, err := unix.FcntlInt(1, unix.F_DUPFD_CLOEXEC, 3)
	if err != nil {
		unix.Close(inFd)
		return nil, nil, err
	}
	null, err := unix.Open(os.DevNull, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err == nil {
		err = unix.Dup2(null, 0)
		unix.Close(null)
	}
	if err == nil {
		err = unix.Dup2(2, 1)
	}
	if err != nil {
		unix.Close(inFd)
		unix.Close(outFd)
		return nil, nil, err
	}
	return os.NewFile(uintptr(inFd), "supervise-calls"), os.NewFile(uintptr(outFd), "supervise-frames"), nil
}
