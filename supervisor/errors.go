package supervisor

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/supervise-dev/supervise/channel"
)

// Sentinel errors; match them with errors.Is.
var (
	// ErrPoolClosed: the pool was shut down or closed before the task could run.
	ErrPoolClosed = errors.New("supervise: pool is closed")
	// ErrPoolBroken: no worker could be kept alive (see RestartPolicy.MaxStartFailures); the
	// error wraps the last worker's error too.
	ErrPoolBroken = errors.New("supervise: pool is broken")
	// ErrWorkerDied: the worker running the task exited or broke the protocol.
	ErrWorkerDied = errors.New("worker died")
	// ErrBadHello: a worker's first frame was not a valid hello of our protocol version.
	ErrBadHello = errors.New("bad hello")
	// ErrProtocolVersion: a worker's hello named a protocol version other than this parent's
	// (channel.ProtocolVersion). The error matches ErrBadHello too; this one says that the
	// program is a worker after all, of another version.
	ErrProtocolVersion = errors.New("protocol version mismatch")
	// ErrTooLarge: a task's input does not fit in one frame (Config.MaxFrame).
	ErrTooLarge = errors.New("task input exceeds the frame limit")
	// ErrTimeout: a task ran past its time limit (Config.TaskTimeout); see *TimeoutError.
	ErrTimeout = errors.New("time limit exceeded")
	// ErrHung: the worker running the task sent nothing for Config.HangTimeout.
	ErrHung = errors.New("worker hung")
	// ErrMemoryLimit: the worker running the task went over Config.MemoryHardLimit; see
	// *MemoryLimitError.
	ErrMemoryLimit = errors.New("memory limit exceeded")
	// ErrReportOverflow: the task's handler sent more reports (child.Report) than the pool
	// keeps for a caller who has not taken them (Config.MaxReportBytes); see
	// *ReportOverflowError.
	ErrReportOverflow = errors.New("reports overflow")
	// ErrPanic: the handler panicked (a *RemoteError of Type "panic").
	ErrPanic = channel.ErrPanic
	// ErrNotInQueue: the handler put follow-up work (child.Put) for a task that did not come
	// from a Queue.
	ErrNotInQueue = errors.New("child.Put from a task that did not come from a queue")
	// ErrQueueReport: the handler of a Queue's item sent a report (child.Report); a queue's
	// Results carry outcomes only, so the item fails rather than its reports being dropped.
	ErrQueueReport = errors.New("child.Report from a queue item: a queue has no reader for reports")
	// ErrResultType: the task's result does not decode into the Out type it was bound with.
	ErrResultType = errors.New("the result does not decode into the bound type")
	// ErrFollowUpOverflow: a queue item's handler put more follow-ups (child.Put) than
	// QueueConfig.MaxFollowUps allows; a *FollowUpOverflowError.
	ErrFollowUpOverflow = errors.New("follow-ups overflow")
)

// FollowUpOverflowError is the reason a queue item failed and its worker was killed: its
// handler put more than Limit follow-ups (QueueConfig.MaxFollowUps). The Limit it put before
// stay on the queue, and end as items of their own.
type FollowUpOverflowError struct {
	TaskID uint64
	Limit  int
}

func (e *FollowUpOverflowError) Error() string {
	return fmt.Sprintf("%v: task %d put more than %d follow-ups (QueueConfig.MaxFollowUps): worker killed", ErrFollowUpOverflow, e.TaskID, e.Limit)
}

func (e *FollowUpOverflowError) Is(target error) bool { return target == ErrFollowUpOverflow }

// ReportOverflowError is the reason a task failed and its worker was killed: its reports not
// yet taken by the caller (Future.Reports) would have gone over Config.MaxReportBytes.
type ReportOverflowError struct {
	TaskID              uint64
	Held, Report, Limit int // bytes kept, the size of the report refused, the limit
}

func (e *ReportOverflowError) Error() string {
	return fmt.Sprintf("%v: task %d sent a report of %d bytes with %d bytes of reports not yet taken by its caller (limit %d, Config.MaxReportBytes): worker killed",
		ErrReportOverflow, e.TaskID, e.Report, e.Held, e.Limit)
}

