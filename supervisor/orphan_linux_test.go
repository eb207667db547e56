package supervisor_test

import (
	"bufio"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The parent is SIGKILLed while its workers run tasks that started grandchildren: the kernel's
// parent-death signal reaches each worker, which takes its process group down, grandchildren
// included. Nothing of the pool may be left.
func TestNoOrphansWhenParentIsKilled(t *testing.T) {
	killParentAndAwait(t, "orphan-parent", 4)
}

// The parent is SIGKILLed while its worker is idle, after a task that left two processes
// behind that ignore SIGTERM and SIGHUP, one double-forked. The worker sees stdin end before
// its parent-death signal, and used to exit at once, leaving them (6 of 6 tries).
func TestNoOrphansWhenParentOfIdleWorkerIsKilled(t *testing.T) {
	killParentAndAwait(t, "orphan-parent-idle", 3)
}

// killParentAndAwait starts this binary in mode, reads n pids from its stdout, SIGKILLs it and
// waits for every one of them to be gone.
func killParentAndAwait(t *testing.T, mode string, n int) {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "SUPERVISE_TEST_MODE="+mode)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // should this test die first
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pids []int
	sc := bufio.NewScanner(out)
	for len(pids) < n && sc.Scan() {
		for _, f := range strings.Fields(sc.Text()) {
			pids = append(pids, atoi(t, f))
		}
	}
	if len(pids) != n {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("the parent reported pids %v", pids)
	}
	// Watch them with pidfds before the kill: a pidfd turns readable when its process exits.
	var fds []unix.PollFd
	for _, pid := range pids {
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			t.Fatalf("pidfd_open(%d): %v", pid, err)
		}
		defer unix.Close(fd)
		fds = append(fds, unix.PollFd{Fd: int32(fd), Events: unix.POLLIN})
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for i := range fds {
		for fds[i].Revents&unix.POLLIN == 0 {
			left := time.Until(deadline)
			if left <= 0 {
				t.Fatalf("process %d is still alive 10s after its pool's parent was killed", pids[i])
			}
			if _, err := unix.Poll(fds[i:i+1], int(left.Milliseconds())+1); err != nil && err != unix.EINTR {
				t.Fatal(err)
			}
		}
	}
	assertGone(t, pids...)
}
