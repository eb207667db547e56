//go:build unix

package supervisor

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// killGroup signals the worker's whole process group (the worker leads it), so grandchildren
// get the signal too. A group that is already gone is not an error.
func killGroup(pid int, sig syscall.Signal) {
	if pid > 0 {
		_ = syscall.Kill(-pid, sig)
	}
}

func exitDescription(s *os.ProcessState) string {
	if ws, ok := s.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return fmt.Sprintf("killed by signal %d (%s)", int(ws.Signal()), ws.Signal())
	}
	return fmt.Sprintf("exit status %d", s.ExitCode())
}

// fdsPerWorker is what a worker takes of the parent's file descriptors, with room to spare: its
// three pipes' ends, a pidfd, and the child's ends while it starts.
const fdsPerWorker = 8

// MaxWorkers is how many workers a pool of this process can have at most: as many as fit in
// its limit of open files (RLIMIT_NOFILE), beside 64 for everything else.
func MaxWorkers() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur > 1<<30 {
		return 1 << 20
	}
	return max(1, (int(lim.Cur)-64)/fdsPerWorker)
}

// unread is how many bytes the worker has written to f (its stdout) that the parent has not
// read yet; 0 if it cannot tell.
func unread(f *os.File) int {
	n := 0
	if raw, err := f.SyscallConn(); err == nil {
		_ = raw.Control(func(fd uintptr) {
			n, _ = unix.IoctlGetInt(int(fd), fionread)
		})
	}
	return n
}
