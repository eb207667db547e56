package supervisor

import (
	"math"
	"testing"
	"time"
)

// The failure count decays with a half-life of FailureDecay; past FailureThreshold, restarts
// wait FailureBackoff (no jitter here) and the count starts again.
func TestRestarterIntensity(t *testing.T) {
	r := restarter{policy: RestartPolicy{FailureThreshold: 3, FailureDecay: 10 * time.Second,
		FailureBackoff: time.Second, BackoffJitter: -1}.withDefaults()}
	t0 := time.Unix(1000, 0)
	for i := range 3 { // 1, 2, 3 failures at once: at the threshold, not over it
		if wait, b := r.failure(t0); wait != 0 || b != nil {
			t.Fatalf("failure %d: wait %v, backoff %v", i+1, wait, b)
		}
	}
	// Ten seconds later the count of 3 has halved to 1.5: one more is 2.5, still no backoff.
	if wait, b := r.failure(t0.Add(10 * time.Second)); wait != 0 || b != nil || math.Abs(r.failures-2.5) > 1e-9 {
		t.Fatalf("after one half-life: wait %v, backoff %v, count %v", wait, b, r.failures)
	}
	// One more at once: 3.5 > 3: backoff, and the count starts again.
	wait, b := r.failure(t0.Add(10 * time.Second))
	if wait != time.Second || b == nil || b.Wait != time.Second || r.failures != 0 {
		t.Fatalf("over the threshold: wait %v, backoff %+v, count %v", wait, b, r.failures)
	}
	// During the pause every restart waits for its end; a further failure starts no new pause.
	if wait, b := r.failure(t0.Add(10*time.Second + 400*time.Millisecond)); wait != 600*time.Millisecond || b != nil {
		t.Fatalf("during the pause: wait %v, backoff %v", wait, b)
	}
	if wait := r.wait(t0.Add(11 * time.Second)); wait != 0 {
		t.Fatalf("after the pause: wait %v", wait)
	}
}

func TestBackoffJitter(t *testing.T) {
	r := restarter{policy: RestartPolicy{FailureThreshold: 0.5, FailureBackoff: time.Second}.withDefaults()}
	seen := map[time.Duration]bool{}
	now := time.Unix(1000, 0)
	for range 20 {
		now = now.Add(time.Hour) // past any pause, the count decayed to nothing
		wait, b := r.failure(now)
		if b == nil || wait < time.Second || wait > 1500*time.Millisecond {
			t.Fatalf("wait %v with jitter 0.5 of 1s, backoff %v", wait, b)
		}
		seen[wait] = true
	}
	if len(seen) < 10 {
		t.Fatalf("20 backoffs, only %d distinct waits: no jitter?", len(seen))
	}
}
