package supervisor_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/supervise-dev/supervise/supervisor"
)

// Join waits for the follow-ups that handlers put, and every item's outcome comes out once.
func TestQueueJoinWaitsForFollowUps(t *testing.T) {
	p, _ := startPool(t, supervisor.Config{Workers: 3})
	ctx := context.Background()
	q := supervisor.NewQueue[int, int](p, "tree", supervisor.QueueConfig{})
	if err := q.Put(ctx, 6); err != nil {
		t.Fatal(err)
	}
	if err := q.Join(ctx); err != nil {
		t.Fatal(err)
	}
	q.Close()
	seen := map[int]int{}
	depths := map[int]int{}
	for r := range q.Results(ctx) {
		if r.Err != nil {
			t.Fatalf("item %d: %v", r.Index, r.Err)
		}
		seen[r.Index]++
		depths[r.Value]++
	}
	if len(seen) != 127 {
		t.Fatalf("%d items done, want 2^7-1 = 127", len(seen))
	}
	for i, n := range seen {
		if n != 1 || i < 0 || i >= 127 {
			t.Fatalf("item %d yielded %d times", i, n)
		}
	}
	for d := range 7 {
		if depths[d] != 1<<(6-d) {
			t.Fatalf("%d items of depth %d, want %d", depths[d], d, 1<<(6-d))
		}
	}
	if err := q.Put(ctx, 1); !errors.Is(err, supervisor.ErrQueueClosed) {
		t.Fatalf("Put after Close: %v", err)
	}
}

