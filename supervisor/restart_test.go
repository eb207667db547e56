package supervisor_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/supervise-dev/supervise/internal/pooltest"
	"github.com/supervise-dev/supervise/supervisor"
)

// A worker that starts and exits at once does not make the pool spin: after
// RestartPolicy.MaxStartFailures such workers in a row the pool is broken, and its tasks fail
// with an error that quotes the worker's stderr.
func TestWorkerThatExitsAtOnceBreaksPool(t *testing.T) {
	self, _ := os.Executable()
	p, events := startPool(t, supervisor.Config{Workers: 1, Command: []string{self},
		Env: []string{"SUPERVISE_TEST_MODE=exit-after-hello"}})
	events.WaitFor(t, 0, "pool broken", func(e supervisor.Event) bool {
		_, ok := e.(supervisor.EventPoolBroken)
		return ok
	})
	if started, exited := pooltest.Count[supervisor.EventWorkerStarted](events), pooltest.Count[supervisor.EventWorkerExited](events); started != 5 || exited != 5 {
		t.Fatalf("%d workers started and %d exited before the pool gave up, want 5 (MaxStartFailures): %v", started, exited, events.Events())
	}
	_, err := supervisor.Bind[int, int](p, "square").Call(context.Background(), 3)
	if !errors.Is(err, supervisor.ErrPoolBroken) || !errors.Is(err, supervisor.ErrWorkerDied) ||
		!strings.Contains(err.Error(), "config file /etc/nowhere.toml not found") || !strings.Contains(err.Error(), "exit status 1") {
		t.Fatalf("a call on the broken pool: %v", err)
	}
	if n := len(p.Workers()); n != 0 {
		t.Fatalf("%d workers listed in a broken pool", n)
	}
}

// A worker command that disappears while the pool runs: replacing a crashed worker fails,
// and after MaxStartFailures the queued tasks fail instead of waiting forever.
func TestMissingCommandBreaksPoolWithoutSpinning(t *testing.T) {
	self, _ := os.Executable()
	copied := filepath.Join(t.TempDir(), "worker")
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(copied, data, 0o755); err != nil {
		t.Fatal(err)
	}
	p, events := startPool(t, supervisor.Config{Workers: 1, Command: []string{copied}})
	ctx := context.Background()
	blocked, pid, _ := blockOn(t, p, ctx, false)
	queued := supervisor.Bind[int, int](p, "square").Submit(ctx, 4)
	if err := os.Remove(copied); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, err := blocked.Get(ctx); !errors.Is(err, supervisor.ErrWorkerDied) {
		t.Fatalf("the running call: %v", err)
	}
	_, err = queued.Get(ctx)
	if !errors.Is(err, supervisor.ErrPoolBroken) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the queued call: %v", err)
	}
	// Five failed starts in a row; the crash under a call does not count (the command
	// served: the call may be at fault).
	if n := pooltest.Count[supervisor.EventStartFailed](events); n != 5 {
		t.Fatalf("%d start attempts, want 5: %v", n, events.Events())
	}
}

// Crashes faster than FailureThreshold allows make the next replacement wait FailureBackoff,
// and an event says so.
func TestRestartBackoff(t *testing.T) {
	const backoff = 300 * time.Millisecond
	p, events := startPool(t, supervisor.Config{Workers: 1,
		Restart: supervisor.RestartPolicy{FailureThreshold: 1, FailureBackoff: backoff, BackoffJitter: -1}})
	ctx := context.Background()
	var pids []int
	for range 2 { // the second crash takes the count to 2 > 1
		f, pid, _ := blockOn(t, p, ctx, false)
		pids = append(pids, pid)
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		f.Get(ctx)
	}
	i := events.WaitFor(t, 0, "restart backoff", func(e supervisor.Event) bool {
		b, ok := e.(supervisor.EventRestartBackoff)
		return ok && b.Wait == backoff
	})
	events.WaitForReplacement(t, pids[1])
	evs := events.Events()
	if _, ok := evs[i-1].(supervisor.EventWorkerExited); !ok {
		t.Fatalf("the backoff follows the second exit: %v", evs)
	}
	if v, err := supervisor.Bind[int, int](p, "square").Call(ctx, 5); err != nil || v != 25 {
		t.Fatalf("after the backoff: %v %v", v, err)
	}
	assertGone(t, pids...)
}

// Calls that crash their worker, interleaved with calls that succeed, more of them than the
// failure threshold: each crash is the call's fault (its worker had answered others) and
// costs no restart backoff. (Each used to count as a failure: 26 input-caused crashes in a
// batch of 5,000 cost 6 to 14 s of backoff.)
func TestInputCrashesDoNotBackOff(t *testing.T) {
	p, events := startPool(t, supervisor.Config{Workers: 1, InFlight: 1, Restart: supervisor.RestartPolicy{FailureThreshold: 3, FailureBackoff: time.Minute}})
	var inputs []int
	for i := 1; i <= 8; i++ {
		inputs = append(inputs, i, 17*i) // chaos: a multiple of 17 crashes its worker
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // a backoff would take a minute
	defer cancel()
	for r := range supervisor.Bind[int, int](p, "chaos").Map(ctx, slices.Values(inputs)) {
		in := inputs[r.Index]
		switch {
		case in%17 == 0 && !errors.Is(r.Err, supervisor.ErrWorkerDied):
			t.Errorf("input %d crashes its worker; got %v", in, r.Err)
		case in%17 != 0 && (r.Err != nil || r.Value != 2*in):
			t.Errorf("input %d: %d, %v", in, r.Value, r.Err)
		}
	}
	if n := pooltest.Count[supervisor.EventRestartBackoff](events); n != 0 {
		t.Errorf("%d restart backoffs for crashes that were the inputs' fault", n)
	}
}
