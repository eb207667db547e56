package supervisor_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/supervise-dev/supervise/supervisor"
)

// gatedQueue is a queue for queuepoison on a pool of two workers. hold puts a gate item for
// each worker (with put) and returns once both run; until release, the workers take nothing
// else, and the items put meanwhile gather in chunks.
func gatedQueue(t *testing.T, chunk int) (p *supervisor.Pool, q *supervisor.Queue[int, int], hold func(put func(int)) (release func())) {
	t.Helper()
	gate := filepath.Join(t.TempDir(), "gate")
	for _, g := range []string{".3", ".4"} {
		if err := syscall.Mkfifo(gate+g, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// InFlight 1: a worker holding its gate item takes nothing else. The time limit is a
	// margin for a loaded machine: only the looping item comes near it. (At 2 s, beside
	// stress --cpu 8 and the whole suite, an item of microseconds once took longer.)
	p, _ = startPool(t, supervisor.Config{Workers: 2, InFlight: 1, TaskTimeout: 5 * time.Second, CancelGrace: 200 * time.Millisecond,
		Restart: supervisor.RestartPolicy{FailureThreshold: 1000}, Env: []string{"SUPERVISE_TEST_GATE=" + gate}})
	q = supervisor.NewQueue[int, int](p, "queuepoison", supervisor.QueueConfig{Chunk: chunk})
	hold = func(put func(int)) func() {
		var held []*os.File
		for _, g := range []int{3, 4} {
			put(-g)
			f, err := os.OpenFile(fmt.Sprintf("%s.%d", gate, g), os.O_WRONLY, 0) // returns once its gate item runs
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, f)
		}
		return func() {
			for _, f := range held {
				f.Close()
			}
		}
	}
	return p, q, hold
}

// A queue's items gather in chunks while the workers are busy. 10,000 items, one of which
// crashes its worker and one of which loops past the time limit, and every tenth of which
// puts a follow-up: exactly the two fail, each alone with its own cause; every follow-up is
// put once (none twice, though the chunks that died had put some before), charged to the item
// that put it; Join waits for all of them; every item ends once.
func TestQueueChunksIsolatePoison(t *testing.T) {
	const n, crash, loop = 10000, 4321, 7777
	for _, tc := range []struct {
		name  string
		chunk int
	}{{"chunks of 64", 64}, {"automatic", 0}} {
		t.Run(tc.name, func(t *testing.T) {
			p, q, hold := gatedQueue(t, tc.chunk)
			ctx := context.Background()
			inputs := []int{}
			put := func(x int) {
				if err := q.Put(ctx, x); err != nil {
					t.Fatal(err)
				}
				inputs = append(inputs, x)
			}
			if tc.chunk == 0 { // the automatic size needs a measure of the handler first
				for x := range 100 {
					put(100000 + x)
				}
				if err := q.Join(ctx); err != nil {
					t.Fatal(err)
				}
			}
			release := hold(put)
			for x := range n {
				switch x {
				case crash:
					x = -1
				case loop:
					x = -2
				}
				put(x)
			}
			release()
			jctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			defer cancel()
			if err := q.Join(jctx); err != nil {
				t.Fatal(err)
			}
			q.Close()
			checkPoisonQueue(t, q, inputs)
			calls := 0
			for _, w := range p.Stats().Workers {
				calls += w.Calls
			}
			// Chunks of 64 make some 160 calls of the 10,000 items, plus the follow-ups and the
			// items of the two chunks that died, sent alone. The automatic size depends on how
			// long the first 100 items took as the pool saw them: on a loaded machine, 2 ms or
			// more, and then items go one per call (TestQueueSizerLearnsFromItems checks the
			// sizing itself).
			if tc.chunk > 0 && calls >= n/4 {
				t.Errorf("%d calls answered for %d items: they did not go in chunks", calls, len(inputs))
			}
			t.Logf("%d items in %d calls answered", len(inputs)+len(inputs)/10, calls)
		})
	}
}

// checkPoisonQueue drains q's results and checks them against the inputs put, as
// TestQueueChunksIsolatePoison says.
func checkPoisonQueue(t *testing.T, q *supervisor.Queue[int, int], inputs []int) {
	t.Helper()
	byIndex := map[int]supervisor.Result[int]{}
	for r := range q.Results(context.Background()) {
		if _, dup := byIndex[r.Index]; dup {
			t.Fatalf("item %d ended twice", r.Index)
		}
		byIndex[r.Index] = r
	}
	doubled := map[int]int{} // input -> the index of the item that had it, from its result
	putBy := map[int]int{}   // input whose follow-up failed -> the index its error blames
	for i, r := range byIndex {
		var te *supervisor.TaskError
		var m int
		switch {
		case r.Err == nil:
			doubled[r.Value/2] = i
		case errors.Is(r.Err, supervisor.ErrWorkerDied):
			if !errors.As(r.Err, &te) || te.Attempts != 1 || te.Pid == 0 || te.Item == nil || te.Item.PutBy != -1 {
				t.Errorf("a crash: %v; want the crashing item, started once, put by the caller", r.Err)
			}
			m = -1
		case errors.Is(r.Err, supervisor.ErrTimeout):
			if !errors.As(r.Err, &te) || te.Attempts != 1 {
				t.Errorf("a timeout: %v; want the looping item, started once", r.Err)
			}
			m = -2
		case errors.As(r.Err, &te) && te.Item != nil:
			if te.WorkerID == 0 || te.Pid == 0 {
				t.Errorf("item %d's error names no worker: %v", i, r.Err)
			}
			if _, err := fmt.Sscanf(te.Err.Error(), "follow-up of %d", &m); err == nil {
				if _, dup := putBy[m]; dup {
					t.Errorf("the follow-up of %d was put twice", m)
				}
				putBy[m] = te.Item.PutBy
				continue
			}
			if te.Err.Error() != "gate" {
				t.Errorf("item %d: %v", i, r.Err)
			}
			continue
		default:
			t.Errorf("item %d: %v", i, r.Err)
		}
		if m < 0 {
			if _, dup := putBy[m]; dup {
				t.Errorf("item %d: %v; another item failed so, but only the poison item %d should", i, r.Err, m)
			}
			putBy[m] = -1
		}
	}
	follows := 0
	for _, x := range inputs {
		switch {
		case x == -1 || x == -2:
			if putBy[x] != -1 {
				t.Errorf("the poison item %d did not fail with its cause", x)
			}
		case x >= 0:
			if _, ok := doubled[x]; !ok {
				t.Errorf("item %d did not succeed", x)
			}
			if x%10 != 0 {
				continue
			}
			follows++
			if by, ok := putBy[x]; !ok || by != doubled[x] {
				t.Errorf("the follow-up of %d (item %d): blamed on item %d (found: %v)", x, doubled[x], by, ok)
			}
		}
	}
	if want := len(inputs) + follows; len(byIndex) != want {
		t.Errorf("%d items ended, want %d: %d put, %d follow-ups", len(byIndex), want, len(inputs), follows)
	}
}

// An item of a queue's chunk that reports (child.Report) fails alone with ErrQueueReport, as
// it does in a call of its own; its chunk-mates succeed. The chunk's reports were kept for no
// reader, and the item succeeded.
func TestQueueChunkReportRefused(t *testing.T) {
	_, q, hold := gatedQueue(t, 64)
	ctx := context.Background()
	put := func(x int) {
		if err := q.Put(ctx, x); err != nil {
			t.Fatal(err)
		}
	}
	release := hold(put)
	for x := range 100 {
		if x == 50 {
			x = -5
		}
		put(x)
	}
	release()
	q.Close()
	ended, refused := 0, 0
	for r := range q.Results(ctx) {
		ended++
		var te *supervisor.TaskError
		switch {
		case errors.Is(r.Err, supervisor.ErrQueueReport):
			refused++
			if !errors.As(r.Err, &te) || te.ChunkInput != 0 {
				t.Errorf("the reporting item: %v; want it failed in a call of its own", r.Err)
			}
		case r.Err != nil && !strings.HasSuffix(r.Err.Error(), ": gate") && !strings.Contains(r.Err.Error(), ": follow-up of "):
			t.Errorf("item %d: %v", r.Index, r.Err)
		case r.Err == nil && r.Value%2 != 0:
			t.Errorf("item %d: %d", r.Index, r.Value)
		}
	}
	if refused != 1 {
		t.Errorf("%d items failed with ErrQueueReport, want the one that reported", refused)
	}
	if ended != 102+9 { // 100 items, 2 gates, 9 follow-ups of the multiples of 10 (50 is -5)
		t.Errorf("%d items ended, want 111", ended)
	}
}
