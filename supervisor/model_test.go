package supervisor_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/supervise-dev/supervise/internal/pooltest"
	"github.com/supervise-dev/supervise/supervisor"
)

// The model test: from a seed, a run that mixes what users mix (Map chunked and not,
// MapUnordered, Submit with cancels and deadlines, SubmitChunk, queues whose items put
// follow-ups, crashes, handlers deaf past their time limit, retries 0 and N, MaxTasksPerWorker
// recycling, Close in the middle, callbacks that call back into the pool), checked against
// a ledger of handler starts that the handler writes outside the pool:
//   - every task ends exactly once, within a bound (nothing blocks);
//   - no input starts twice under at-most-once, nor more than 1+N times with N retries;
//   - each error is a *TaskError whose cause is the input's own (its crash, its time limit, its
//     failure), the caller's cancel, or the pool's end;
//   - no worker process is left.
//
// It runs seeds for SUPERVISE_MODEL_TIME (default 20s; 5s with -short); a failure prints its
// seed, and SUPERVISE_MODEL_SEED=N replays that one seed.

type modelInput struct {
	ID  int
	Act string
	Ms  int
}

const (
	actOK    = "ok"
	actCrash = "crash" // exits its worker
	actSpin  = "spin"  // deaf to its cancel, past the time limit, until its worker is killed
	actFail  = "fail"  // returns an error
	actSleep = "sleep" // Ms milliseconds, or until cancelled
	actPut   = "put"   // puts a follow-up (-ID, ok) in a queue
)

func TestModel(t *testing.T) {
	pooltest.Seeds(t, 20*time.Second, 5*time.Second, "go test -run 'TestModel$' ./supervisor", runModel)
}

// modelRun is one run's plan and what it saw.
type modelRun struct {
	t       *testing.T
	rng     *rand.Rand
	p       *supervisor.Pool
	retries int
	closeAt time.Duration // Close the pool this long after the start; 0: not in the middle

	mu        sync.Mutex
	inputs    map[int]modelInput // by ID: every input submitted by the caller
	ends      map[int]int        // by ID: outcomes seen
	errs      map[int]error
	cancelled map[int]bool // its context was cancelled (or had a deadline)
	queued    map[int]bool // it was put in a queue
	nextID    int
}

func runModel(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	ledger := filepath.Join(t.TempDir(), "starts")
	cfg := supervisor.Config{
		Workers:       1 + rng.IntN(3),
		InFlight:      []int{1, 4, 32}[rng.IntN(3)],
		TaskTimeout:   2 * time.Second, // far past every handler but spin: a margin for a loaded machine
		CancelGrace:   100 * time.Millisecond,
		StopGrace:     time.Second,
		HangTimeout:   time.Minute,
		Env:           []string{"SUPERVISE_TEST_LEDGER=" + ledger},
		Restart:       supervisor.RestartPolicy{FailureThreshold: 1e6},
		StatsInterval: 10 * time.Millisecond,
	}
	if rng.IntN(3) == 0 {
		cfg.MaxTasksPerWorker = 20 + rng.IntN(200)
	}
	events := pooltest.Attach(&cfg)
	p, err := supervisor.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := &modelRun{t: t, rng: rng, p: p, inputs: map[int]modelInput{}, ends: map[int]int{}, errs: map[int]error{},
		cancelled: map[int]bool{}, queued: map[int]bool{}, nextID: 1}
	if rng.IntN(2) == 0 {
		m.retries = 1 + rng.IntN(2)
	}
	if rng.IntN(4) == 0 {
		m.closeAt = time.Duration(50+rng.IntN(400)) * time.Millisecond
	}
	t.Logf("seed %d: %d workers, InFlight %d, MaxTasksPerWorker %d, retries %d, close at %v",
		seed, cfg.Workers, cfg.InFlight, cfg.MaxTasksPerWorker, m.retries, m.closeAt)

	// The clients, each with its own random plan (drawn here, so that the seed decides it).
	var plans []func()
	for range 1 + rng.IntN(4) {
		plans = append(plans, m.plan())
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		if m.closeAt > 0 {
			wg.Go(func() {
				time.Sleep(m.closeAt) // the point is a Close at an arbitrary moment
				p.Close()
			})
		}
		for _, run := range plans {
			wg.Go(run)
		}
		wg.Wait()
		p.Close()
	}()
	// Nothing may block: a run of at most a few thousand short tasks and a few 2 s time
	// limits ends in seconds; two minutes is a margin for a loaded machine, not a figure.
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		t.Fatalf("seed %d: the run did not end in 2 minutes; goroutines:\n%s", seed, buf)
	}
	m.check(readStartsIfAny(t, ledger))
	assertGone(t, events.Pids()...)
}

