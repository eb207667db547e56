package supervisor

import (
	"context"
	"errors"
	"maps"
	"sync"
)

// failures counts a pool's failed tasks by kind: what Stats.Failures says, and the kind label
// of the metrics' supervise_tasks_failed_total.
type failures struct {
	mu     sync.Mutex
	counts map[string]int
	types  int // remote error types counted apart so far (at most maxErrorKinds)
}

// maxErrorKinds bounds the remote error types counted apart: a worker chooses them, and each
// would be a time series (and a line of Stats) of its own. Past it they count as "error-other".
const maxErrorKinds = 32

// count counts err and returns its kind: timeout, memory, hung, died, cancelled, too-large,
// closed, error-TYPE (the handler's error type), or other.
func (f *failures) count(err error) string {
	kind := failureKind(err)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.counts == nil {
		f.counts = map[string]int{}
	}
	var re *RemoteError
	if kind == "" && errors.As(err, &re) {
		kind = "error-" + re.Type
		if _, seen := f.counts[kind]; !seen {
			if f.types >= maxErrorKinds {
				kind = "error-other"
			} else {
				f.types++
			}
		}
	}
	if kind == "" {
		kind = "other"
	}
	f.counts[kind]++
	return kind
}

// snapshot is a copy of the counts.
func (f *failures) snapshot() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.counts)
}

// failureKind is the kind of a task's error, "" for a remote error or one of no known kind.
func failureKind(err error) string {
	switch {
	case errors.Is(err, ErrTimeout):
		return "timeout"
	case errors.Is(err, ErrMemoryLimit):
		return "memory"
	case errors.Is(err, ErrHung):
		return "hung"
	case errors.Is(err, ErrWorkerDied):
		return "died"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "cancelled"
	case errors.Is(err, ErrTooLarge):
		return "too-large"
	case errors.Is(err, ErrFollowUpOverflow):
		return "follow-ups"
	case errors.Is(err, ErrPoolClosed), errors.Is(err, ErrPoolBroken):
		return "closed"
	}
	return ""
}