func (e *ReportOverflowError) Is(target error) bool { return target == ErrReportOverflow }

// MemoryLimitError is the reason a worker was killed for its memory: the resident memory seen
// (the worker's and its descendants') and the hard limit. Kernel is set when the kernel
// enforced the limit on the worker's cgroup (its OOM killer killed a process of the worker):
// RSS is then the cgroup's peak memory use, page cache included.
type MemoryLimitError struct {
	RSS, Limit uint64
	Kernel     bool
}

func (e *MemoryLimitError) Error() string {
	if e.Kernel {
		return fmt.Sprintf("%v: the kernel's OOM killer killed a process of the worker at its hard limit of %.1f MiB (peak %.1f MiB)",
			ErrMemoryLimit, float64(e.Limit)/(1<<20), float64(e.RSS)/(1<<20))
	}
	return fmt.Sprintf("%v: RSS %.1f MiB over the hard limit of %.1f MiB", ErrMemoryLimit,
		float64(e.RSS)/(1<<20), float64(e.Limit)/(1<<20))
}

func (e *MemoryLimitError) Is(target error) bool { return target == ErrMemoryLimit }

// TimeoutError is a task that reached its time limit (Config.TaskTimeout): it fails at the
// limit, never later and never with a result, whatever its handler does then. Its worker is
// sent a cancel; if the handler still runs Config.CancelGrace later, the worker is killed, and
// the kill's event (EventWorkerKilled) carries a TimeoutError with Hard set. Cause is the
// error a handler returned when it gave up on its own (a plugin call's context), if any.
type TimeoutError struct {
	Limit time.Duration
	Hard  bool
	Cause error
}

func (e *TimeoutError) Error() string {
	if e.Hard {
		return fmt.Sprintf("%v (%v), and still running after its cancel: worker killed", ErrTimeout, e.Limit)
	}
	if e.Cause != nil {
		return fmt.Sprintf("%v (%v): %v", ErrTimeout, e.Limit, e.Cause)
	}
	return fmt.Sprintf("%v (%v)", ErrTimeout, e.Limit)
}

func (e *TimeoutError) Is(target error) bool { return target == ErrTimeout }
func (e *TimeoutError) Unwrap() error        { return e.Cause }

// TaskError is how a task fails: it names the task, its handler and the worker that held it.
// Err is a *channel.RemoteError when the handler failed (returned an error or panicked), a
// *WorkerError when the worker died, or ErrPoolClosed, a context error or ErrTooLarge.
type TaskError struct {
	ID       uint64
	Handler  string
	WorkerID int // 0 when no worker held it
	Pid      int
	Attempts int        // times its handler started (0: it never did; more than 1 only with retries)
	Item     *QueueItem // set when the task is a Queue's item
	// ChunkInput is, for an input of a chunk call (Func.WithChunk), its place in the chunk,
	// from 1; 0 for a plain call. (Result.Index is its place in the Map's input.)
	ChunkInput int
	Err        error
}

// QueueItem names a queue's item in its error: its number (Result.Index) and, for a follow-up
// that a handler put with child.Put (one the caller never saw), the number of the item whose
// handler put it.
type QueueItem struct {
	Index int
	PutBy int // -1: the caller put it
}

func (e *TaskError) Error() string {
	where := ""
	if e.WorkerID != 0 {
		where = fmt.Sprintf(" on worker %d (pid %d)", e.WorkerID, e.Pid)
	}
	if e.Item != nil {
		where += fmt.Sprintf(", queue item %d", e.Item.Index)
		if e.Item.PutBy >= 0 {
			where += fmt.Sprintf(" (put by item %d)", e.Item.PutBy)
		}
	}
	if e.ChunkInput > 0 {
		where += fmt.Sprintf(", input %d of its chunk", e.ChunkInput)
	}
	if e.Attempts > 1 {
		where += fmt.Sprintf(", attempt %d", e.Attempts)
	}
	return fmt.Sprintf("task %d (%s)%s: %v", e.ID, e.Handler, where, e.Err)
}

