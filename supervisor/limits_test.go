package supervisor_test

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/supervise-dev/supervise/supervisor"
)

func TestSoftTimeLimitCancelsHandler(t *testing.T) {
	p, _ := startPool(t, supervisor.Config{Workers: 1, TaskTimeout: 100 * time.Millisecond})
	ctx := context.Background()
	pid, _ := supervisor.Bind[struct{}, int](p, "pid").Call(ctx, struct{}{})
	_, err := supervisor.Bind[int, int](p, "sleep").Call(ctx, 60_000)
	var te *supervisor.TimeoutError
	var re *supervisor.RemoteError
	if !errors.Is(err, supervisor.ErrTimeout) || !errors.As(err, &te) || te.Hard || !errors.As(err, &re) || re.Type != "Canceled" {
		t.Fatalf("a call past its soft limit, whose handler stops when cancelled: %v", err)
	}
	if now, _ := supervisor.Bind[struct{}, int](p, "pid").Call(ctx, struct{}{}); now != pid {
		t.Fatalf("the worker was replaced (%d -> %d) though its handler stopped", pid, now)
	}
}

func TestHardTimeLimitKillsWorker(t *testing.T) {
	p, _ := startPool(t, supervisor.Config{Workers: 2, TaskTimeout: 100 * time.Millisecond, CancelGrace: 200 * time.Millisecond})
	ctx := context.Background()
	deaf := supervisor.Bind[int, int](p, "deaf").Submit(ctx, 60_000)
	sleep := supervisor.Bind[int, int](p, "sleep")
	var others []*supervisor.Future[int]
	for range 20 {
		others = append(others, sleep.Submit(ctx, 5))
	}
	start := time.Now()
	_, err := deaf.Get(ctx)
	var te *supervisor.TimeoutError
	if !errors.As(err, &te) || !te.Hard || !errors.Is(err, supervisor.ErrTimeout) {
		t.Fatalf("a call that ignores its cancel: %v", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("the hard limit took %v", took)
	}
	var te2 *supervisor.TaskError
	errors.As(err, &te2)
	for i, f := range others {
		if v, err := f.Get(ctx); err != nil || v != 5 {
			t.Fatalf("call %d beside the overdue one: %v %v", i, v, err)
		}
	}
	waitForWorkers(t, p, 2)
	for _, w := range p.Workers() {
		if w.Pid == te2.Pid {
			t.Fatal("the killed worker is still listed")
		}
	}
	assertGone(t, te2.Pid)
}

func TestCancelledCallIgnoringCancelKillsWorker(t *testing.T) {
	p, _ := startPool(t, supervisor.Config{Workers: 1, CancelGrace: 100 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	f, pid, _ := blockOnWith(t, p, ctx, blockInput{Deaf: true}) // running, and deaf to its cancel
	cancel()
	_, err := f.Get(context.Background())
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "worker killed") {
		t.Fatalf("%v", err)
	}
	waitForWorkers(t, p, 1)
	assertGone(t, pid)
}

func TestHungWorkerIsReplaced(t *testing.T) {
	p, _ := startPool(t, supervisor.Config{Workers: 2, HangTimeout: 300 * time.Millisecond,
		Heartbeat: 50 * time.Millisecond, StopGrace: 100 * time.Millisecond})
	ctx := context.Background()
	blocked, pid, _ := blockOn(t, p, ctx, false)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	_, err := blocked.Get(ctx)
	var we *supervisor.WorkerError
	if !errors.Is(err, supervisor.ErrHung) || !errors.As(err, &we) || we.Pid != pid || !strings.Contains(err.Error(), "hung") {
		t.Fatalf("the stopped worker's call: %v", err)
	}
	waitForWorkers(t, p, 2)
	assertGone(t, pid)
	// The other worker kept beating: it was not taken for hung.
	if v, err := supervisor.Bind[int, int](p, "square").Call(ctx, 7); err != nil || v != 49 {
		t.Fatalf("after the hang: %v %v", v, err)
	}
}

// waitForWorkers waits until the pool lists n workers again (a replacement has started).
func waitForWorkers(t *testing.T, p *supervisor.Pool, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(p.Workers()) != n {
		if time.Now().After(deadline) {
			t.Fatalf("pool has %d workers, want %d", len(p.Workers()), n)
		}
		time.Sleep(10 * time.Millisecond) // polling: the pool has no event to wait on yet
	}
}
