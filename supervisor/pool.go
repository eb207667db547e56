package supervisor

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/supervise-dev/supervise/channel"
	"github.com/vmihailenco/msgpack/v5"
	"go.opentelemetry.io/otel/trace"
)

// Pool is a set of worker processes and the queue of tasks they share.
//
// Ownership: the pool owns its workers and the task queue. Each worker's owner goroutine
// (worker.run) is counted in wg, as is each goroutine replacing a dead worker; Close and
// Shutdown wait for wg, so no goroutine or process outlives them.
type Pool struct {
	cfg Config
	log *slog.Logger

	backlog    *backlog
	nextTask   atomic.Uint64
	nextWorker atomic.Int64
	stopping   chan struct{} // closed by the first Shutdown or Close

	sampler sampler
	restart restarter
	streak  atomic.Int32 // failures in a row with no call answered in between (RestartPolicy)
	eventMu sync.Mutex   // one event at a time to Config.EventHook

	mu      sync.Mutex
	broken  bool                 // see RestartPolicy: queued and later tasks fail
	workers map[*worker]struct{} // live workers

	wg        sync.WaitGroup
	closeOnce sync.Once
	spawner   *spawner // stopped once wg is done: no worker can be started after

	containment containment  // the pool's cgroup, if it has one
	metrics     *poolMetrics // Config.Metrics's; nil: none
	tracer      trace.Tracer // Config.TracerProvider's; nil: none
	noChunks    atomic.Bool  // a worker's hello did not say it runs chunk calls: Map sends none
	failures    failures     // tasks failed, by kind (Stats.Failures)

	clock   clock                           // realClock; a fake one in tests
	checked func(worker int, now time.Time) // tests: told after each watchdog look
}

// Start starts cfg.Workers workers and waits for each one's hello. If any fails to start, the
// others are stopped and the error (a *StartError) is returned. Cancelling ctx shuts the pool
// down as Shutdown does once its context ends: queued tasks fail, running ones are cancelled,
// and workers still busy CancelGrace later are killed.
func Start(ctx context.Context, cfg Config) (*Pool, error) {
	return start(ctx, cfg, realClock{}, nil)
}

func start(ctx context.Context, cfg Config, clk clock, checked func(int, time.Time)) (*Pool, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	p := &Pool{
		clock:    clk,
		checked:  checked,
		cfg:      cfg,
		log:      cfg.Logger,
		backlog:  newBacklog(),
		stopping: make(chan struct{}),
		workers:  map[*worker]struct{}{},
		spawner:  newSpawner(),
		restart:  restarter{policy: cfg.Restart},
	}
	p.sampler.init(cfg.Workers)
	if cfg.Plugin != nil {
		p.noChunks.Store(true)
	}
	if cfg.TracerProvider != nil {
		p.tracer = cfg.TracerProvider.Tracer(tracerName)
	}
	if cfg.Metrics != nil {
		if p.metrics, err = newPoolMetrics(cfg.Metrics, p); err != nil {
			return nil, err
		}
	}
	started := false
	defer func() {
		if !started && p.metrics != nil {
			p.metrics.unregister(cfg.Metrics)
		}
	}()
	if err := p.contain(); err != nil {
		p.Close()
		return nil, err
	}
	errs := make([]error, cfg.Workers)
	var starting sync.WaitGroup
	for i := range cfg.Workers {
		starting.Add(1)
		go func() {
			defer starting.Done()
			_, errs[i] = p.startWorker(i)
		}()
	}
	starting.Wait()
	for _, err := range errs {
		if err != nil {
			p.Close()
			return nil, err
		}
	}
	go func() {
		select {
		case <-ctx.Done():
			p.Shutdown(ctx)
		case <-p.stopping:
		}
	}()
	started = true
	return p, nil
}

// taskOpts are the ways a task may differ from a plain Submit.
type taskOpts struct {
	notify  chan<- *task             // receives the task once settled (MapUnordered)
	index   int                      // position in a Map's input, or in a queue
	retries int                      // -1: Config.Retries
	queue   *queue                   // the queue it came from
	putBy   *task                    // the queue item whose handler put it (child.Put)
	pin     *worker                  // only this worker may run it (Broadcast)
	putTo   func(msgpack.RawMessage) // takes its follow-ups (Func.WithFollowUps)
	chunk   int                      // in is a chunk of this many inputs (chunk.go)
	again   bool                     // an input of a chunk, sent again alone: counted already (metrics)
}

// submit encodes in and queues a task for handler (for o.pin, on that worker). It always
// returns a task that will be settled exactly once.
func (p *Pool) submit(ctx context.Context, handler string, in any, o taskOpts) *task {
	t := p.newTask(ctx, handler, o)
	p.load(t, in, o)
	return t
}

