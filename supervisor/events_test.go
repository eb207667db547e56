package supervisor_test

import (
	"sync"
	"testing"
	"time"

	"github.com/supervise-dev/supervise/supervisor"
)

// poolLog is what a test pool reports: its log lines and its events.
type poolLog struct {
	syncBuffer
	mu     sync.Mutex
	events []supervisor.Event
	more   chan struct{} // closed and replaced on every event
}

func newPoolLog() *poolLog { return &poolLog{more: make(chan struct{})} }

func (l *poolLog) hook(e supervisor.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
	close(l.more)
	l.more = make(chan struct{})
}

// Events returns the events so far.
func (l *poolLog) Events() []supervisor.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]supervisor.Event(nil), l.events...)
}

// waitFor waits until an event at index from or later satisfies match and returns its index.
func (l *poolLog) waitFor(t *testing.T, from int, what string, match func(supervisor.Event) bool) int {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		l.mu.Lock()
		for i := from; i < len(l.events); i++ {
			if match(l.events[i]) {
				l.mu.Unlock()
				return i
			}
		}
		more := l.more
		l.mu.Unlock()
		select {
		case <-more:
		case <-deadline:
			t.Fatalf("no event %s after 10s; events: %v", what, l.Events())
		}
	}
}

// waitForReplacement waits until the worker with pid gone has exited and a worker started
// after it.
func waitForReplacement(t *testing.T, l *poolLog, gone int) {
	t.Helper()
	i := l.waitFor(t, 0, "worker exited", func(e supervisor.Event) bool {
		ex, ok := e.(supervisor.EventWorkerExited)
		return ok && ex.Pid == gone && ex.Restart
	})
	l.waitFor(t, i+1, "worker started", func(e supervisor.Event) bool {
		_, ok := e.(supervisor.EventWorkerStarted)
		return ok
	})
}
