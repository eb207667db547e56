package supervisor

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/supervise-dev/supervise/channel"
	"github.com/supervise-dev/supervise/internal/msgqueue"
	"github.com/supervise-dev/supervise/internal/notify"
	"github.com/vmihailenco/msgpack/v5"
	"go.opentelemetry.io/otel/trace"
)

// task is one submitted call on its way: queue -> worker's frame -> pipe -> worker -> answer
// frame -> settle. It is settled exactly once, by whoever gets there first: the worker's
// reader (an answer), the worker's owner (the worker died), the sender (cancelled before it
// was sent) or the pool (closed).
type task struct {
	id        uint64
	handler   string
	payload   msgpack.RawMessage
	bin       []byte // a []byte input, sent as is (see Func.Submit)
	ctx       context.Context
	notify    chan<- *task                     // optional: receives the task once settled (MapUnordered)
	index     int                              // position in a Map's input (a chunk's: its first input's)
	chunk     int                              // a chunk call of this many inputs (its payload is their array); 0: a plain call
	parts     []*task                          // a SubmitChunk's chunk: its inputs' own tasks, settled from its answer
	resend    func(*task)                      // sends one of parts again alone
	gather    *gathering                       // a queue's chunk: the items it gathers (queuechunk.go)
	answerer  *worker                          // a chunk's: the worker whose answer settles it, named in its inputs' errors
	retries   int                              // times it may still go to another worker if its worker dies
	starts    atomic.Int32                     // times a worker started it
	took      atomic.Int64                     // nanoseconds its handler ran, once answered
	metrics   *poolMetrics                     // Config.Metrics's, or nil
	failures  *failures                        // its pool's count of failures by kind, or nil
	submitted time.Time                        // when, if metrics counts its queue wait
	queue     *queue                           // the queue it came from, if any: follow-up puts go there
	putTo     func(msgpack.RawMessage)         // else, what takes its follow-ups (Func.WithFollowUps)
	putBy     int                              // a follow-up: its parent item's Index + 1 (0: the caller put it)
	pinned    bool                             // for one worker only (Broadcast): never given to another
	badPut    bool                             // it put follow-up work but came from no queue (only its reader touches it)
	badPuts   []int                            // likewise, a chunk's inputs that did (they fail, whatever their outcome)
	badReport bool                             // it sent a report but came from a queue, which has no reader for them (likewise)
	puts      int                              // follow-ups it put (likewise; QueueConfig.MaxFollowUps)
	call      func(context.Context, any) error // a plugin call (Pool.Call), instead of a payload
	trace     string                           // the traceparent its call carries, or "" (tracing.go)
	span      trace.Span                       // its span, with Config.TracerProvider

	reports msgqueue.Queue // messages from its handler (child.Report)

	// A chunk call's: set before it settles, read by whoever gives its inputs their outcomes.
	record  *channel.ChunkRecord // it ended without its answer: how far its worker got (its progress page)
	expired int                  // it reached its time limit while its input expired-1 ran (set under the worker's mu)
	limit   time.Duration        // that limit
	end     *chunkEnd            // set by settle: what its end means for each input

	// Guarded by the holding worker's mu:
	sentAt       time.Time // when it was last sent
	runningSince time.Time // when its worker (probably) started it
	cancelSent   time.Time // when a cancel went to its worker
	timedOut     bool      // the cancel was for its soft time limit
	closing      bool      // the cancel was Shutdown's
	stopCall     func()    // cancels a running plugin call's context

	settled atomic.Bool
	unwatch atomic.Pointer[func() bool] // stops the cancel watch (see watch)
	onDone  notify.Once                 // Future.OnDone's callback
	done    chan struct{}
	result  msgpack.RawMessage
	err     error
}

// settle records the outcome and wakes waiters; it reports false if the task already had one.
func (t *task) settle(result msgpack.RawMessage, err error) bool {
	if !t.settled.CompareAndSwap(false, true) {
		return false
	}
	if t.gather != nil {
		t.gather.seal(t) // no item joins it now; its items end below (settleParts)
	}
	t.result, t.err = result, err
	if t.chunk > 0 { // what it means for each input, read once and counted before anyone is woken
		e := endOf(t)
		t.end = &e
		chunkEnded(t, &e)
	}
	if t.chunk == 0 && t.gather == nil { // a chunk's inputs are counted one by one
		var kind string
		if err != nil && t.failures != nil {
			kind = t.failures.count(err)
		}
		if t.metrics != nil {
			t.metrics.settle(t, err, kind)
		}
	}
	if t.span != nil {
		if t.end != nil && t.parts == nil { // Map's: its inputs have no task, nor span, of their own
			inputSpans(t, t.end)
		}
		endSpan(t, err)
	}
	if stop := t.unwatch.Load(); stop != nil {
		(*stop)()
	}
	close(t.done)
	t.onDone.Fire()
	t.reports.End()
	if t.notify != nil {
		t.notify <- t
	}
	if t.queue != nil {
		t.queue.settled(t)
	}
	if t.parts != nil {
		settleParts(t)
	}
	return true
}

