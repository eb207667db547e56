package supervisor_test

import (
	"context"
	"errors"
	"testing"

	"github.com/supervise-dev/supervise/supervisor"
)

// Thousands of calls, some of which crash their worker, panic or fail: every call ends exactly
// once, and exactly the crashing ones fail with a dead worker (the calls queued behind a crash
// go to another worker and succeed).
func TestEveryCallEndsExactlyOnce(t *testing.T) {
	// Crashes come by the hundred here, on purpose: no restart backoff.
	p, _ := startPool(t, supervisor.Config{Workers: 3, InFlight: 8, Restart: supervisor.RestartPolicy{FailureThreshold: 1e6}})
	const n = 3000
	seen := make([]int, n)
	var crashed, panicked, failed, ok int
	for r := range supervisor.Bind[int, int](p, "chaos").MapUnordered(context.Background(), ints(n)) {
		seen[r.Index]++
		var re *supervisor.RemoteError
		switch i := r.Index; {
		case i%17 == 0:
			if !errors.Is(r.Err, supervisor.ErrWorkerDied) {
				t.Fatalf("call %d crashed its worker, got %v", i, r.Err)
			}
			crashed++
		case i%23 == 0:
			if !errors.As(r.Err, &re) || re.Type != "panic" {
				t.Fatalf("call %d panicked, got %v", i, r.Err)
			}
			panicked++
		case i%29 == 0:
			if !errors.As(r.Err, &re) || re.Type != "error" {
				t.Fatalf("call %d failed, got %v", i, r.Err)
			}
			failed++
		default:
			if r.Err != nil || r.Value != 2*i {
				t.Fatalf("call %d: %v %v", i, r.Value, r.Err)
			}
			ok++
		}
	}
	for i, c := range seen {
		if c != 1 {
			t.Fatalf("call %d ended %d times", i, c)
		}
	}
	t.Logf("%d calls: %d ok, %d crashed their worker, %d panicked, %d failed", n, ok, crashed, panicked, failed)
}
