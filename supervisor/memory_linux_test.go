package supervisor_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/supervise-dev/supervise/supervisor"
)

func TestMemoryHardLimitKillsWorker(t *testing.T) {
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
