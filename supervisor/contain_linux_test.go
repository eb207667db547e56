package supervisor_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/supervise-dev/supervise/internal/cgroup"
	"github.com/supervise-dev/supervise/internal/pooltest"
	"github.com/supervise-dev/supervise/internal/proctest"
	"github.com/supervise-dev/supervise/supervisor"
)

// needCgroups skips a test of cgroup containment where the pool has none, unless
// SUPERVISE_REQUIRE_CGROUP=1 (CI sets it) makes that a failure.
func needCgroups(t *testing.T, p *supervisor.Pool) {
	t.Helper()
	if supervisor.CgroupDir(p) == "" { // (not Stats: it would start the pool's sampler)
		c := p.Stats().Containment
		if os.Getenv("SUPERVISE_REQUIRE_CGROUP") == "1" {
			t.Fatalf("the pool has no cgroups (containment %q), and SUPERVISE_REQUIRE_CGROUP=1", c)
		}
		t.Skipf("the pool has no cgroups here (containment %q)", c)
	}
}

// killEscaped kills a process a test left behind, should the pool have failed to.
func killEscaped(t *testing.T, pid int) { proctest.KillAtCleanup(t, pid) }

// A handler starts a process that calls setsid and ignores SIGTERM and SIGHUP, and returns:
// the process leaves the worker's process group, but not its cgroup, and Close kills it.
func TestEscapedProcessGoneAfterClose(t *testing.T) {
	cfg := supervisor.Config{Workers: 1, StopGrace: 200 * time.Millisecond}
	pooltest.Attach(&cfg)
	p, err := supervisor.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	needCgroups(t, p)
	dir := supervisor.CgroupDir(p)
	pid, err := supervisor.Bind[int, int](p, "escape").Call(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	killEscaped(t, pid)
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("the escaped process %d is not running: %v", pid, err)
	}
	// The worker's figures count it: it is in the worker's cgroup, if not in its tree.
	if w := p.Stats().Workers[0]; w.Processes != 2 {
		t.Errorf("the worker and its escaped process are %d processes, want 2", w.Processes)
	}
	p.Close() // returns once each worker's cgroup is empty
	proctest.AssertGone(t, pid)
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the pool's cgroup %s is left after Close: %v", dir, err)
	}
}

// The same process, left by a call that then overruns its time limit: the kill for the
// overrun takes the escaped process too.
func TestEscapedProcessGoneAfterTimeLimitKill(t *testing.T) {
	// A time limit of 1 s: on a loaded machine starting the escaping process took longer than
	// 100 ms, and the call was killed before it could report the process's pid.
	p, events := startPool(t, supervisor.Config{Workers: 1, TaskTimeout: time.Second,
		CancelGrace: 100 * time.Millisecond, StopGrace: 200 * time.Millisecond})
	needCgroups(t, p)
	f := supervisor.Bind[int, int](p, "escape").Submit(context.Background(), 600_000)
	pid := 0
	for r := range f.Reports(context.Background()) {
		if err := r.Decode(&pid); err != nil {
			t.Fatal(err)
		}
		break
	}
	if pid <= 0 {
		_, err := f.Get(context.Background())
		t.Fatalf("the call reported no escaped process: %v", err)
	}
	killEscaped(t, pid)
	_, err := f.Get(context.Background())
	var te *supervisor.TimeoutError
	if !errors.As(err, &te) {
		t.Fatalf("a call past its time limit: %v", err)
	}
	var taskErr *supervisor.TaskError
	errors.As(err, &taskErr)
	events.WaitForReplacement(t, taskErr.Pid) // the dead worker's cgroup was emptied before
	proctest.AssertGone(t, pid)
}

// The pool's process is SIGKILLed, after its worker ran a task that left a setsid'd process
// ignoring SIGTERM and SIGHUP: the pool's warden clears the cgroup.
func TestEscapedProcessGoneAfterParentIsKilled(t *testing.T) {
	pooltest.NeedCgroups(t)
	killParentAndAwait(t, "escape-parent", 2)
}

// Without cgroups (SUPERVISE_CGROUP=off) the pool contains workers by process group, says so,
// and works as before.
func TestProcessGroupContainment(t *testing.T) {
	t.Setenv(cgroup.Off, "off")
	p, _ := startPool(t, supervisor.Config{Workers: 1})
	if c := p.Stats().Containment; c != supervisor.ContainProcessGroup {
		t.Fatalf("containment %q with cgroups turned off", c)
	}
	if v, err := supervisor.Bind[int, int](p, "square").Call(context.Background(), 7); err != nil || v != 49 {
		t.Fatalf("square(7): %v %v", v, err)
	}
}