// load encodes in as t's input and queues t; if it cannot go, t fails.
func (p *Pool) load(t *task, in any, o taskOpts) {
	handler := t.handler
	if p.cfg.Plugin != nil {
		t.fail(nil, errPluginPool)
		return
	}
	size := 0
	if b, ok := in.([]byte); ok && b != nil {
		t.bin, size = b, len(b)
	} else {
		payload, err := channel.Marshal(in)
		if err != nil {
			t.fail(nil, fmt.Errorf("encoding the input: %w", err))
			return
		}
		t.payload, size = payload, len(payload)
	}
	if call, room := channel.CallSize(handler, size, t.bin != nil)+channel.TraceSize(t.trace), channel.FrameRoom(p.cfg.MaxFrame); call > room {
		t.fail(nil, fmt.Errorf("%w: %d bytes encoded, a frame holds %d of input at most (Config.MaxFrame)", ErrTooLarge, size, size-(call-room)))
		return
	}
	p.enqueue(t, o)
}

// newTask makes the task for one call of handler.
func (p *Pool) newTask(ctx context.Context, handler string, o taskOpts) *task {
	switch {
	case o.pin != nil:
		o.retries = 0 // once on that worker, or not at all
	case o.retries < 0:
		o.retries = p.cfg.Retries
	}
	t := &task{id: p.nextTask.Add(1), handler: handler, ctx: ctx, notify: o.notify, index: o.index, retries: o.retries, chunk: o.chunk,
		queue: o.queue, pinned: o.pin != nil, putTo: o.putTo, done: make(chan struct{}), metrics: p.metrics, failures: &p.failures}
	if t.metrics != nil && !o.again {
		t.metrics.submit(t)
	}
	p.traceTask(t)
	if o.putBy != nil {
		t.putBy = o.putBy.index + 1
	}
	return t
}

// enqueue gives t to the backlog, or to o.pin alone; if it cannot go there, t fails.
func (p *Pool) enqueue(t *task, o taskOpts) {
	if err := t.ctx.Err(); err != nil {
		t.fail(nil, err)
		return
	}
	var err error
	if o.pin != nil {
		err = o.pin.pin(t)
	} else {
		err = p.backlog.push(t)
	}
	if err != nil {
		t.fail(nil, err)
	}
}

// batchBytes is how much payload one frame of calls carries before the next call goes in a
// frame of its own: batching pays for small calls only.
const batchBytes = 256 << 10

// window is how many tasks Map keeps outstanding: enough to fill every worker's pipeline twice.
func (p *Pool) window() int { return max(2, 2*p.cfg.Workers*p.cfg.InFlight) }

// WorkerInfo describes one live worker.
type WorkerInfo struct {
	ID       int // unique in this pool; a replacement gets a new one
	Pid      int
	Handlers []string
	Started  time.Time
}

// Logger is the logger the pool logs to: Config.Logger, or slog.Default(). Packages that
// serve the pool elsewhere (supervisor/jetstream's machines) log there too by default.
func (p *Pool) Logger() *slog.Logger { return p.log }

// Workers lists the live workers.
func (p *Pool) Workers() []WorkerInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]WorkerInfo, 0, len(p.workers))
	for w := range p.workers {
		out = append(out, WorkerInfo{ID: w.id, Pid: w.pid, Handlers: slices.Clone(w.handlers), Started: w.started})
	}
	return out
}

// closeQueue stops accepting tasks. Workers take what is left in the backlog, then stop.
func (p *Pool) closeQueue() {
	p.closeOnce.Do(func() {
		close(p.stopping)
		p.backlog.close()
	})
}

// Close stops accepting tasks, lets the workers finish every task already submitted (queued
// or running), closes their stdin and returns once every worker has exited. It is safe to call
// more than once, and during or after Shutdown. To stop sooner, use Shutdown.
func (p *Pool) Close() error {
	p.closeQueue()
	<-p.allExited()
	p.finish()
	return nil
}

// Shutdown stops accepting tasks and fails the queued ones that no worker has taken yet with
// ErrPoolClosed. Tasks already sent to a worker (running, or pipelined behind the running one:
// Config.InFlight) may finish until ctx ends. Then each of them is sent a cancel (a Go
// handler's context is cancelled) and an answer within Config.CancelGrace is still delivered;
// a worker still busy after that is killed with the kill ladder (SIGTERM to its process group,
// then SIGKILL after Config.StopGrace), failing its tasks with ErrPoolClosed. Shutdown returns
// once every worker is reaped: nil if all finished before ctx ended, else ctx's error.
func (p *Pool) Shutdown(ctx context.Context) error {
	p.closeQueue()
	for _, t := range p.backlog.fail(ErrPoolClosed) {
		t.fail(nil, ErrPoolClosed)
	}
	exited := p.allExited()
	var err error
	select {
	case <-exited:
	case <-ctx.Done():
		err = ctx.Err()
		p.mu.Lock()
		for w := range p.workers {
			w.cancelAll()
		}
		p.mu.Unlock()
		<-exited
	}
	p.finish()
	return err
}

