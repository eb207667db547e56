package supervisor_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/supervise-dev/supervise/internal/pooltest"
	"github.com/supervise-dev/supervise/supervisor"
)

// Time limits on an injected clock: a call is cancelled, and fails, at TaskTimeout exactly, not
// a nanosecond before, whether its handler stops or not; the worker of one that goes on is
// killed at TaskTimeout + CancelGrace exactly, however slow the machine (real time plays no
// part but for the worker's answers).
func TestTimeLimitsOnInjectedClock(t *testing.T) {
	const limit, grace = 10 * time.Second, 5 * time.Second
	clock := supervisor.NewFakeClock()
	cfg := supervisor.Config{Workers: 1, TaskTimeout: limit, CancelGrace: grace, HangTimeout: time.Hour, StopGrace: time.Second}
	events := pooltest.Attach(&cfg)
	ctx := context.Background()
	p, looks, err := supervisor.StartOnClock(ctx, cfg, clock)
	if err != nil {
		t.Fatal(err)
	}
	first := p.Workers()[0].Pid
	t.Cleanup(func() {
		p.Close()
		assertGone(t, first)
	})
	// advance moves the clock by d and returns once the watchdog has looked at the new time.
	advance := func(d time.Duration) {
		t.Helper()
		clock.Advance(d)
		want := clock.Now()
		for now := range looks {
			if !now.Before(want) {
				return
			}
		}
	}
	// block submits a call that blocks (deaf: ignoring its cancel) and returns once its
	// handler runs: the worker, and the pool's ledger, count it running from now on the clock.
	block := func(deaf bool) *supervisor.Future[int] {
		t.Helper()
		fifo := filepath.Join(t.TempDir(), "running")
		if err := syscall.Mkfifo(fifo, 0o600); err != nil {
			t.Fatal(err)
		}
		f := supervisor.Bind[blockInput, int](p, "block").Submit(ctx, blockInput{FIFO: fifo, Deaf: deaf})
		if _, err := os.ReadFile(fifo); err != nil { // until the handler has written to it
			t.Fatal(err)
		}
		return f
	}
	pending := func(f interface{ Done() <-chan struct{} }, what string) {
		t.Helper()
		select {
		case <-f.Done():
			t.Fatalf("%s: ended early", what)
		default:
		}
	}

	// A handler that stops when cancelled: a soft time limit.
	sleep := block(false)
	advance(limit - time.Nanosecond)
	pending(sleep, "a call 1 ns short of its time limit")
	advance(time.Nanosecond)
	_, err = sleep.Get(ctx)
	var te *supervisor.TimeoutError
	if !errors.As(err, &te) || te.Hard {
		t.Fatalf("a call cancelled at its limit, that stopped: %v", err)
	}

	// Its answer to the cancel comes after its future ended: a call behind it waits for that,
	// so that the next call counts as running from when it is sent.
	if _, err := supervisor.Bind[int, int](p, "sleep").Call(ctx, 0); err != nil {
		t.Fatal(err)
	}

	// A handler that ignores its cancel: its call still fails at its limit, and never
	// succeeds after it; CancelGrace later, the hard limit kills its worker.
	deaf := block(true)
	advance(limit - time.Nanosecond)
	pending(deaf, "a deaf call 1 ns short of its time limit")
	advance(time.Nanosecond)
	select {
	case <-deaf.Done():
	default:
		t.Fatal("a deaf call at its limit did not fail when the watchdog looked")
	}
	if _, err = deaf.Get(ctx); !errors.As(err, &te) || te.Hard {
		t.Fatalf("a call that ignores its cancel, at its limit: %v", err)
	}
	advance(grace - time.Nanosecond)
	if n := pooltest.Count[supervisor.EventWorkerKilled](events); n != 0 {
		t.Fatalf("the worker was killed 1 ns short of its call's grace")
	}
	advance(time.Nanosecond)
	if n := pooltest.Count[supervisor.EventWorkerKilled](events); n != 1 { // the look that killed it came before
		t.Fatalf("%d kills once the call's grace ran out, want 1", n)
	}
	// The pool goes on with a new worker.
	if v, err := supervisor.Bind[int, int](p, "sleep").Call(ctx, 1); err != nil || v != 1 {
		t.Fatalf("the next call: %v %v", v, err)
	}
	if now := p.Workers()[0].Pid; now == first {
		t.Fatalf("the worker (pid %d) was not replaced", first)
	}
}
