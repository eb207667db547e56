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

	"github.com/opencontainers/cgroups"
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

// On cgroup v2 a cgroup that hands controllers to its children may hold no processes (the
// root apart), so enabling one for the pool moves this process into a leaf of its own, and
// refuses, saying why, where other processes share its cgroup. Tested with hugetlb, the one
// controller the v2 hierarchy of the hybrid layout has: the test runs itself in a fresh
// cgroup under the root, with a sleeper beside it or not.
func TestEnableMovesThisProcessIntoALeaf(t *testing.T) {
	if os.Getenv("CGROUP_TEST_ENABLE") == "1" {
		enableInChild()
		return
	}
	p := newPool(t)
	mount := filepath.Dir(p.Dir())
	if own, _ := ownGroup(""); own != "/" || !controllerAvailable(mount, "hugetlb") {
		t.Skip("needs to run in the root cgroup, with hugetlb in the v2 hierarchy (the hybrid layout)")
	}
	if !enabledBelow(mount, "hugetlb") {
		if err := enableController(mount, "hugetlb"); err != nil {
			t.Skipf("cannot enable hugetlb in the root cgroup: %v", err)
		}
		t.Cleanup(func() { _ = cgroups.WriteFile(mount, "cgroup.subtree_control", "-hugetlb") })
	}
	for _, shared := range []bool{false, true} {
		group := filepath.Join(mount, fmt.Sprintf("supervise-test-%d", os.Getpid()))
		if err := os.Mkdir(group, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = DestroyDir(group, 5*time.Second) })
		fd, err := os.Open(group)
		if err != nil {
			t.Fatal(err)
		}
		if shared {
			sleeper := exec.Command("sleep", "300")
			sleeper.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(fd.Fd())}
			if err := sleeper.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { sleeper.Process.Kill(); sleeper.Wait() })
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestEnableMovesThisProcessIntoALeaf$")
		cmd.Env = append(os.Environ(), "CGROUP_TEST_ENABLE=1")
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(fd.Fd())}
		out, err := cmd.CombinedOutput()
		fd.Close()
		got := string(out)
		switch {
		case err != nil:
			t.Fatalf("shared %v: %v\n%s", shared, err, got)
		case !shared && !strings.Contains(got, "enabled; now in /supervise-test-"):
			t.Fatalf("alone in its cgroup, enabling hugetlb did not move it into a leaf:\n%s", got)
		case shared && !strings.Contains(got, "other processes share this process's cgroup (1 of them)"):
			t.Fatalf("beside a sleeper, enabling hugetlb did not say why it cannot:\n%s", got)
		}
		_ = DestroyDir(group, 5*time.Second)
	}
}

// enableInChild is the child of TestEnableMovesThisProcessIntoALeaf: it enables hugetlb for a
// pool and prints where it ended up, or why it could not.
func enableInChild() {
	p, err := NewPool()
	if err != nil {
		fmt.Println("no pool:", err)
		return
	}
	defer p.Destroy(time.Second)
	if err := p.enableV2([]string{"hugetlb"}); err != nil {
		own, _ := ownGroup("")
		fmt.Printf("not enabled: %v; still in %s\n", err, own)
		return
	}
	own, _ := ownGroup("")
	fmt.Printf("enabled; now in %s\n", own)
}

func enabledBelow(dir, c string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
	return err == nil && slices.Contains(strings.Fields(string(b)), c)
}

func controllerAvailable(dir, c string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	return err == nil && slices.Contains(strings.Fields(string(b)), c)
}