// inputError is the error of input i (from 0) of chunk c for err, for the task t of the
// input (c itself in a Map), naming the worker that answered c.
func (c *task) inputError(t *task, i int, err error) *TaskError {
	te := t.error(err)
	te.ChunkInput = i + 1
	if w := c.answerer; w != nil {
		te.WorkerID, te.Pid = w.id, w.pid
	}
	return te
}

// error is t's error for err, naming the task (and its queue item).
func (t *task) error(err error) *TaskError {
	te := &TaskError{ID: t.id, Handler: t.handler, Attempts: int(t.starts.Load()), Err: err}
	if t.queue != nil {
		te.Item = &QueueItem{Index: t.index, PutBy: t.putBy - 1}
	}
	return te
}

func (t *task) fail(w *worker, err error) bool {
	te := t.error(err)
	if w != nil {
		te.WorkerID, te.Pid = w.id, w.pid
	}
	count := w != nil && t.chunk == 0 // a chunk's inputs are counted one by one (chunkEnded)
	if count {                        // counted before settle wakes the caller, who may read Stats next
		w.tasksFailed.Add(1)
	}
	if !t.settle(nil, te) {
		if count {
			w.tasksFailed.Add(-1)
		}
		return false
	}
	return true
}

// Future is the pending outcome of one submitted task.
type Future[Out any] struct{ t *task }

// ID is the task's id, as it appears in errors and on the wire.
func (f *Future[Out]) ID() uint64 { return f.t.id }

// Done is closed when the task has its outcome.
func (f *Future[Out]) Done() <-chan struct{} { return f.t.done }

// OnDone has fn called once, when the task has its outcome (at once if it has it already),
// from the goroutine that settled it, never under a lock of the pool's: fn may call any
// method of the pool (Stats, Workers, Submit), but must not block (a send on a channel with
// room will do). It is how a program waiting on many futures learns which is done without a goroutine
// for each. Call it once per future.
func (f *Future[Out]) OnDone(fn func()) { f.t.onDone.Set(fn) }

// Took is how long the task's handler ran, as the pool saw it: from when its worker started
// it (the pool's best knowledge: when it was sent, or when the calls before it on that worker
// were answered) to its answer. Zero until it is answered, and for a task that ended without
// an answer (cancelled before it ran, its worker died).
func (f *Future[Out]) Took() time.Duration { return time.Duration(f.t.took.Load()) }

// Get waits for the task's outcome, or for ctx to end (which does not cancel the task: cancel
// the context it was submitted with for that). Errors are *TaskError.
func (f *Future[Out]) Get(ctx context.Context) (Out, error) {
	var out Out
	select {
	case <-f.t.done:
	case <-ctx.Done():
		return out, ctx.Err()
	}
	return decode[Out](f.t)
}

func decode[Out any](t *task) (Out, error) {
	var out Out
	if t.err != nil {
		return out, t.err
	}
	if err := channel.Unmarshal(t.result, &out); err != nil {
		return out, t.error(fmt.Errorf("%w: decoding the result as %T: %w", ErrResultType, out, err))
	}
	return out, nil
}

// Func is a handler of the pool's workers, with its input and output types.
type Func[In, Out any] struct {
	pool    *Pool
	name    string
	retries int                      // -1: the pool's Config.Retries
	putTo   func(msgpack.RawMessage) // takes the calls' follow-ups
	chunk   int                      // inputs per call in Map: 0 auto, 1 none (WithChunk)
}

// Bind returns the handler called name on p's workers, typed. Nothing is checked until a call:
// a worker without that handler answers each call with an "unknown_handler" error.
func Bind[In, Out any](p *Pool, name string) Func[In, Out] {
	return Func[In, Out]{pool: p, name: name, retries: -1}
}

// WithRetries returns f with its calls retried up to n times on another worker when the worker
// running them dies (see Config.Retries): only for idempotent handlers.
func (f Func[In, Out]) WithRetries(n int) Func[In, Out] {
	f.retries = max(0, n)
	return f
}

// WithFollowUps returns f with the follow-up items its calls' handlers put (child.Put) given
// to put, each as the handler encoded it, from the goroutine that reads the worker's
// messages, before the call's outcome is read: a backend that carries a queue to another
// place (package supervisor/jetstream's machines) passes them on. put must not block. Without
// it, a call whose handler puts one fails with ErrNotInQueue.
func (f Func[In, Out]) WithFollowUps(put func(item msgpack.RawMessage)) Func[In, Out] {
	f.putTo = put
	return f
}

// Submit queues one call and returns its future; it does not block. Cancelling ctx drops the
// call if it has not been sent yet, and sends the worker a cancel (the handler's context is
// cancelled) if it has. An input of type []byte is sent from its own memory, without a copy:
// do not modify it until the future is done.
func (f Func[In, Out]) Submit(ctx context.Context, in In) *Future[Out] {
	return &Future[Out]{f.pool.submit(ctx, f.name, in, taskOpts{retries: f.retries, putTo: f.putTo})}
}

// Call submits one call and waits for its outcome.
func (f Func[In, Out]) Call(ctx context.Context, in In) (Out, error) {
	return f.Submit(ctx, in).Get(ctx)
}