// plan draws one client's work and returns the function that does it.
func (m *modelRun) plan() func() {
	n := 1 + m.rng.IntN(400)
	ins := make([]modelInput, n)
	for i := range ins {
		ins[i] = m.input()
	}
	f := supervisor.Bind[modelInput, int](m.p, "model")
	if m.retries > 0 {
		f = f.WithRetries(m.retries)
	}
	switch m.rng.IntN(5) {
	case 0, 1: // Map or MapUnordered, chunked automatically, one per call or a fixed size
		f = f.WithChunk([]int{0, 1, 16}[m.rng.IntN(3)])
		unordered := m.rng.IntN(2) == 0
		stats := m.rng.IntN(2) == 0
		return func() {
			run := f.Map
			if unordered {
				run = f.MapUnordered
			}
			for r := range run(context.Background(), func(yield func(modelInput) bool) {
				for _, in := range ins {
					if !yield(in) {
						return
					}
				}
			}) {
				if stats {
					m.p.Stats() // the loop's body calls back into the pool
				}
				m.end(ins[r.Index].ID, r.Value, r.Err)
			}
		}
	case 2: // Submit, some with a cancel or a deadline, each future's callback calling the pool
		cancels := make([]time.Duration, n)
		for i := range cancels {
			if m.rng.IntN(5) == 0 {
				cancels[i] = time.Duration(1+m.rng.IntN(50)) * time.Millisecond
				m.cancelled[ins[i].ID] = true
			}
		}
		return func() {
			var wg sync.WaitGroup
			for i, in := range ins {
				ctx, cancel := context.Background(), context.CancelFunc(func() {})
				if cancels[i] > 0 {
					if i%2 == 0 {
						ctx, cancel = context.WithTimeout(ctx, cancels[i])
					} else {
						ctx, cancel = context.WithCancel(ctx)
						time.AfterFunc(cancels[i], cancel)
					}
				}
				fut := f.Submit(ctx, in)
				called := make(chan struct{})
				fut.OnDone(func() {
					m.p.Stats() // a callback that calls back into the pool
					m.p.Workers()
					close(called)
				})
				wg.Go(func() {
					defer cancel()
					v, err := fut.Get(context.Background())
					<-called
					m.end(in.ID, v, err)
				})
			}
			wg.Wait()
		}
	case 3: // SubmitChunk, as supervise run sends lines
		return func() {
			for start := 0; start < n; start += 64 {
				part := ins[start:min(n, start+64)]
				for i, fut := range f.SubmitChunk(context.Background(), part) {
					v, err := fut.Get(context.Background())
					m.end(part[i].ID, v, err)
				}
			}
		}
	default: // a queue, chunked or not, whose items may put follow-ups
		chunk := []int{0, 1, 32}[m.rng.IntN(3)]
		for _, in := range ins {
			m.queued[in.ID] = true
		}
		return func() {
			q := supervisor.NewQueue[modelInput, int](m.p, "model", supervisor.QueueConfig{Chunk: chunk, Retries: m.retries})
			var put []int // the IDs put, in order
			for i, in := range ins {
				if err := q.Put(context.Background(), in); err != nil {
					// The pool closed: this item and those after it were never put.
					for _, left := range ins[i:] {
						m.end(left.ID, 0, fmt.Errorf("never put: %w", supervisor.ErrPoolClosed))
					}
					break
				}
				put = append(put, in.ID)
			}
			q.Close()
			// Follow-ups take their indices between the caller's items: the caller's items,
			// sorted by index, are in the order put.
			var items []supervisor.Result[int]
			for r := range q.Results(context.Background()) {
				var te *supervisor.TaskError
				if r.Err == nil && r.Value < 0 || errors.As(r.Err, &te) && te.Item != nil && te.Item.PutBy >= 0 {
					m.followUp(r)
					continue
				}
				items = append(items, r)
			}
			slices.SortFunc(items, func(a, b supervisor.Result[int]) int { return a.Index - b.Index })
			if len(items) != len(put) {
				m.t.Errorf("a queue of %d items gave %d results", len(put), len(items))
			}
			for i, r := range items[:min(len(items), len(put))] {
				m.end(put[i], r.Value, r.Err)
			}
		}
	}
}

