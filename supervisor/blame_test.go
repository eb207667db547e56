package supervisor_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/supervise-dev/supervise/internal/proctest"
	"github.com/supervise-dev/supervise/supervisor"
)

// One worker runs a call that ignores its context, with three ordinary calls queued behind it
// in the worker; the context they share is cancelled. The call that ignores it fails for it,
// and its worker is killed; the three that waited fail with plain context.Canceled, at once,
// blamed for nothing. (The watchdog used to pick any cancelled call it held as the one still
// running: in about half the runs a call that never started was failed with "the call still
// ran 500ms later: worker killed", and the culprit with ErrWorkerDied.)
func TestCancelBlamesTheRunningCall(t *testing.T) {
	p, _ := startPool(t, supervisor.Config{Workers: 1, InFlight: 4, CancelGrace: 300 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	culprit, pid, _ := blockOnWith(t, p, ctx, blockInput{Deaf: true})
	var queued []*supervisor.Future[int]
	for range 3 {
		queued = append(queued, supervisor.Bind[int, int](p, "sleep").Submit(ctx, 10))
	}
	for supervisor.Held(p) < 4 { // the three are in the worker's queue, not the pool's
		time.Sleep(time.Millisecond)
	}
	cancel()
	for i, f := range queued {
		_, err := f.Get(context.Background())
		if !errors.Is(err, context.Canceled) || errors.Is(err, supervisor.ErrWorkerDied) || strings.Contains(err.Error(), "killed") {
			t.Errorf("queued call %d: want plain context.Canceled, got %v", i, err)
		}
	}
	_, err := culprit.Get(context.Background())
	if !errors.Is(err, context.Canceled) || errors.Is(err, supervisor.ErrWorkerDied) || !strings.Contains(err.Error(), "still ran") {
		t.Errorf("the call that ignored its cancel: want context.Canceled, still ran, worker killed; got %v", err)
	}
	// Killed: SIGTERM, then SIGKILL after StopGrace (2s); the margin is for a loaded machine.
	proctest.AwaitGone(t, 10*time.Second, pid)
}

// TaskError.Attempts counts the times the handler started: a call requeued because the
// calls ahead of it crashed their workers never started there (it used to count each send),
// and a call retried on crashes counts each run.
func TestAttemptsCountStarts(t *testing.T) {
	p, _ := startPool(t, supervisor.Config{Workers: 1, InFlight: 4, Restart: supervisor.RestartPolicy{FailureThreshold: 1e6}})
	ctx := context.Background()
	chaos := supervisor.Bind[int, int](p, "chaos")
	var crashes []*supervisor.Future[int]
	for _, n := range []int{17, 34, 51} { // each crashes its worker
		crashes = append(crashes, chaos.Submit(ctx, n))
	}
	failing := chaos.Submit(ctx, 29) // an error of its own, once it runs
	_, err := failing.Get(ctx)
	var te *supervisor.TaskError
	if !errors.As(err, &te) || te.Attempts != 1 {
		t.Errorf("a call that ran once, behind three crashes: want Attempts 1, got %v", err)
	}
	for i, f := range crashes {
		if _, err := f.Get(ctx); !errors.As(err, &te) || te.Attempts != 1 {
			t.Errorf("crash %d: want Attempts 1, got %v", i, err)
		}
	}
	_, err = chaos.WithRetries(2).Call(ctx, 68)
	if !errors.As(err, &te) || te.Attempts != 3 {
		t.Errorf("a crash with 2 retries: want Attempts 3, got %v", err)
	}
}

// A running call whose context is cancelled, and whose handler gives up, fails with an error
// that is the context's (errors.Is context.Canceled) as well as the worker's: a caller, or
// run counting the lines an interrupt left undone, tells it from a failure. It used to be
// the worker's RemoteError only.
func TestCancelledCallIsCanceled(t *testing.T) {
	p, _ := startPool(t, supervisor.Config{Workers: 1})
	ctx, cancel := context.WithCancel(context.Background())
	f, _, _ := blockOnWith(t, p, ctx, blockInput{})
	cancel()
	_, err := f.Get(context.Background())
	var re *supervisor.RemoteError
	if !errors.Is(err, context.Canceled) || !errors.As(err, &re) || re.Type != "Canceled" {
		t.Fatalf("want context.Canceled and the worker's Canceled, got %v", err)
	}
}
