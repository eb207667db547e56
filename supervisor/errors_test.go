package supervisor_test

import (
	"context"
	"errors"
	"testing"

	"github.com/supervise-dev/supervise/supervisor"
)

// Failures a program sorts with errors.Is, evenly: a panic has its sentinel, a result of the
// wrong type and a Put outside a queue theirs.
func TestErrorsSortByKind(t *testing.T) {
	p, _ := startPool(t, supervisor.Config{Workers: 1})
	ctx := context.Background()
	_, err := supervisor.Bind[string, int](p, "panic").Call(ctx, "boom")
	if !errors.Is(err, supervisor.ErrPanic) || errors.Is(err, supervisor.ErrWorkerDied) {
		t.Errorf("a panic: want ErrPanic, got %v", err)
	}
	if _, err := supervisor.Bind[string, int](p, "fail").Call(ctx, "no"); errors.Is(err, supervisor.ErrPanic) {
		t.Errorf("an error is no panic: %v", err)
	}
	if _, err := supervisor.Bind[int, string](p, "square").Call(ctx, 3); !errors.Is(err, supervisor.ErrResultType) {
		t.Errorf("an int result bound as a string: want ErrResultType, got %v", err)
	}
	if _, err := supervisor.Bind[int, int](p, "tree").Call(ctx, 1); !errors.Is(err, supervisor.ErrNotInQueue) {
		t.Errorf("child.Put from a task of the pool: want ErrNotInQueue, got %v", err)
	}
}

// A queue item whose handler reports (child.Report) fails with ErrQueueReport: a queue's
// results carry no reports, and they used to be dropped without a word.
func TestQueueItemReportRefused(t *testing.T) {
	p, _ := startPool(t, supervisor.Config{Workers: 1})
	q := supervisor.NewQueue[int, int](p, "report", supervisor.QueueConfig{})
	ctx := context.Background()
	if err := q.Put(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if err := q.Put(ctx, 0); err != nil { // no reports: succeeds
		t.Fatal(err)
	}
	q.Close()
	for r := range q.Results(ctx) {
		switch {
		case r.Index == 0 && !errors.Is(r.Err, supervisor.ErrQueueReport):
			t.Errorf("an item that reported: want ErrQueueReport, got %v, %v", r.Value, r.Err)
		case r.Index == 1 && (r.Err != nil || r.Value != 0):
			t.Errorf("an item without reports: %v, %v", r.Value, r.Err)
		}
	}
}
