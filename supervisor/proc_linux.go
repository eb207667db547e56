package supervisor

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// sysProcAttr makes the worker lead its own process group (so the group can be killed as one)
// and asks the kernel to send it SIGHUP if the parent dies (see spawner for the thread that
// must stay alive). A signal of its own, not SIGKILL nor SIGTERM, tells a worker of ours that
// its parent is gone, so it takes its process group down with the whole kill ladder (child.Main
// does); any other command just dies of it (docs/protocol.md, section 1).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGHUP}
}

// cloneInto has the worker cloned into the cgroup whose directory fd is open (clone3's
// CLONE_INTO_CGROUP).
func cloneInto(attr *syscall.SysProcAttr, fd int) {
	attr.UseCgroupFD, attr.CgroupFD = true, fd
}

// growPipe raises a pipe's capacity (64 KiB by default on Linux) so that a large frame crosses
// in fewer wake-ups. Failure is harmless: the pipe keeps its size.
func growPipe(f *os.File, size int) {
	if rc, err := f.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) { _, _ = unix.FcntlInt(fd, unix.F_SETPIPE_SZ, size) })
	}
}

// exitMaxRSS is the peak resident memory the kernel reported for a reaped process (or for the
// largest of the children it reaped), in bytes: Linux counts it in KiB.
func exitMaxRSS(state *os.ProcessState) uint64 {
	if ru, ok := state.SysUsage().(*syscall.Rusage); ok && ru.Maxrss > 0 {
		return uint64(ru.Maxrss) * 1024
	}
	return 0
}

// fionread is the ioctl that says how many bytes a pipe holds unread (FIONREAD).
const fionread = unix.TIOCINQ

// progressFile is the file behind a progress page: in memory, never on a disk.
func progressFile() (*os.File, error) {
	fd, err := unix.MemfdCreate("supervise-progress", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), "supervise-progress"), nil
}