// allExited returns a channel closed once every worker and every replacement has ended.
func (p *Pool) allExited() <-chan struct{} {
	done := make(chan struct{})
	go func() {
		p.wg.Wait()
		close(done)
	}()
	return done
}

// finish is the end of Close and Shutdown, once no worker is left.
func (p *Pool) finish() {
	p.stopSampler()
	p.spawner.stop()
	p.endContainment()
	p.drain()
}

// drain fails whatever is left in the backlog once no worker is left to take it.
func (p *Pool) drain() {
	for _, t := range p.backlog.removeAll() {
		t.fail(nil, ErrPoolClosed)
	}
}

// exited is called by a worker's owner once the worker is reaped and its tasks are settled.
// A worker that ended without being asked to, or was recycled, is replaced while the pool runs
// (or still has queued tasks to finish during Shutdown), as the restart policy says.
func (p *Pool) exited(w *worker, ev EventWorkerExited, replace bool) {
	var wait time.Duration
	var backoff *EventRestartBackoff
	switch {
	case ev.Failure && w.diedUnderInput && w.answeredAny.Load():
		// A worker that had answered calls died (or was killed) while it ran an input, which
		// is charged with it: the input is at fault, not the command, and the replacement
		// starts without backoff.
		wait = p.restart.wait(time.Now())
	case ev.Failure && w.diedUnderInput:
		// A worker that said hello and died under its first input: the command can serve, so
		// it does not count towards breaking the pool (an input that crashes every worker it
		// lands on is not a failed start), but restarts back off if it goes on.
		wait, backoff = p.restart.failure(time.Now())
	case ev.Failure:
		p.streak.Add(1)
		wait, backoff = p.restart.failure(time.Now())
	default:
		wait = p.restart.wait(time.Now())
	}
	p.mu.Lock()
	delete(p.workers, w)
	ev.Restart = replace && !p.broken && (!p.isStopping() || p.backlog.len() > 0)
	var broken error
	if ev.Restart && ev.Failure {
		broken = p.breakIfHopeless(ev.Err)
		ev.Restart = broken == nil
	}
	if ev.Restart {
		p.wg.Add(1)
	}
	p.mu.Unlock()

	p.emit(ev)
	if broken != nil {
		p.emit(EventPoolBroken{Err: broken})
	}
	if ev.Restart {
		if backoff != nil {
			p.emit(*backoff)
		}
		go p.replace(w.slot, wait)
	}
}

// breakIfHopeless breaks the pool, failing queued and later tasks, when no worker is alive and
// the last RestartPolicy.MaxStartFailures failures came in a row; last is the latest one's
// error. It returns the error tasks now fail with, or nil. Called with mu held.
func (p *Pool) breakIfHopeless(last error) error {
	n := int(p.streak.Load())
	if p.broken || len(p.workers) > 0 || n < p.cfg.Restart.MaxStartFailures {
		return nil
	}
	p.broken = true
	err := fmt.Errorf("%w: %d workers in a row failed to start or died before answering a call; the last: %w", ErrPoolBroken, n, last)
	for _, t := range p.backlog.fail(err) {
		t.fail(nil, err)
	}
	return err
}

// replace starts a worker in slot, in place of one that exited, after waiting as the restart
// policy says, and tries again while starts fail and the pool is not broken.
func (p *Pool) replace(slot int, wait time.Duration) {
	defer p.wg.Done()
	for {
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-p.stopping:
				t.Stop()
				return
			}
		}
		_, err := p.startWorker(slot)
		if err == nil {
			p.workerReplaced(slot)
			return
		}
		p.streak.Add(1)
		var backoff *EventRestartBackoff
		wait, backoff = p.restart.failure(time.Now())
		p.mu.Lock()
		broken := p.breakIfHopeless(err)
		giveUp := broken != nil || p.broken
		p.mu.Unlock()
		if broken != nil {
			p.emit(EventPoolBroken{Err: broken})
		}
		if giveUp {
			return
		}
		if backoff != nil {
			p.emit(*backoff)
		}
	}
}

func (p *Pool) isStopping() bool {
	select {
	case <-p.stopping:
		return true
	default:
		return false
	}
}
