package supervisor_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
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

// Under at-most-once (the default) no input of a chunk starts twice, whichever way chunks are
// made (Map, MapUnordered, SubmitChunk, a queue): one input exits its worker in the middle of
// a chunk, another spins past the time limit, deaf to its cancel. Each starts once and fails
// alone with its own cause; every other input starts once and succeeds. The handler records
// its starts in a file, outside the pool. (Before the fix, the inputs of a chunk that ran
// before the crash ran again: 75-378 of 20,000.)
func TestChunksStartEachInputOnce(t *testing.T) {
	const n, crash, loop = 10000, 4321, 7777
	for _, mode := range []string{"Map", "MapUnordered", "SubmitChunk", "Queue"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel() // each checks only its own pool's processes and ledger
			ledger := filepath.Join(t.TempDir(), "starts")
			// TaskTimeout is a chunk's: a margin for a loaded machine over the milliseconds a
			// chunk takes; only the spinning input comes near it.
			reg := prometheus.NewRegistry()
			p, _ := startPool(t, supervisor.Config{Workers: 2, TaskTimeout: 3 * time.Second, CancelGrace: 100 * time.Millisecond,
				Env: []string{"SUPERVISE_TEST_LEDGER=" + ledger}, Metrics: reg})
			f := supervisor.Bind[int, int](p, "startlog")
			input := func(i int) int {
				switch i {
				case crash:
					return -1
				case loop:
					return -2
				}
				return i
			}
			results := map[int]supervisor.Result[int]{}
			ctx := context.Background()
			switch mode {
			case "Map", "MapUnordered":
				m := f.Map
				if mode == "MapUnordered" {
					m = f.MapUnordered
				}
				for r := range m(ctx, func(yield func(int) bool) {
					for i := range n {
						if !yield(input(i)) {
							return
						}
					}
				}) {
					results[r.Index] = r
				}
			case "SubmitChunk":
				for start := 0; start < n; start += 500 {
					ins := make([]int, 500)
					for i := range ins {
						ins[i] = input(start + i)
					}
					for i, fut := range f.SubmitChunk(ctx, ins) {
						v, err := fut.Get(ctx)
						results[start+i] = supervisor.Result[int]{Index: start + i, Value: v, Err: err}
					}
				}
			case "Queue":
				q := supervisor.NewQueue[int, int](p, "startlog", supervisor.QueueConfig{Chunk: 64})
				for i := range n {
					if err := q.Put(ctx, input(i)); err != nil {
						t.Fatal(err)
					}
				}
				q.Close()
				for r := range q.Results(ctx) {
					results[r.Index] = r
				}
			}
			starts := readStarts(t, ledger)
			twice := 0
			for in, k := range starts {
				if k != 1 {
					twice++
					if twice <= 5 {
						t.Errorf("input %s started %d times", in, k)
					}
				}
			}
			if twice > 0 {
				t.Fatalf("%d inputs started more than once", twice)
			}
			// Stats count inputs, not chunk calls (Tasks counted some 445 calls of 10,000 inputs).
			var tasks, failed int
			for _, w := range p.Stats().Workers {
				tasks, failed = tasks+w.Tasks, failed+w.Failed
			}
			if tasks != n-2 || failed != 2 {
				t.Errorf("Stats: %d tasks with a result, %d failed; want %d and 2", tasks, failed, n-2)
			}
			// The metrics count real starts too (they counted a chunk's inputs as started
			// when the chunk was sent: 50,360 against 50,263).
			srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
			defer srv.Close()
			if got := value(t, scrape(t, srv.URL), "supervise_tasks_started_total", "handler", "startlog"); int(got) != len(starts) {
				t.Errorf("supervise_tasks_started_total %v, want %d: the starts the handler saw", got, len(starts))
			}
			if len(results) != n {
				t.Fatalf("%d results for %d inputs", len(results), n)
			}
			for i := range n {
				r := results[i]
				var te *supervisor.TaskError
				switch i {
				case crash:
					if !errors.Is(r.Err, supervisor.ErrWorkerDied) || !errors.As(r.Err, &te) || te.Attempts != 1 {
						t.Errorf("the crashing input: %v", r.Err)
					}
				case loop:
					if !errors.Is(r.Err, supervisor.ErrTimeout) || !errors.As(r.Err, &te) || te.Attempts != 1 {
						t.Errorf("the spinning input: %v", r.Err)
					}
				default:
					if r.Err != nil || r.Value != 2*i || starts[strconv.Itoa(i)] != 1 {
						t.Errorf("input %d: %d, %v, started %d times", i, r.Value, r.Err, starts[strconv.Itoa(i)])
					}
				}
			}
		})
	}
}

// Inputs that crash their workers do not break the pool: a worker that said hello and died
// under an input is not a failed start, even if it answered nothing before. Ten inputs in a
// row each exit the fresh worker they land on, first as a chunk, then alone; with the
// default restart policy (the pool breaks after 5 failed starts in a row) every one fails
// with its own worker's death, and the inputs after them succeed. (Before the fix, the fifth
// fresh worker to die broke the pool, and the rest failed with ErrPoolBroken.)
func TestCrashingInputsDoNotBreakThePool(t *testing.T) {
	p, _ := startPool(t, supervisor.Config{Workers: 1})
	f := supervisor.Bind[modelInput, int](p, "model")
	ctx := context.Background()
	var ins []modelInput
	for i := range 30 {
		in := modelInput{ID: i, Act: actOK}
		if i < 10 {
			in.Act = actCrash
		}
		ins = append(ins, in)
	}
	for i, fut := range f.SubmitChunk(ctx, ins) {
		v, err := fut.Get(ctx)
		switch {
		case i < 10:
			if !errors.Is(err, supervisor.ErrWorkerDied) {
				t.Errorf("crashing input %d: %v; want its worker's death", i, err)
			}
		case err != nil || v != i:
			t.Errorf("input %d: %v, %v", i, v, err)
		}
	}
}