// A bounded queue's Put blocks while it is full and goes on once an item is done.
func TestQueueBoundedPutBlocks(t *testing.T) {
	p, _ := startPool(t, supervisor.Config{Workers: 1})
	ctx := context.Background()
	q := supervisor.NewQueue[int, int](p, "sleep", supervisor.QueueConfig{Capacity: 2})
	for range 2 {
		if err := q.Put(ctx, 300); err != nil {
			t.Fatal(err)
		}
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := q.Put(short, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Put on a full queue: %v, want it to block until its context ends", err)
	}
	if err := q.Put(ctx, 1); err != nil { // resumes once the first item is done
		t.Fatal(err)
	}
	q.Close()
	n := 0
	for r := range q.Results(ctx) {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		n++
	}
	if n != 3 {
		t.Fatalf("%d results, want 3", n)
	}
}

// Items of several MiB each go through without a pipe-buffer deadlock.
func TestQueueLargeItems(t *testing.T) {
	p, _ := startPool(t, supervisor.Config{Workers: 2})
	ctx := context.Background()
	q := supervisor.NewQueue[[]byte, []byte](p, "echo", supervisor.QueueConfig{Capacity: 4})
	items := make([][]byte, 12)
	go func() {
		for i := range items {
			items[i] = bytes.Repeat([]byte{byte(i)}, 5<<20)
			if err := q.Put(ctx, items[i]); err != nil {
				panic(err)
			}
		}
		q.Close()
	}()
	n := 0
	for r := range q.Results(ctx) {
		if r.Err != nil || len(r.Value) != 5<<20 || r.Value[0] != byte(r.Index) || r.Value[len(r.Value)-1] != byte(r.Index) {
			t.Fatalf("item %d: %d bytes, %v", r.Index, len(r.Value), r.Err)
		}
		n++
	}
	if n != len(items) {
		t.Fatalf("%d results, want %d", n, len(items))
	}
}

// With ManualDone, Join waits for the caller's TaskDone, not for the handlers.
func TestQueueManualDone(t *testing.T) {
	p, _ := startPool(t, supervisor.Config{Workers: 2})
	ctx := context.Background()
	q := supervisor.NewQueue[int, int](p, "square", supervisor.QueueConfig{ManualDone: true})
	for i := range 3 {
		if err := q.Put(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	got := 0
	for r := range q.Results(ctx) {
		if r.Err != nil || r.Value != r.Index*r.Index {
			t.Fatalf("item %d: %v %v", r.Index, r.Value, r.Err)
		}
		if got++; got == 3 {
			break
		}
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := q.Join(short); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "3 items not done") {
		t.Fatalf("Join before TaskDone: %v", err)
	}
	for range 3 {
		if err := q.TaskDone(); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.Join(ctx); err != nil {
		t.Fatal(err)
	}
	if err := q.TaskDone(); err == nil {
		t.Fatal("a fourth TaskDone for three items must fail")
	}
}

// A handler's reports reach its caller in order, before the result.
func TestReportsInOrder(t *testing.T) {
	p, _ := startPool(t, supervisor.Config{Workers: 1})
	ctx := context.Background()
	f := supervisor.Bind[int, int](p, "report").Submit(ctx, 500)
	want := 0
	for r := range f.Reports(ctx) {
		var i int
		if err := r.Decode(&i); err != nil || i != want {
			t.Fatalf("report %d: %d %v", want, i, err)
		}
		want++
	}
	if want != 500 {
		t.Fatalf("%d reports, want 500", want)
	}
	if v, err := f.Get(ctx); err != nil || v != 500 {
		t.Fatalf("result: %v %v", v, err)
	}
}

// child.Put in a task that came from no queue fails that task.
func TestPutOutsideQueueFailsTask(t *testing.T) {
	p, _ := startPool(t, supervisor.Config{Workers: 1})
	_, err := supervisor.Bind[int, int](p, "tree").Call(context.Background(), 1)
	if err == nil || !strings.Contains(err.Error(), "did not come from a queue") {
		t.Fatalf("%v", err)
	}
}

// Broadcast runs once on every worker; a worker that dies running it gives an error, and the
// others are not affected.
func TestBroadcast(t *testing.T) {
	p, events := startPool(t, supervisor.Config{Workers: 3, InFlight: 1})
	ctx := context.Background()
	rs := supervisor.Bind[struct{}, int](p, "pid").Broadcast(ctx, struct{}{})
	var pids []int
	for _, r := range rs {
		if r.Err != nil || r.Value != r.Pid {
			t.Fatalf("worker %d: %v %v", r.WorkerID, r.Value, r.Err)
		}
		pids = append(pids, r.Pid)
	}
	slices.Sort(pids)
	if len(slices.Compact(pids)) != 3 {
		t.Fatalf("broadcast reached %v, want 3 distinct workers", pids)
	}

	// The first worker dies while running the broadcast: its result is an error, the others
	// answer, and it is replaced.
	pid := pids[0]
	rs = supervisor.Bind[int, int](p, "crashpid").Broadcast(ctx, pid)
	ok := 0
	for _, r := range rs {
		switch {
		case r.Pid == pid:
			if !errors.Is(r.Err, supervisor.ErrWorkerDied) {
				t.Fatalf("the killed worker's broadcast call: %v", r.Err)
			}
		case r.Err != nil || r.Value != r.Pid:
			t.Fatalf("worker %d: %v %v", r.WorkerID, r.Value, r.Err)
		default:
			ok++
		}
	}
	if ok != 2 || len(rs) != 3 {
		t.Fatalf("%d of %d workers answered the broadcast, want 2 of 3: %+v", ok, len(rs), rs)
	}
	events.WaitForReplacement(t, pid)
}

// Config.Init runs on every worker, replacements included, before any task.
func TestInitRunsOnEveryWorker(t *testing.T) {
	p, events := startPool(t, supervisor.Config{Workers: 2, Init: supervisor.Init{Handler: "init", Input: "warm"}})
	ctx := context.Background()
	check := func() {
		for _, r := range supervisor.Bind[struct{}, string](p, "initialized").Broadcast(ctx, struct{}{}) {
			if r.Err != nil || r.Value != "warm" {
				t.Fatalf("worker %d: %q %v", r.WorkerID, r.Value, r.Err)
			}
		}
	}
	check()
	pid := p.Workers()[0].Pid
	syscall.Kill(pid, syscall.SIGKILL)
	events.WaitForReplacement(t, pid)
	check()

	_, err := supervisor.Start(ctx, supervisor.Config{Workers: 1, Init: supervisor.Init{Handler: "init", Input: "refuse"}})
	var se *supervisor.StartError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "init refused") {
		t.Fatalf("a pool whose Init fails: %v", err)
	}
}

// A queue item whose handler puts more follow-ups than QueueConfig.MaxFollowUps fails with
// ErrFollowUpOverflow and its worker is killed (it could go on putting until the parent's
// memory ran out); the follow-ups it put before run, and every item ends once.
func TestQueueFollowUpsBounded(t *testing.T) {
	p, events := startPool(t, supervisor.Config{Workers: 1})
	ctx := context.Background()
	q := supervisor.NewQueue[int, int](p, "fanout", supervisor.QueueConfig{MaxFollowUps: 100})
	first := p.Workers()[0].Pid
	if err := q.Put(ctx, 5); err != nil { // within the bound
		t.Fatal(err)
	}
	if err := q.Put(ctx, 1_000_000); err != nil {
		t.Fatal(err)
	}
	if err := q.Join(ctx); err != nil {
		t.Fatal(err)
	}
	q.Close()
	ended, overflows := 0, 0
	for r := range q.Results(ctx) {
		ended++
		var oe *supervisor.FollowUpOverflowError
		switch {
		case r.Index == 1:
			if !errors.Is(r.Err, supervisor.ErrFollowUpOverflow) || !errors.As(r.Err, &oe) || oe.Limit != 100 {
				t.Errorf("the item that put a million: %v", r.Err)
			}
			overflows++
		case r.Err != nil:
			t.Errorf("item %d: %v", r.Index, r.Err)
		}
	}
	if want := 2 + 5 + 100; ended != want || overflows != 1 {
		t.Errorf("%d items ended (%d overflows), want %d: 2 put, 5 and 100 follow-ups", ended, overflows, want)
	}
	if got := p.Stats().Failures; got["follow-ups"] != 1 {
		t.Errorf("Stats().Failures = %v, want one follow-ups", got)
	}
	events.WaitForReplacement(t, first)
}
