package main

import (
	"cmp"
	"context"
	"errors"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/supervise-dev/supervise/channel"
	"github.com/supervise-dev/supervise/internal/pooltest"
	"github.com/supervise-dev/supervise/internal/proctest"
	"github.com/supervise-dev/supervise/supervisor"
)

var workerBinary string // this example, built: the workers of every pool here

func TestMain(m *testing.M) {
	var cleanup func()
	var err error
	if workerBinary, cleanup, err = proctest.Build("."); err != nil {
		panic(err)
	}
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// matrixConfig is the pool of the fault matrix: Config's, with shorter limits.
func matrixConfig() supervisor.Config {
	cfg := Config()
	cfg.Command = []string{workerBinary}
	cfg.TaskTimeout, cfg.CancelGrace, cfg.StopGrace = 300*time.Millisecond, 200*time.Millisecond, 200*time.Millisecond
	cfg.MemoryHardLimit, cfg.MemoryInterval = 128<<20, 20*time.Millisecond
	return cfg
}

var (
	grandchildrenLine = regexp.MustCompile(`misbehave: grandchildren (\d+) (\d+)`)
	escapedLine       = regexp.MustCompile(`misbehave: escaped (\d+)`)
	forkedLine        = regexp.MustCompile(`misbehave: forked (\d+) \(.*\):((?: \d+)*)`)
)

// The fault matrix: for each way a worker goes wrong, the faulty task fails with its typed
// error, the 30 tasks beside it complete, the pool is back to its 3 workers, and once it is
// closed no process of it, nor any of their descendants, is left.
func TestFaultMatrix(t *testing.T) {
	cases := []struct {
		name   string // if not the kind's
		kind   string
		cfg    func(*supervisor.Config)
		check  func(t *testing.T, err error)
		cgroup bool // only cgroups contain it
	}{
		{kind: "crash", check: func(t *testing.T, err error) {
			var we *supervisor.WorkerError
			if !errors.As(err, &we) || we.State == nil || we.State.ExitCode() != 3 || !strings.Contains(we.Stderr, "crashing on purpose") {
				t.Fatalf("want a *WorkerError with exit status 3 and the stderr tail, got %v", err)
			}
		}},
		{kind: "spin", check: wantTimeout},
		{kind: "sleep", check: wantTimeout},
		{kind: "freeze", cfg: func(c *supervisor.Config) {
			c.TaskTimeout, c.HangTimeout, c.Heartbeat = 0, 300*time.Millisecond, 30*time.Millisecond
		},
			check: func(t *testing.T, err error) {
				var we *supervisor.WorkerError
				if !errors.Is(err, supervisor.ErrHung) || !errors.As(err, &we) || !we.Hung {
					t.Fatalf("want ErrHung, got %v", err)
				}
			}},
		// No time limit here: on a loaded machine, eating 128 MiB took longer than 300 ms,
		// and the time limit won over the memory limit this case is about.
		{kind: "eat", cfg: func(c *supervisor.Config) { c.TaskTimeout = 0 }, check: func(t *testing.T, err error) {
			var me *supervisor.MemoryLimitError
			// Sampled (no cgroups), the RSS seen is over the limit; enforced by the kernel on
			// the worker's cgroup, the cgroup's peak is at the limit.
			if !errors.As(err, &me) || me.Limit != 128<<20 || (me.Kernel && me.RSS > me.Limit+8192) || (!me.Kernel && me.RSS <= me.Limit) {
				t.Fatalf("want a *MemoryLimitError over 128 MiB, got %v", err)
			}
		}},
		{kind: "garbage", check: func(t *testing.T, err error) {
			var fe *channel.FrameError
			if !errors.Is(err, channel.ErrDecode) || !errors.As(err, &fe) || fe.Frame == 0 {
				t.Fatalf("want a protocol error (ErrDecode) naming the frame, got %v", err)
			}
		}},
		{kind: "oversize", check: func(t *testing.T, err error) {
			if !errors.Is(err, channel.ErrFrameTooLarge) || !strings.Contains(err.Error(), "1048577") {
				t.Fatalf("want ErrFrameTooLarge quoting the length, got %v", err)
			}
		}},
		{kind: "exit0", check: func(t *testing.T, err error) {
			var we *supervisor.WorkerError
			if !errors.As(err, &we) || we.State == nil || !we.State.Success() || !strings.Contains(err.Error(), "exit status 0") {
				t.Fatalf("want a *WorkerError with exit status 0, got %v", err)
			}
		}},
		{kind: "grandchildren", check: wantTimeout},
		{kind: "escape", check: wantTimeout, cgroup: true},
		// Under pids.max, fork fails past 64 (the worker's threads count too). The worker's
		// runtime may need a thread more at the limit and abort: a dead worker is as good.
		{kind: "forkbomb", cfg: func(c *supervisor.Config) { c.MaxProcs = 64 }, cgroup: true,
			check: func(t *testing.T, err error) {
				var te *supervisor.TimeoutError
				if !errors.As(err, &te) && !errors.Is(err, supervisor.ErrWorkerDied) {
					t.Fatalf("want a *TimeoutError or ErrWorkerDied, got %v", err)
				}
			}},
		// A quarter of a core still spins past the time limit, and is killed for it.
		{name: "spin-capped", kind: "spin", cfg: func(c *supervisor.Config) { c.CPULimit = 0.25 }, check: wantTimeout, cgroup: true},
	}
	for _, c := range cases {
		t.Run(cmp.Or(c.name, c.kind), func(t *testing.T) {
			if c.cgroup {
				pooltest.NeedCgroups(t) // only cgroups contain this fault
			}
			cfg := matrixConfig()
			if c.cfg != nil {
				c.cfg(&cfg)
			}
			rec := pooltest.Attach(&cfg)
			ctx := context.Background()
			pool, err := supervisor.Start(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			call := supervisor.Bind[Fault, int](pool, "misbehave")
			fault := call.Submit(ctx, Fault{Kind: c.kind})
			var others []*supervisor.Future[int]
			for i := range 30 {
				others = append(others, call.Submit(ctx, Fault{Kind: "ok", N: i}))
			}
			_, err = fault.Get(ctx)
			var te *supervisor.TaskError
			if !errors.As(err, &te) || te.Pid == 0 {
				t.Fatalf("want a *TaskError naming the worker, got %v", err)
			}
			c.check(t, err)
			for i, f := range others {
				if v, err := f.Get(ctx); err != nil || v != 2*i {
					t.Errorf("task %d beside the fault: %v %v", i, v, err)
				}
			}
			rec.WaitForReplacement(t, te.Pid)
			if n := len(pool.Workers()); n != cfg.Workers {
				t.Errorf("%d workers after the fault, want %d", n, cfg.Workers)
			}
			if err := pool.Close(); err != nil {
				t.Fatal(err)
			}
			pids := rec.Pids()
			if m := grandchildrenLine.FindStringSubmatch(rec.String()); m != nil {
				for _, s := range m[1:] {
					pid, _ := strconv.Atoi(s)
					pids = append(pids, pid)
				}
			}
			if m := escapedLine.FindStringSubmatch(rec.String()); m != nil {
				pid, _ := strconv.Atoi(m[1])
				pids = append(pids, pid)
				proctest.KillAtCleanup(t, pid) // should the pool have failed to
			}
			if m := forkedLine.FindStringSubmatch(rec.String()); m != nil {
				n, _ := strconv.Atoi(m[1])
				t.Logf("%d forks started under MaxProcs 64", n)
				if n >= 64 || len(strings.Fields(m[2])) != n {
					t.Fatalf("%d forks started under MaxProcs 64: %s", n, m[0])
				}
				for _, s := range strings.Fields(m[2]) {
					pid, _ := strconv.Atoi(s)
					pids = append(pids, pid)
					proctest.KillAtCleanup(t, pid)
				}
			}
			if c.kind == "escape" && len(pids) != len(rec.Pids())+1 {
				t.Fatalf("the escaped process's pid is not in the log:\n%s", rec)
			}
			if c.kind == "grandchildren" && len(pids) != len(rec.Pids())+2 {
				t.Fatalf("the grandchildren's pids are not in the log:\n%s", rec)
			}
			proctest.AssertGone(t, pids...)
		})
	}
}

// wantTimeout: the call fails at its limit with a *TimeoutError (the test then waits for its
// worker's replacement: deaf to its cancel, it was killed CancelGrace later).
func wantTimeout(t *testing.T, err error) {
	t.Helper()
	var te *supervisor.TimeoutError
	if !errors.As(err, &te) || !errors.Is(err, supervisor.ErrTimeout) {
		t.Fatalf("want a *TimeoutError, got %v", err)
	}
}
