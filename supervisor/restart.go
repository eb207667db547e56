package supervisor

import (
	"math"
	"math/rand/v2"
	"sync"
	"time"
)

// RestartPolicy says how the pool replaces workers that die, in the manner of thejerf/suture.
//
// A failure is a worker that died without the pool asking it to (a crash, a protocol error, a
// hang) or a worker that could not be started. Workers the pool kills for a time or memory
// limit, and workers it recycles (MaxTasksPerWorker, MemorySoftLimit), are replaced too but are
// not failures: the task was at fault, not the worker. Nor, for the backoff below, is a worker
// that had answered calls and died under one (the call fails with ErrWorkerDied): an input that
// crashes its worker is that input's fault, and a batch with a few such inputs must not wait
// out backoffs. It still counts towards breaking the pool (Giving up, below).
//
// Restart intensity: every failure adds 1 to a failure count that decays, halving every
// FailureDecay (smoothly). While the count is at most FailureThreshold a replacement starts at
// once; a failure that takes it over the threshold makes the replacements wait FailureBackoff,
// plus a random extra of up to BackoffJitter times that (so that many pools do not restart in
// step), and the count then starts again from zero. An EventRestartBackoff is emitted.
//
// Giving up: a worker command that cannot work at all (a missing binary, a bad handshake, a
// worker that exits at once) must not spin. When no worker is alive and the last
// MaxStartFailures failures came in a row, with no call answered by any worker in between, the
// pool is broken: queued and later tasks fail with an error that wraps ErrPoolBroken and the
// last worker's error (which quotes its stderr), and an EventPoolBroken is emitted. A worker
// that said hello and then died while it ran an input is not such a failure: the command can
// serve, and the input is charged with the death (it still counts towards the backoff if it
// had answered nothing).
//
// The zero value means the defaults below.
type RestartPolicy struct {
	// FailureThreshold is the failure count above which restarts back off. Default: 5.
	FailureThreshold float64
	// FailureDecay is the half-life of the failure count. Default: 30s.
	FailureDecay time.Duration
	// FailureBackoff is how long restarts wait once past the threshold. Default: 2s.
	FailureBackoff time.Duration
	// BackoffJitter is the largest random extra wait, as a fraction of FailureBackoff.
	// Default: 0.5; negative: none.
	BackoffJitter float64
	// MaxStartFailures is how many failures in a row (failed starts, and workers that died
	// without running a call), with no worker alive and no call answered in between, break
	// the pool. Default: 5.
	MaxStartFailures int
}

func (r RestartPolicy) withDefaults() RestartPolicy {
	if r.FailureThreshold <= 0 {
		r.FailureThreshold = 5
	}
	if r.FailureDecay <= 0 {
		r.FailureDecay = 30 * time.Second
	}
	if r.FailureBackoff <= 0 {
		r.FailureBackoff = 2 * time.Second
	}
	if r.BackoffJitter == 0 {
		r.BackoffJitter = 0.5
	}
	if r.MaxStartFailures <= 0 {
		r.MaxStartFailures = 5
	}
	return r
}

// restarter is the state of the restart policy: the decaying failure count and the time until
// which restarts wait.
type restarter struct {
	policy RestartPolicy

	mu          sync.Mutex
	failures    float64
	lastFailure time.Time
	pausedUntil time.Time
}

// failure records a failure at now and returns how long the replacement it calls for must
// wait (zero: start it at once). backoff is set when this failure started a backoff.
func (r *restarter) failure(now time.Time) (wait time.Duration, backoff *EventRestartBackoff) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.lastFailure.IsZero() {
		halvings := now.Sub(r.lastFailure).Seconds() / r.policy.FailureDecay.Seconds()
		r.failures *= math.Pow(0.5, halvings)
	}
	r.failures++
	r.lastFailure = now
	if r.failures > r.policy.FailureThreshold && !now.Before(r.pausedUntil) {
		pause := r.policy.FailureBackoff
		if j := r.policy.BackoffJitter; j > 0 {
			pause += time.Duration(rand.Float64() * j * float64(pause))
		}
		backoff = &EventRestartBackoff{Failures: r.failures, Threshold: r.policy.FailureThreshold, Wait: pause}
		r.pausedUntil = now.Add(pause)
		r.failures = 0
	}
	return max(0, r.pausedUntil.Sub(now)), backoff
}

// wait is how long a restart that is not itself caused by a failure must wait at now.
func (r *restarter) wait(now time.Time) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return max(0, r.pausedUntil.Sub(now))
}
