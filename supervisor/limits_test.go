package supervisor_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/supervise-dev/supervise/internal/pooltest"
	"github.com/supervise-dev/supervise/supervisor"
)

func TestSoftTimeLimitCancelsHandler(t *testing.T) {
	p, _ := startPool(t, supervisor.Config{Workers: 1, TaskTimeout: 100 * time.Millisecond})
	ctx := context.Background()
	pid, _ := supervisor.Bind[struct{}, int](p, "pid").Call(ctx, struct{}{})
	_, err := supervisor.Bind[int, int](p, "sleep").Call(ctx, 60_000)
	var te *supervisor.TimeoutError
	var re *supervisor.RemoteError
	if !errors.Is(err, supervisor.ErrTimeout) || !errors.As(err, &te) || te.Hard || errors.As(err, &re) {
		t.Fatalf("a call past its limit, whose handler stops when cancelled: %v; want the limit, at the limit", err)
	}
	if now, _ := supervisor.Bind[struct{}, int](p, "pid").Call(ctx, struct{}{}); now != pid {
		t.Fatalf("the worker was replaced (%d -> %d) though its handler stopped", pid, now)
	}
}

func TestHardTimeLimitKillsWorker(t *testing.T) {
	// The limit is for every call: 2 s, which the deaf call overruns, and which the 5 ms calls
	// beside it stay well within even on a loaded machine (100 ms was not, under the race
	// suite beside stress --cpu 8: one waited that long to start).
	p, events := startPool(t, supervisor.Config{Workers: 2, TaskTimeout: 2 * time.Second, CancelGrace: 200 * time.Millisecond})
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
	if !errors.As(err, &te) || te.Hard || !errors.Is(err, supervisor.ErrTimeout) {
		t.Fatalf("a call that ignores its cancel: %v; want the limit, at the limit", err)
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
	events.WaitForReplacement(t, te2.Pid) // it was killed CancelGrace later
	events.WaitFor(t, 0, "the kill, with a hard TimeoutError", func(e supervisor.Event) bool {
		k, ok := e.(supervisor.EventWorkerKilled)
		return ok && k.Pid == te2.Pid && errors.As(k.Err, &te) && te.Hard
	})
	assertGone(t, te2.Pid)
	events.WaitFor(t, 0, "worker killed for a time limit", func(e supervisor.Event) bool {
		k, ok := e.(supervisor.EventWorkerKilled)
		return ok && k.Pid == te2.Pid && errors.As(k.Err, &te) && strings.Contains(k.String(), "after its cancel")
	})
}

func TestCancelledCallIgnoringCancelKillsWorker(t *testing.T) {
	p, events := startPool(t, supervisor.Config{Workers: 1, CancelGrace: 100 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	f, pid, _ := blockOnWith(t, p, ctx, blockInput{Deaf: true}) // running, and deaf to its cancel
	cancel()
	_, err := f.Get(context.Background())
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "worker killed") {
		t.Fatalf("%v", err)
	}
	events.WaitForReplacement(t, pid)
	assertGone(t, pid)
}

func TestHungWorkerIsReplaced(t *testing.T) {
	p, events := startPool(t, supervisor.Config{Workers: 2, HangTimeout: 300 * time.Millisecond,
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
	events.WaitForReplacement(t, pid)
	assertGone(t, pid)
	// The other worker kept beating: it was not taken for hung.
	if v, err := supervisor.Bind[int, int](p, "square").Call(ctx, 7); err != nil || v != 49 {
		t.Fatalf("after the hang: %v %v", v, err)
	}
}

func TestMaxTasksPerWorkerRecycles(t *testing.T) {
	p, _ := startPool(t, supervisor.Config{Workers: 1, MaxTasksPerWorker: 3})
	ctx := context.Background()
	uses := map[int]int{}
	var pids []int
	for range 10 {
		pid, err := supervisor.Bind[struct{}, int](p, "pid").Call(ctx, struct{}{})
		if err != nil {
			t.Fatal(err)
		}
		if uses[pid] == 0 {
			pids = append(pids, pid)
		}
		uses[pid]++
	}
	if len(pids) != 4 {
		t.Fatalf("10 calls, 3 per worker, ran on %d workers: %v", len(pids), uses)
	}
	for pid, n := range uses {
		if n > 3 {
			t.Fatalf("worker %d ran %d calls", pid, n)
		}
	}
	p.Close()
	assertGone(t, pids...)
}

func TestRetriesOnlyWhenAskedFor(t *testing.T) {
	p, events := startPool(t, supervisor.Config{Workers: 2})
	ctx := context.Background()
	crash := supervisor.Bind[string, string](p, "crashonce")

	_, err := crash.Call(ctx, filepath.Join(t.TempDir(), "marker"))
	var we *supervisor.WorkerError
	if !errors.As(err, &we) || !strings.Contains(err.Error(), "exit status 3") {
		t.Fatalf("without retries, a crash is the call's outcome: %v", err)
	}

	v, err := crash.WithRetries(1).Call(ctx, filepath.Join(t.TempDir(), "marker"))
	if err != nil || v != "ok" {
		t.Fatalf("with one retry: %q %v", v, err)
	}
	if n := pooltest.Count[supervisor.EventTaskRetried](events); n != 1 {
		t.Fatalf("%d retry events, want 1: %v", n, events.Events())
	}

	_, err = supervisor.Bind[string, int](p, "fail").WithRetries(3).Call(ctx, "deterministic")
	var te *supervisor.TaskError
	if !errors.As(err, &te) || te.Attempts != 1 {
		t.Fatalf("a handler's error is not retried: %v", err)
	}
}