// input draws one input; mostly ok, a few of every fault.
func (m *modelRun) input() modelInput {
	m.mu.Lock()
	defer m.mu.Unlock()
	in := modelInput{ID: m.nextID, Act: actOK}
	m.nextID++
	switch r := m.rng.IntN(1000); {
	case r < 8:
		in.Act = actCrash
	case r < 10:
		in.Act = actSpin
	case r < 40:
		in.Act = actFail
	case r < 80:
		in.Act, in.Ms = actSleep, m.rng.IntN(20)
	case r < 160:
		in.Act = actPut
	}
	m.inputs[in.ID] = in
	return in
}

func (m *modelRun) end(id, v int, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ends[id]++
	if err != nil {
		m.errs[id] = err
	} else if v != id {
		m.t.Errorf("input %d returned %d", id, v)
	}
}

// followUp checks the outcome of a follow-up an item put: ok, or the pool's end.
func (m *modelRun) followUp(r supervisor.Result[int]) {
	if r.Err != nil && !errors.Is(r.Err, supervisor.ErrPoolClosed) {
		m.t.Errorf("a follow-up (queue index %d): %v", r.Index, r.Err)
	}
}

func readStartsIfAny(t *testing.T, path string) map[string]int {
	if _, err := os.Stat(path); err != nil {
		return map[string]int{}
	}
	return readStarts(t, path)
}

// check holds the run's outcomes against the ledger of starts.
func (m *modelRun) check(starts map[string]int) {
	t := m.t
	closed := m.closeAt > 0
	bad := 0
	fail := func(format string, args ...any) {
		if bad++; bad <= 10 {
			t.Errorf(format, args...)
		}
	}
	for id, in := range m.inputs {
		n := starts[strconv.Itoa(id)]
		if m.ends[id] != 1 {
			fail("input %d (%s) ended %d times", id, in.Act, m.ends[id])
		}
		if n > 1+m.retries {
			fail("input %d (%s) started %d times, with %d retries", id, in.Act, n, m.retries)
		}
		if -id != 0 && starts[strconv.Itoa(-id)] > 1 {
			fail("the follow-up of %d started %d times", id, starts[strconv.Itoa(-id)])
		}
		err := m.errs[id]
		if err == nil {
			if in.Act != actOK && in.Act != actSleep && (in.Act != actPut || !m.queued[id]) || n == 0 {
				fail("input %d (%s) succeeded, started %d times", id, in.Act, n)
			}
			continue
		}
		var te *supervisor.TaskError
		switch {
		case errors.Is(err, supervisor.ErrPoolClosed) && closed:
		case !errors.As(err, &te):
			fail("input %d (%s): %v is not a *TaskError", id, in.Act, err)
		case m.cancelled[id] && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)):
		case in.Act == actCrash && errors.Is(err, supervisor.ErrWorkerDied):
			if n != 1+m.retries && !closed {
				fail("input %d crashed its worker after %d starts, with %d retries", id, n, m.retries)
			}
		case in.Act == actSpin && errors.Is(err, supervisor.ErrTimeout):
		case in.Act == actFail && isRemote(err, "error"):
		case in.Act == actSleep && m.cancelled[id] && isRemote(err, "Canceled"):
		case in.Act == actPut && !m.queued[id] && errors.Is(err, supervisor.ErrNotInQueue):
		default:
			fail("input %d (%s, cancelled %v, started %d times): %v", id, in.Act, m.cancelled[id], n, err)
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d inputs went wrong", bad, len(m.inputs))
	}
}

func isRemote(err error, typ string) bool {
	var re *supervisor.RemoteError
	return errors.As(err, &re) && re.Type == typ
}
