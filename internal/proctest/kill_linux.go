package proctest

import (
	"testing"

	"golang.org/x/sys/unix"
)

// KillAtCleanup SIGKILLs process pid when the test ends, should the code under test have left
// it: through a pidfd opened now, while pid is the process the test means, so that a pid the
// kernel has given to another process since (pids wrap around quickly on a busy machine) is
// never hit. A process already gone is left alone.
func KillAtCleanup(t testing.TB, pid int) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return // gone already (or no pidfds): nothing of it to kill
	}
	t.Cleanup(func() {
		_ = unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
		_ = unix.Close(fd)
	})
}
