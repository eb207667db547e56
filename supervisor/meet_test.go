package supervisor_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/supervise-dev/supervise/supervisor"
)

// Where features meet (issue 36): each test here combines two features that hold alone.

// A callback may call back into the pool: OnDone of a task whose context ended while it
// waited in the backlog runs Stats, which needs the worker's lock; the sender that fails the
// task must not hold that lock while the callback runs.
func TestOnDoneMayCallThePool(t *testing.T) {
	p, _ := startPool(t, supervisor.Config{Workers: 1, InFlight: 1})
	ctx := context.Background()
	// The worker is busy for a moment, so the next task waits in the backlog.
	busy, _, _ := blockOnWith(t, p, ctx, blockInput{Finish: 50 * time.Millisecond})
	waiting, cancel := context.WithCancel(ctx)
	f := supervisor.Bind[int, int](p, "square").Submit(waiting, 3)
	called := make(chan supervisor.Stats, 1)
	f.OnDone(func() { called <- p.Stats() })
	cancel()
	if _, err := busy.Get(ctx); err != nil {
		t.Fatal(err)
	}
	// 30 s: far past any scheduling delay; a deadlock never ends.
	deadline, stop := context.WithTimeout(ctx, 30*time.Second)
	defer stop()
	select {
	case <-called:
	case <-deadline.Done():
		t.Fatal("OnDone's call to Stats never returned: the pool deadlocked")
	}
	if _, err := f.Get(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("the cancelled task: %v", err)
	}
	if v, err := supervisor.Bind[int, int](p, "square").Call(deadline, 4); err != nil || v != 16 {
		t.Fatalf("a call after the callback: %v %v", v, err)
	}
}
