package main

import (
	"bufio"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/supervise-dev/supervise/internal/proctest"
)

// The parent is SIGKILLed while both its workers run tasks whose children ignore SIGTERM:
// nothing of the pool may be left. Linux only: elsewhere there is no parent-death signal.
func TestParentKilled(t *testing.T) {
	cmd := exec.Command(workerBinary, "-hold")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // should this test die first
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The parent logs its workers' stderr: wait for both lines of grandchildren.
	var pids []int
	sc := bufio.NewScanner(stderr)
	for len(pids) < 4 && sc.Scan() {
		if m := grandchildrenLine.FindStringSubmatch(sc.Text()); m != nil {
			for _, s := range m[1:] {
				pid, _ := strconv.Atoi(s)
				pids = append(pids, pid)
			}
		}
	}
	go func() { // keep the parent's stderr drained until it dies
		for sc.Scan() {
		}
	}()
	if len(pids) != 4 {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("the parent reported grandchildren %v", pids)
	}
	workers := groupsOf(t, pids)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	proctest.AwaitGone(t, 10*time.Second, append(workers, pids...)...)
}

// groupsOf returns the process groups of pids: their workers.
func groupsOf(t *testing.T, pids []int) []int {
	var groups []int
	for _, pid := range pids {
		g, err := syscall.Getpgid(pid)
		if err != nil {
			t.Fatalf("grandchild %d: %v", pid, err)
		}
		groups = append(groups, g)
	}
	return groups
}
