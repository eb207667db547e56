package supervisor_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/supervise-dev/supervise/internal/cgroup"
	"github.com/supervise-dev/supervise/supervisor"
)

// The kernel's hard limit: a handler that touches 4 GiB as fast as it can under a 256 MiB
// limit is killed by the kernel's OOM killer in its own cgroup, at the limit (a sampler would
// see it after the fact, or not at all); its call fails with ErrMemoryLimit and the peak,
// which is at most the limit; the other worker lives on, and the next call succeeds.
func TestKernelMemoryLimit(t *testing.T) {
	const limit = 256 << 20
	p, events := startPool(t, supervisor.Config{Workers: 2, MemoryHardLimit: limit})
	needCgroups(t, p)
	ctx := context.Background()
	pids := map[int]bool{}
	for _, w := range p.Workers() {
		pids[w.Pid] = true
	}
	_, err := supervisor.Bind[eatInput, int](p, "eat").Call(ctx, eatInput{MiB: 4096})
	var me *supervisor.MemoryLimitError
	var te *supervisor.TaskError
	if !errors.Is(err, supervisor.ErrMemoryLimit) || errors.Is(err, supervisor.ErrWorkerDied) || !errors.As(err, &me) || !errors.As(err, &te) ||
		!me.Kernel || me.Limit != limit || me.RSS > limit+8192 || me.RSS < limit/2 {
		t.Fatalf("the call of a worker that touched 4 GiB under a 256 MiB limit: %v (%+v)", err, me)
	}
	events.WaitForReplacement(t, te.Pid)
	assertGone(t, te.Pid)
	delete(pids, te.Pid)
	for _, w := range p.Workers() { // the other worker is the same process
		delete(pids, w.Pid)
	}
	if len(pids) != 0 {
		t.Errorf("the other worker was replaced too: %v", pids)
	}
	if v, err := supervisor.Bind[int, int](p, "square").Call(ctx, 9); err != nil || v != 81 {
		t.Fatalf("after the kill: %v %v", v, err)
	}
	slot := -1
	for _, w := range p.Stats().Workers {
		if w.MemoryPeak > limit+8192 {
			t.Errorf("slot %d's cgroup peaked at %d bytes, over the limit", w.Slot, w.MemoryPeak)
		}
		if w.Restarts == 1 {
			slot = w.Slot
		}
	}
	if st := p.Stats().Workers; slot < 0 || st[slot].MemoryPeak < limit/2 {
		t.Errorf("the killed worker's slot (%d) reports no peak near the limit: %+v", slot, st)
	}
}

// The sampled hard limit (where the kernel cannot enforce it: cgroups are off here).
func TestMemoryHardLimitKillsWorker(t *testing.T) {
	t.Setenv(cgroup.Off, "off")
	p, events := startPool(t, supervisor.Config{Workers: 2, MemoryHardLimit: 150 << 20, MemoryInterval: 20 * time.Millisecond})
	ctx := context.Background()
	_, err := supervisor.Bind[eatInput, int](p, "eat").Call(ctx, eatInput{MiB: 300, Hold: true})
	var me *supervisor.MemoryLimitError
	var te *supervisor.TaskError
	// A limit, like a hard time limit: not a worker that died (it used to match ErrWorkerDied).
	if !errors.Is(err, supervisor.ErrMemoryLimit) || errors.Is(err, supervisor.ErrWorkerDied) || !errors.As(err, &me) || !errors.As(err, &te) ||
		me.RSS <= 150<<20 || !strings.Contains(err.Error(), "MiB over the hard limit of 150.0 MiB") {
		t.Fatalf("the call of a worker over its hard memory limit: %v", err)
	}
	events.WaitForReplacement(t, te.Pid)
	assertGone(t, te.Pid)
	// Killed for a limit: an event says why, and it is no failure of the worker (RestartPolicy).
	events.WaitFor(t, 0, "worker killed for its memory", func(e supervisor.Event) bool {
		k, ok := e.(supervisor.EventWorkerKilled)
		return ok && k.Pid == te.Pid && errors.As(k.Err, &me)
	})
	events.WaitFor(t, 0, "worker exited, no failure", func(e supervisor.Event) bool {
		x, ok := e.(supervisor.EventWorkerExited)
		return ok && x.Pid == te.Pid && !x.Failure && x.TasksFailed == 1 && errors.Is(x.Err, supervisor.ErrMemoryLimit)
	})
	if v, err := supervisor.Bind[int, int](p, "square").Call(ctx, 9); err != nil || v != 81 {
		t.Fatalf("after the kill: %v %v", v, err)
	}
}

func TestMemorySoftLimitRecyclesWorker(t *testing.T) {
	p, events := startPool(t, supervisor.Config{Workers: 1, MemorySoftLimit: 100 << 20, MemoryInterval: 20 * time.Millisecond})
	ctx := context.Background()
	pid, err := supervisor.Bind[eatInput, int](p, "eat").Call(ctx, eatInput{MiB: 200, Keep: true})
	if err != nil {
		t.Fatalf("the call that went over the soft limit must succeed: %v", err)
	}
	events.WaitForReplacement(t, pid) // recycled once sampled
	assertGone(t, pid)
	now, err := supervisor.Bind[struct{}, int](p, "pid").Call(ctx, struct{}{})
	if err != nil || now == pid {
		t.Fatalf("after recycling: pid %d (was %d), %v", now, pid, err)
	}
}
