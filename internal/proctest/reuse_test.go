package proctest

import (
	"os/exec"
	"runtime"
	"testing"
)

// A pid reused by another process is not the process a test tracked: AssertGone passes for
// it, and for the group the newcomer leads; an untracked pid that is alive still fails it.
// (TestSoak failed when a dead worker's pid was reused.)
func TestReusedPidIsNotTheTrackedProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	pid := cmd.Process.Pid
	if msgs := alive([]int{pid}); len(msgs) != 1 {
		t.Fatalf("a live untracked process: %q, want it reported", msgs)
	}
	Track(pid)
	if msgs := alive([]int{pid}); len(msgs) != 1 {
		t.Fatalf("a live tracked process: %q, want it reported", msgs)
	}
	start, _ := tracked.Load(pid)
	tracked.Store(pid, start.(uint64)-1) // as if the pid had been another process's
	defer tracked.Delete(pid)
	if msgs := alive([]int{pid}); len(msgs) != 0 {
		t.Fatalf("a process that reuses a tracked pid: %q, want it not taken for the tracked one", msgs)
	}
}
