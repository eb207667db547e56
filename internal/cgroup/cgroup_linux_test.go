package cgroup

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/supervise-dev/supervise/internal/proctest"
)

func newPool(t *testing.T) *Pool {
	t.Helper()
	p, err := NewPool()
	if err != nil {
		if os.Getenv("SUPERVISE_REQUIRE_CGROUP") == "1" {
			t.Fatalf("no cgroups, and SUPERVISE_REQUIRE_CGROUP=1: %v", err)
		}
		t.Skipf("no cgroups here: %v", err)
	}
	t.Cleanup(func() { _ = p.Destroy(5 * time.Second) })
	return p
}

// A process cloned into a leaf, and one it starts in a session of its own, are both members;
// Destroy kills them, checks the leaf is empty and removes it.
func TestLeafHoldsWhatItsProcessStarts(t *testing.T) {
	p := newPool(t)
	leaf, err := p.Leaf("w1")
	if err != nil {
		t.Fatal(err)
	}
	dir, err := leaf.Open()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-c", `setsid sh -c 'trap "" TERM HUP; exec sleep 300' & echo $!; exec sleep 300`)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(dir.Fd())}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	dir.Close()
	defer cmd.Wait()
	var escaped int
	if _, err := fmt.Fscan(out, &escaped); err != nil {
		t.Fatal(err)
	}
	procs, err := leaf.Procs()
	if err != nil || !slices.Contains(procs, cmd.Process.Pid) || !slices.Contains(procs, escaped) {
		t.Fatalf("the leaf holds %v (%v), want %d and %d", procs, err, cmd.Process.Pid, escaped)
	}
	if err := leaf.Destroy(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if running(escaped) {
		t.Errorf("the setsid'd process %d is running after Destroy", escaped)
	}
	if _, err := os.Stat(leaf.Dir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the leaf %s is left: %v", leaf.Dir(), err)
	}
	if cpu, err := leaf.CPU(); err == nil {
		t.Errorf("a removed leaf says it used %v of CPU", cpu)
	}
}

// running reports whether pid is a process that has not exited (a zombie has).
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, after, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(after, "Z") && !strings.HasPrefix(after, "X")
}

// A pool cgroup left by a process that is gone (and what still runs in it) is cleared away by
// the next pool made beside it; one whose process is alive is left alone.
func TestNewPoolSweepsCgroupsOfDeadProcesses(t *testing.T) {
	p := newPool(t)
	parent := filepath.Dir(p.Dir())
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(parent, fmt.Sprintf("supervise-%d-1", dead.Process.Pid))
	live := filepath.Join(parent, fmt.Sprintf("supervise-%d-99", os.Getpid()))
	for _, d := range []string{stale, live, filepath.Join(stale, "worker-1")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _ = DestroyDir(live, time.Second) })
	newPool(t)
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the cgroup of a dead process is left: %v", err)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("the cgroup of a live process was removed: %v", err)
	}
}

// The cost of a worker's cgroup: make the leaf, start a process in it, reap it, destroy the
// leaf.
func BenchmarkLeafLifecycle(b *testing.B) {
	p, err := NewPool()
	if err != nil {
		b.Skip(err)
	}
	defer p.Destroy(time.Second)
	for i := 0; b.Loop(); i++ {
		leaf, err := p.Leaf(fmt.Sprint("w", i))
		if err != nil {
			b.Fatal(err)
		}
		dir, err := leaf.Open()
		if err != nil {
			b.Fatal(err)
		}
		cmd := exec.Command("/bin/true")
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(dir.Fd())}
		if err := cmd.Run(); err != nil {
			b.Fatal(err)
		}
		dir.Close()
		if err := leaf.Destroy(time.Second); err != nil {
			b.Fatal(err)
		}
	}
}

// The same process started without a cgroup, for comparison.
func BenchmarkNoLeaf(b *testing.B) {
	for b.Loop() {
		if err := exec.Command("/bin/true").Run(); err != nil {
			b.Fatal(err)
		}
	}
}

// The warden, its pipe closed (as when the pool's process dies), kills what is left in the
// pool's cgroup, a setsid'd process that ignores SIGTERM and SIGHUP included, and removes it.
func TestWardenClearsThePool(t *testing.T) {
	p := newPool(t)
	leaf, err := p.Leaf("w1")
	if err != nil {
		t.Fatal(err)
	}
	dir, err := leaf.Open()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-c", `setsid sh -c 'trap "" TERM HUP; exec sleep 300' </dev/null >/dev/null 2>&1 & echo $!`)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(dir.Fd())}
	out, err := cmd.Output()
	dir.Close()
	if err != nil {
		t.Fatal(err)
	}
	var escaped int
	if _, err := fmt.Sscan(string(out), &escaped); err != nil {
		t.Fatal(err)
	}
	proctest.KillAtCleanup(t, escaped)
	w, err := StartWarden(p.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Stop(); err != nil {
		t.Fatal(err)
	}
	if running(escaped) {
		t.Errorf("the setsid'd process %d is running after the warden's work", escaped)
	}
	if _, err := os.Stat(p.Dir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the pool's cgroup %s is left: %v", p.Dir(), err)
	}
}
