// Package pooltest records what a pool reports, its log and its events, for tests to wait on
// and check.
package pooltest

import (
	"bytes"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/supervise-dev/supervise/internal/proctest"
	"github.com/supervise-dev/supervise/supervisor"
)

// Recorder is a pool's log sink and event hook. Set it up with Attach.
type Recorder struct {
	logMu sync.Mutex
	log   bytes.Buffer

	mu     sync.Mutex
	events []supervisor.Event
	more   chan struct{} // closed and replaced on every event
}

// StartTimeout is the time a test's worker has to say hello: race-built test binaries took
// over the library's 10 s default to start on a 2-core machine loaded far past its cores
// (the race suite beside stress --cpu 8 and builds, load 12), and tests failed for it.
const StartTimeout = time.Minute

// Attach makes a Recorder the log sink (at Debug) and event hook of cfg, where cfg has none,
// and gives it StartTimeout where it has none.
func Attach(cfg *supervisor.Config) *Recorder {
	r := &Recorder{more: make(chan struct{})}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = StartTimeout
	}
	if cfg.EventHook == nil {
		cfg.EventHook = r.hook
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(r, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return r
}

// Write appends to the log.
func (r *Recorder) Write(p []byte) (int, error) {
	r.logMu.Lock()
	defer r.logMu.Unlock()
	return r.log.Write(p)
}

// String is the log so far.
func (r *Recorder) String() string {
	r.logMu.Lock()
	defer r.logMu.Unlock()
	return r.log.String()
}

func (r *Recorder) hook(e supervisor.Event) {
	if s, ok := e.(supervisor.EventWorkerStarted); ok {
		proctest.Track(s.Pid) // its pid may be reused before the test checks it is gone
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
	close(r.more)
	r.more = make(chan struct{})
}

// Events returns the events so far.
func (r *Recorder) Events() []supervisor.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]supervisor.Event(nil), r.events...)
}

// WaitFor waits until an event at index from or later satisfies match, and returns its
// index; for StartTimeout at most, as many events (a replacement worker's start) wait on a
// worker's start, which takes that long for race-built workers on a loaded machine.
func (r *Recorder) WaitFor(t testing.TB, from int, what string, match func(supervisor.Event) bool) int {
	t.Helper()
	deadline := time.After(StartTimeout)
	for {
		r.mu.Lock()
		for i := from; i < len(r.events); i++ {
			if match(r.events[i]) {
				r.mu.Unlock()
				return i
			}
		}
		more := r.more
		r.mu.Unlock()
		select {
		case <-more:
		case <-deadline:
			t.Fatalf("no event %s after %v; events: %v", what, StartTimeout, r.Events())
		}
	}
}

// WaitForReplacement waits until the worker with pid gone has exited, to be replaced, and a
// worker has started after that.
func (r *Recorder) WaitForReplacement(t testing.TB, gone int) {
	t.Helper()
	i := r.WaitFor(t, 0, "worker exited", func(e supervisor.Event) bool {
		ex, ok := e.(supervisor.EventWorkerExited)
		return ok && ex.Pid == gone && ex.Restart
	})
	r.WaitFor(t, i+1, "worker started", func(e supervisor.Event) bool {
		_, ok := e.(supervisor.EventWorkerStarted)
		return ok
	})
}

// Pids are the pids of every worker started so far.
func (r *Recorder) Pids() []int {
	var pids []int
	for _, e := range r.Events() {
		if s, ok := e.(supervisor.EventWorkerStarted); ok {
			pids = append(pids, s.Pid)
		}
	}
	return pids
}

// Count is the number of events of type E so far.
func Count[E supervisor.Event](r *Recorder) int {
	n := 0
	for _, e := range r.Events() {
		if _, ok := e.(E); ok {
			n++
		}
	}
	return n
}