func (e *TaskError) Unwrap() error { return e.Err }

// WorkerError describes a worker that ended without being asked to: how it exited (exit
// status or signal, from State) and the last lines of its stderr. Protocol is set when the
// parent killed it for breaking the protocol (a bad frame, an answer to an unknown task).
type WorkerError struct {
	WorkerID int
	Pid      int
	Command  []string
	State    *os.ProcessState // nil if it could not be reaped
	Protocol error
	Killed   string // why the pool killed it, when it did: "hung: ...", "task 7 ran past ..."
	Hung     bool   // it sent nothing for Config.HangTimeout (errors.Is(err, ErrHung))
	Limit    error  // the limit it was killed for, e.g. a *MemoryLimitError (errors.As)
	Stderr   string // tail of stderr, at most a few KiB
}

func (e *WorkerError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "worker %d (pid %d) %s", e.WorkerID, e.Pid, ErrWorkerDied)
	if e.Protocol != nil {
		fmt.Fprintf(&b, ": killed for a protocol error: %v", e.Protocol)
	} else if e.Killed != "" {
		fmt.Fprintf(&b, ": killed: %s", e.Killed)
	}
	writeExit(&b, ": ", e.State, e.Stderr)
	return b.String()
}

// writeExit appends how a process ended and the tail of its stderr, when known.
func writeExit(b *strings.Builder, sep string, state *os.ProcessState, stderr string) {
	if state != nil {
		b.WriteString(sep + exitDescription(state))
	}
	if tail := strings.TrimSpace(stderr); tail != "" {
		b.WriteString("; stderr tail:\n" + tail)
	}
}

// Is matches ErrWorkerDied, unless the pool killed it for a limit (Limit: a memory limit,
// which errors.Is matches instead, as a hard time limit is a *TimeoutError and not a dead
// worker); and ErrHung for a hung worker.
func (e *WorkerError) Is(target error) bool {
	return (target == ErrWorkerDied && e.Limit == nil) || (target == ErrHung && e.Hung)
}

// Unwrap gives errors.Is and errors.As the limit it was killed for and its protocol error
// (a *channel.FrameError: channel.ErrFrameTooLarge, channel.ErrDecode, ...).
func (e *WorkerError) Unwrap() []error {
	var errs []error
	for _, err := range []error{e.Limit, e.Protocol} {
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// StartError is a worker that could not be started or whose handshake failed. Received quotes
// the first bytes it wrote to stdout, when they were not a hello.
type StartError struct {
	WorkerID int
	Pid      int
	Command  []string
	Err      error
	Received []byte
	State    *os.ProcessState
	Stderr   string
}

func (e *StartError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "supervise: worker %d (pid %d, command %q): %v", e.WorkerID, e.Pid, e.Command, e.Err)
	if len(e.Received) > 0 {
		fmt.Fprintf(&b, "; first bytes received: %q", e.Received)
	}
	writeExit(&b, "; ", e.State, e.Stderr)
	return b.String()
}

func (e *StartError) Unwrap() error { return e.Err }

// RemoteError is the error a handler returned or panicked with, as reported by its worker.
// Its Type says what kind of failure it was (docs/protocol.md, section 9):
//
//   - "error": a Go handler returned an error;
//   - a Python exception's class name ("ValueError", "KeyError", ...): a Python handler raised it;
//   - "panic": a Go handler panicked (errors.Is ErrPanic);
//   - "decode": the input did not decode into the handler's input type;
//   - "encode": the result could not be encoded;
//   - "unknown_handler": the worker serves no handler by that name;
//   - "Canceled": the handler gave up when its context was cancelled (with the parent's
//     cancel, the task's error matches context.Canceled too).
//
// Over a JetStream queue (supervisor/jetstream) a machine sends failures that are not the
// handler's own with Type "timeout", "memory-limit", "hung", "worker-died", "too-large" or
// "lost", which errors.Is matches with this package's sentinels.
type RemoteError = channel.RemoteError