// A worker's CPU time counts what its cgroup ran, a process that escaped its tree and was
// never reaped by it included: 600 ms of CPU spun by a setsid'd, double-forked process show
// in the worker's figures, live and after it ended. (Counted from /proc, its tree's sum
// missed all of it.)
func TestCPUOfEscapedProcessCounted(t *testing.T) {
	p, _ := startPool(t, supervisor.Config{Workers: 1})
	needCgroups(t, p)
	pid, err := supervisor.Bind[int, int](p, "spinaway").Call(context.Background(), 600)
	if err != nil {
		t.Fatal(err)
	}
	killEscaped(t, pid)
	proctest.AwaitGone(t, time.Minute, pid) // 600 ms of CPU; a loaded machine takes longer
	if cpu := p.Stats().Workers[0].CPU; cpu < 600*time.Millisecond {
		t.Fatalf("the worker used %v of CPU, its escaped process alone 600ms", cpu)
	}
	p.Close()
	if cpu := p.Stats().Workers[0].CPU; cpu < 600*time.Millisecond {
		t.Fatalf("after Close, the worker's slot used %v of CPU, its escaped process alone 600ms", cpu)
	}
}

// A handler that forks 1,000 sleepers under MaxProcs 64 gets fork failures past 64 (the
// worker's own threads count too) and decides what they mean: here it returns the counts.
// Closing the pool leaves none of them. On a loaded machine the Go runtime of the worker may
// need a thread more while the limit is reached, and aborts ("failed to create new OS
// thread"): the task then fails with ErrWorkerDied, which is as good an outcome here.
func TestMaxProcs(t *testing.T) {
	pooltest.NeedCgroups(t) // else Start fails (TestCgroupOnlyLimitsWithoutCgroups)
	p, _ := startPool(t, supervisor.Config{Workers: 1, MaxProcs: 64})
	marker := fmt.Sprintf("300.%d", time.Now().UnixNano()%1000000)
	t.Cleanup(func() { _ = exec.Command("pkill", "-KILL", "-xf", "sleep "+regexp.QuoteMeta(marker)).Run() })
	n, err := supervisor.Bind[forkInput, [2]int](p, "forkmany").Call(context.Background(), forkInput{N: 1000, Marker: marker})
	switch started, failed := n[0], n[1]; {
	case errors.Is(err, supervisor.ErrWorkerDied):
		t.Logf("the worker's runtime gave up at the limit: %.200s", err)
	case err != nil:
		t.Fatal(err)
	case started >= 64 || failed < 1000-64:
		t.Fatalf("%d forks started and %d failed under MaxProcs 64", started, failed)
	}
	p.Close()
	proctest.AwaitNoProcessWithArg(t, time.Second, marker) // gone by Close; the margin is for /proc
}

// CPULimit 0.25: a handler that spins for 500 ms of CPU gets at most 0.30 of a core over the
// call's wall time (0.25, and a margin for the periods' edges), measured from the worker's
// cgroup (Stats). A loaded machine only makes it slower, so only the cap is asserted; the
// share is logged.
func TestCPULimit(t *testing.T) {
	pooltest.NeedCgroups(t)
	p, _ := startPool(t, supervisor.Config{Workers: 1, CPULimit: 0.25, StatsInterval: 10 * time.Millisecond})
	needCgroups(t, p)
	before := p.Stats().Workers[0].CPU
	start := time.Now()
	if _, err := supervisor.Bind[spinInput, float64](p, "spin").Call(context.Background(), spinInput{CPU: -1, Ms: 500}); err != nil {
		t.Fatal(err)
	}
	wall := time.Since(start)
	time.Sleep(30 * time.Millisecond) // a sample taken after the call (StatsInterval 10 ms)
	used := p.Stats().Workers[0].CPU - before
	share := used.Seconds() / wall.Seconds()
	t.Logf("%v of CPU in %v of wall time: %.2f of a core", used, wall, share)
	if share > 0.30 {
		t.Fatalf("%v of CPU in %v: %.2f of a core under a limit of 0.25", used, wall, share)
	}
}

// MaxProcs and CPULimit need cgroups: without them Start fails, naming what is missing.
func TestCgroupOnlyLimitsWithoutCgroups(t *testing.T) {
	t.Setenv(cgroup.Off, "off")
	for _, cfg := range []supervisor.Config{{Workers: 1, MaxProcs: 64}, {Workers: 1, CPULimit: 0.5}} {
		p, err := supervisor.Start(context.Background(), cfg)
		if err == nil {
			p.Close()
			t.Fatalf("%+v started without cgroups", cfg)
		}
		if !strings.Contains(err.Error(), "need cgroups") || !strings.Contains(err.Error(), cgroup.Off+"=off") {
			t.Errorf("the error does not say what is missing: %v", err)
		}
	}
}
