//go:build unix && !linux

package supervisor

import (
	"os"
	"syscall"
)

// sysProcAttr makes the worker lead its own process group. There is no parent-death signal
// outside Linux; workers still exit when their stdin reaches EOF.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

func growPipe(*os.File, int) {}

// exitMaxRSS is the peak resident memory the kernel reported for a reaped process, in bytes
// (macOS counts it in bytes).
func exitMaxRSS(state *os.ProcessState) uint64 {
	if ru, ok := state.SysUsage().(*syscall.Rusage); ok && ru.Maxrss > 0 {
		return uint64(ru.Maxrss)
	}
	return 0
}

// fionread is the ioctl that says how many bytes a pipe holds unread: FIONREAD, _IOR('f', 127,
// int), on macOS and the BSDs.
const fionread = 0x4004667f

// cloneInto is never called: there are no cgroups outside Linux.
func cloneInto(*syscall.SysProcAttr, int) {}

// progressFile is the file behind a progress page: a temporary file, removed at once (its
// pages live in the page cache while mapped).
func progressFile() (*os.File, error) {
	f, err := os.CreateTemp("", "supervise-progress-*")
	if err != nil {
		return nil, err
	}
	os.Remove(f.Name())
	return f, nil
}
