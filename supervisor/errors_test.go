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

// A queue item's error names it, and a follow-up the item that put it: the caller never saw
// the follow-up's input.
func TestQueueItemErrorNamesItem(t *testing.T) {
	p, _ := startPool(t, supervisor.Config{Workers: 1})
	q := supervisor.NewQueue[int, int](p, "tree", supervisor.QueueConfig{})
	ctx := context.Background()
	if err := q.Put(ctx, 1); err != nil { // puts two follow-ups of depth 0
		t.Fatal(err)
	}
	q.Close()
	n := 0
	for r := range q.Results(ctx) {
		n++
		if r.Err != nil {
			t.Errorf("item %d: %v", r.Index, r.Err)
		}
	}
	if n != 3 {
		t.Fatalf("%d results, want 3", n)
	}
	// A follow-up that fails: "fail" puts nothing, so fail one through a handler that does.
	q2 := supervisor.NewQueue[int, string](p, "tree", supervisor.QueueConfig{})
	if err := q2.Put(ctx, 1); err != nil {
		t.Fatal(err)
	}
	q2.Close()
	for r := range q2.Results(ctx) { // tree returns an int: decoding as string fails
		var te *supervisor.TaskError
		if !errors.As(r.Err, &te) || te.Item == nil || te.Item.Index != r.Index {
			t.Fatalf("item %d: its error does not name it: %v", r.Index, r.Err)
		}
		if want := map[bool]int{true: -1, false: 0}[r.Index == 0]; te.Item.PutBy != want {
			t.Errorf("item %d: put by %d, want %d (%v)", r.Index, te.Item.PutBy, want, r.Err)
		}
	}
}
