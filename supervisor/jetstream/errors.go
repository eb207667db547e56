package jetstream

import (
	"errors"
	"fmt"

	"github.com/supervise-dev/supervise/supervisor"
)

var (
	// ErrClosed: the Client was closed before the task's outcome came back.
	ErrClosed = errors.New("supervise: jetstream client is closed")
	// ErrTooLarge: a task or its result does not fit in one message of the server (its
	// max_payload); the message went to the queue's dead-letter subject.
	ErrTooLarge = errors.New("message too large for the server")
	// ErrLost: a task was delivered MaxDeliver times and no machine answered it: each one
	// that took it was lost first. (Had a machine said that a worker died under the task, the
	// task fails with that error instead: its cause.)
	ErrLost = errors.New("every delivery of the task was lost")
)

// TaskError is how a task sent through JetStream fails: its queue, id and handler, the
// machine that ran it last (host/pid) and how many times it was delivered. Err is a
// *supervisor.RemoteError carrying the error from that machine; errors.Is matches it with
// supervisor.ErrTimeout, ErrMemoryLimit, ErrWorkerDied, ErrHung and ErrTooLarge as it would
// have matched in a pool on this machine.
type TaskError struct {
	Queue      string
	ID         uint64
	Handler    string
	Machine    string
	Deliveries int
	Err        error
}

func (e *TaskError) Error() string {
	where := ""
	if e.Machine != "" {
		where = " on " + e.Machine
	}
	if e.Deliveries > 1 {
		where += fmt.Sprintf(", delivery %d", e.Deliveries)
	}
	return fmt.Sprintf("queue %s: task %d (%s)%s: %v", e.Queue, e.ID, e.Handler, where, e.Err)
}

func (e *TaskError) Unwrap() error { return e.Err }

// Is matches the error's type as sent by the machine with this package's and supervisor's
// sentinel errors.
func (e *TaskError) Is(target error) bool {
	var re *supervisor.RemoteError
	if !errors.As(e.Err, &re) {
		return false
	}
	for _, k := range errorKinds {
		if k.err == target {
			return re.Type == k.name
		}
	}
	return false
}

// errorKinds are the error types a machine sends for failures that are not the handler's
// own, most specific first.
var errorKinds = []struct {
	name string
	err  error
}{
	{"timeout", supervisor.ErrTimeout},
	{"memory-limit", supervisor.ErrMemoryLimit},
	{"hung", supervisor.ErrHung},
	{"worker-died", supervisor.ErrWorkerDied},
	{"too-large", ErrTooLarge},
	{"lost", ErrLost},
}

// remoteError makes a task's error something to send: the handler's own error as it came, a
// failure of another kind (a limit, a dead worker) with that kind as Type and the whole story
// (worker, exit status, stderr tail) as Message.
func remoteError(err error) *supervisor.RemoteError {
	re := &supervisor.RemoteError{Type: "error", Message: err.Error()}
	var handler *supervisor.RemoteError
	if errors.As(err, &handler) {
		*re = *handler
	}
	for _, k := range errorKinds {
		if errors.Is(err, k.err) {
			re.Type, re.Message = k.name, err.Error()
			break
		}
	}
	return re
}
