package supervisor

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"
)

// Event is something that happened to the pool's workers or tasks: one of the Event* types of
// this file. Config.EventHook receives every event and the pool logs each with Config.Logger
// (at the level its documentation gives). Match them with a type switch.
type Event interface {
	String() string
	// record is the event's log record: level, message and attributes.
	record() (slog.Level, string, []any)
}

// EventWorkerStarted: a worker sent its hello and takes tasks. Logged at Debug.
type EventWorkerStarted struct {
	WorkerID, Pid int
	Handlers      []string
}

// EventStartFailed: a worker could not be started, or its handshake failed; Err is a
// *StartError that quotes what it printed. Logged at Error.
type EventStartFailed struct {
	WorkerID int
	Err      error
}

// EventWorkerKilled: the pool is killing a worker (its process group, with the kill ladder)
// for a reason of its own: a time limit, a memory limit, a hang, a protocol error. Err is the
// typed reason (a *TimeoutError, *MemoryLimitError, ErrHung or the protocol error). Logged at
// Warn.
type EventWorkerKilled struct {
	WorkerID, Pid int
	Reason        string
	Err           error
}

// EventWorkerExited: a worker's process was reaped and its tasks settled. Err is nil for a
// worker that exited because the pool asked it to (shutdown, recycling) and a *WorkerError
// otherwise. Failure says it counts against the restart policy (see RestartPolicy); Restart
// says a replacement will be started. Logged at Error when Failure, else Debug.
type EventWorkerExited struct {
	WorkerID, Pid int
	State         *os.ProcessState // nil if it could not be reaped
	Err           error
	Failure       bool
	Restart       bool
	TasksFailed   int // tasks it was running, failed with Err
	TasksRequeued int // tasks it held but had not started (or retries): given to other workers
}

// EventTaskRetried: a task whose worker died is given to another worker (Config.Retries,
// Func.WithRetries). Logged at Warn.
type EventTaskRetried struct {
	TaskID      uint64
	Handler     string
	WorkerID    int // the worker that died with it
	RetriesLeft int
	Err         error // why its worker died
}

// EventRestartBackoff: restarts come too fast (RestartPolicy.FailureThreshold was passed), so
// the next replacement waits. Logged at Warn.
type EventRestartBackoff struct {
	Failures  float64 // the decayed failure count
	Threshold float64
	Wait      time.Duration
}

// EventPoolBroken: no worker is alive and the last RestartPolicy.MaxStartFailures workers in a
// row failed to start or died before answering a call: queued and later tasks fail with Err
// (which wraps ErrPoolBroken and the last worker's error). Logged at Error.
type EventPoolBroken struct {
	Err error
}

func (e EventWorkerStarted) String() string {
	return fmt.Sprintf("worker %d (pid %d) started, handlers %v", e.WorkerID, e.Pid, e.Handlers)
}

func (e EventWorkerStarted) record() (slog.Level, string, []any) {
	return slog.LevelDebug, "supervise: worker started", []any{"worker", e.WorkerID, "pid", e.Pid, "handlers", e.Handlers}
}

func (e EventStartFailed) String() string { return e.Err.Error() }

func (e EventStartFailed) record() (slog.Level, string, []any) {
	return slog.LevelError, "supervise: starting a worker failed", []any{"worker", e.WorkerID, "err", e.Err}
}

func (e EventWorkerKilled) String() string {
	return fmt.Sprintf("worker %d (pid %d) killed: %s", e.WorkerID, e.Pid, e.Reason)
}

func (e EventWorkerKilled) record() (slog.Level, string, []any) {
	return slog.LevelWarn, "supervise: killing a worker", []any{"worker", e.WorkerID, "pid", e.Pid, "reason", e.Reason}
}

func (e EventWorkerExited) String() string {
	s := fmt.Sprintf("worker %d (pid %d) exited", e.WorkerID, e.Pid)
	if e.Err != nil {
		s = e.Err.Error()
	}
	if e.TasksFailed > 0 || e.TasksRequeued > 0 {
		s += fmt.Sprintf(" [tasks failed %d, requeued %d]", e.TasksFailed, e.TasksRequeued)
	}
	if e.Restart {
		s += " (restarting)"
	}
	return s
}

func (e EventWorkerExited) record() (slog.Level, string, []any) {
	attrs := []any{"worker", e.WorkerID, "pid", e.Pid, "restart", e.Restart}
	if e.TasksFailed > 0 || e.TasksRequeued > 0 {
		attrs = append(attrs, "tasks_failed", e.TasksFailed, "tasks_requeued", e.TasksRequeued)
	}
	if !e.Failure {
		if e.Err != nil {
			attrs = append(attrs, "err", e.Err)
		}
		return slog.LevelDebug, "supervise: worker exited", attrs
	}
	return slog.LevelError, "supervise: worker died", append(attrs, "err", e.Err)
}

func (e EventTaskRetried) String() string {
	return fmt.Sprintf("task %d (%s) retried after worker %d died, %d retries left", e.TaskID, e.Handler, e.WorkerID, e.RetriesLeft)
}

func (e EventTaskRetried) record() (slog.Level, string, []any) {
	return slog.LevelWarn, "supervise: retrying a task its worker died with",
		[]any{"task", e.TaskID, "handler", e.Handler, "worker", e.WorkerID, "retries_left", e.RetriesLeft}
}

func (e EventRestartBackoff) String() string {
	return fmt.Sprintf("restarting workers too fast (%.1f failures, threshold %.1f): next restart in %v", e.Failures, e.Threshold, e.Wait.Round(time.Millisecond))
}

func (e EventRestartBackoff) record() (slog.Level, string, []any) {
	return slog.LevelWarn, "supervise: restart backoff", []any{"failures", e.Failures, "threshold", e.Threshold, "wait", e.Wait}
}

func (e EventPoolBroken) String() string { return e.Err.Error() }

func (e EventPoolBroken) record() (slog.Level, string, []any) {
	return slog.LevelError, "supervise: pool broken", []any{"err", e.Err}
}

// emit logs e and hands it to Config.EventHook. Events are delivered one at a time, in the
// order they are emitted.
func (p *Pool) emit(e Event) {
	level, msg, attrs := e.record()
	p.log.Log(context.Background(), level, msg, attrs...)
	if k, ok := e.(EventWorkerKilled); ok && p.metrics != nil {
		p.metrics.kill(k)
	}
	if p.cfg.EventHook == nil {
		return
	}
	p.eventMu.Lock()
	defer p.eventMu.Unlock()
	p.cfg.EventHook(e)
}
