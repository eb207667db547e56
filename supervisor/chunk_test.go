package supervisor_test

import (
	"context"
	"errors"
	"iter"
	"maps"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/supervise-dev/supervise/supervisor"
)

// poisonInputs are n inputs 0..n-1, but for two: at crash, -1 (it crashes its worker), and at
// loop, -2 (it spins past the time limit, deaf to its cancel).
func poisonInputs(n, crash, loop int) iter.Seq[int] {
	return func(yield func(int) bool) {
		for i := range n {
			in := i
			switch i {
			case crash:
				in = -1
			case loop:
				in = -2
			}
			if !yield(in) {
				return
			}
		}
	}
}

// 10,000 inputs in chunks, one of which crashes its worker and one of which loops past the
// time limit: exactly those two fail, each with its own cause, started once; every other
// input succeeds, and each ends once. Ordered and unordered, fixed and automatic sizes.
func TestChunksIsolatePoison(t *testing.T) {
	const n, crash, loop = 10000, 4321, 7777
	for _, tc := range []struct {
		name      string
		chunk     int
		unordered bool
	}{{"Map, chunks of 64", 64, false}, {"MapUnordered, automatic", 0, true}} {
		t.Run(tc.name, func(t *testing.T) {
			// The time limit is a margin for a loaded machine: a chunk of 64 doubles takes
			// microseconds, and only the looping input comes near it.
			reg := prometheus.NewRegistry()
			p, _ := startPool(t, supervisor.Config{Workers: 2, TaskTimeout: 2 * time.Second, CancelGrace: 200 * time.Millisecond,
				Restart: supervisor.RestartPolicy{FailureThreshold: 1000}, Metrics: reg})
			f := supervisor.Bind[int, int](p, "poison").WithChunk(tc.chunk)
			results := f.Map
			if tc.unordered {
				results = f.MapUnordered
			}
			seen := make([]int, n)
			last := -1
			for r := range results(context.Background(), poisonInputs(n, crash, loop)) {
				seen[r.Index]++
				if !tc.unordered && r.Index != last+1 {
					t.Fatalf("result %d after %d: out of order", r.Index, last)
				}
				last = r.Index
				var te *supervisor.TaskError
				switch r.Index {
				case crash:
					if !errors.Is(r.Err, supervisor.ErrWorkerDied) || !errors.As(r.Err, &te) || te.Attempts != 1 || te.Pid == 0 {
						t.Errorf("the crashing input: %v; want ErrWorkerDied, started once", r.Err)
					}
				case loop:
					if !errors.Is(r.Err, supervisor.ErrTimeout) || !errors.As(r.Err, &te) || te.Attempts != 1 {
						t.Errorf("the looping input: %v; want ErrTimeout, started once", r.Err)
					}
				default:
					if r.Err != nil || r.Value != 2*r.Index {
						t.Errorf("input %d: %d, %v", r.Index, r.Value, r.Err)
					}
				}
			}
			for i, c := range seen {
				if c != 1 {
					t.Fatalf("input %d ended %d times", i, c)
				}
			}
			// Each failure is counted once, with its cause: not the chunks' deaths.
			st := p.Stats()
			if want := map[string]int{"died": 1, "timeout": 1}; !maps.Equal(st.Failures, want) {
				t.Errorf("Stats().Failures = %v, want %v", st.Failures, want)
			}
			// The metrics count inputs, not calls, each outcome once.
			srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
			defer srv.Close()
			body := scrape(t, srv.URL)
			for _, c := range []struct {
				want   float64
				name   string
				labels []string
			}{
				{n, "supervise_tasks_submitted_total", []string{"handler", "poison"}},
				{n - 2, "supervise_tasks_succeeded_total", []string{"handler", "poison"}},
				{1, "supervise_tasks_failed_total", []string{"handler", "poison", "kind", "died"}},
				{1, "supervise_tasks_failed_total", []string{"handler", "poison", "kind", "timeout"}},
			} {
				if got := value(t, body, c.name, c.labels...); got != c.want {
					t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
				}
			}
			// The inputs went in chunks: far fewer calls were answered than inputs. At a fixed
			// size; the automatic size follows the handler time measured, which on a loaded
			// machine is longer (3,476 calls beside stress --cpu 8 and a whole CI run), so it
			// asks for fewer calls than inputs (TestChunkSizer checks the sizing itself).
			calls := 0
			for _, w := range st.Workers {
				calls += w.Calls
			}
			if limit := map[bool]int{true: n / 4, false: n}[tc.chunk > 0]; calls >= limit {
				t.Errorf("%d calls answered for %d inputs: they did not go in chunks", calls, n)
			}
			t.Logf("%d inputs in %d calls answered", n, calls)
		})
	}
}

// SubmitChunk: a future per input; the input that crashes its worker fails alone, with its
// worker's death, and the others succeed.
func TestSubmitChunk(t *testing.T) {
	reg := prometheus.NewRegistry()
	p, _ := startPool(t, supervisor.Config{Workers: 1, Metrics: reg})
	ins := make([]int, 100)
	for i := range ins {
		ins[i] = i
	}
	ins[40] = -1
	ctx := context.Background()
	futures := supervisor.Bind[int, int](p, "poison").SubmitChunk(ctx, ins)
	if len(futures) != len(ins) {
		t.Fatalf("%d futures for %d inputs", len(futures), len(ins))
	}
	for i, f := range futures {
		v, err := f.Get(ctx)
		var te *supervisor.TaskError
		switch {
		case i == 40:
			if !errors.Is(err, supervisor.ErrWorkerDied) || !errors.As(err, &te) || te.Attempts != 1 || te.Pid == 0 {
				t.Errorf("the crashing input: %v; want ErrWorkerDied, started once, naming its worker", err)
			}
		case err != nil || v != 2*i:
			t.Errorf("input %d: %d, %v", i, v, err)
		}
	}
	if got := p.Stats().Failures; !maps.Equal(got, map[string]int{"died": 1}) {
		t.Errorf("Stats().Failures = %v, want one died", got)
	}
	// The chunk's queue wait is from its inputs' submission. It used to be from the year 1:
	// some 2e9 seconds. 600 s is a margin for a loaded machine over the milliseconds it takes.
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	if sum := value(t, scrape(t, srv.URL), "supervise_task_queue_wait_seconds_sum", "handler", "poison"); sum < 0 || sum > 600 {
		t.Errorf("queue waits of %v s in all", sum)
	}
}
