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
)

// Pool is a set of worker processes and the queue of tasks they share.
//
// Ownership: the pool owns its workers and the task queue. Each worker's owner goroutine
// (worker.run) is counted in wg, as is each goroutine replacing a dead worker; Shutdown and
// Close wait for wg, so no goroutine or process outlives them.
type Pool struct {
	cfg Config
	log *slog.Logger

	backlog    *backlog
	nextTask   atomic.Uint64
	nextWorker atomic.Int64
	stopping   chan struct{} // closed by the first Shutdown or Close

	restart restarter
	streak  atomic.Int32 // failures in a row with no call answered in between (RestartPolicy)
	eventMu sync.Mutex   // one event at a time to Config.EventHook

	mu      sync.Mutex
	killing bool                 // Close: workers are killed, their tasks fail with ErrPoolClosed
	broken  bool                 // see RestartPolicy: queued and later tasks fail
	workers map[*worker]struct{} // live workers

	wg        sync.WaitGroup
	closeOnce sync.Once
	spawner   *spawner // stopped once wg is done: no worker can be started after
}

// Start starts cfg.Workers workers and waits for each one's hello. If any fails to start, the
// others are stopped and the error (a *StartError) is returned. Cancelling ctx closes the pool
// as Close does.
func Start(ctx context.Context, cfg Config) (*Pool, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	p := &Pool{
		cfg:      cfg,
		log:      cfg.Logger,
		backlog:  newBacklog(),
		stopping: make(chan struct{}),
		workers:  map[*worker]struct{}{},
		spawner:  newSpawner(),
		restart:  restarter{policy: cfg.Restart},
	}
	errs := make([]error, cfg.Workers)
	var started sync.WaitGroup
	for i := range cfg.Workers {
		started.Add(1)
		go func() {
			defer started.Done()
			_, errs[i] = p.startWorker()
		}()
	}
	started.Wait()
	for _, err := range errs {
		if err != nil {
			p.Close()
			return nil, err
		}
	}
	go func() {
		select {
		case <-ctx.Done():
			p.Close()
		case <-p.stopping:
		}
	}()
	return p, nil
}

// submit encodes in and queues a task for handler. It always returns a task that will be
// settled exactly once.
func (p *Pool) submit(ctx context.Context, handler string, in any, notify chan<- *task, index, retries int) *task {
	if retries < 0 {
		retries = p.cfg.Retries
	}
	t := &task{id: p.nextTask.Add(1), handler: handler, ctx: ctx, notify: notify, index: index, retries: retries,
		done: make(chan struct{})}
	size := 0
	if b, ok := in.([]byte); ok && b != nil {
		t.bin, size = b, len(b)
	} else {
		payload, err := channel.Marshal(in)
		if err != nil {
			t.fail(nil, fmt.Errorf("encoding the input: %w", err))
			return t
		}
		t.payload, size = payload, len(payload)
	}
	if limit := p.cfg.MaxFrame - frameOverhead; size > limit {
		t.fail(nil, fmt.Errorf("%w: %d bytes encoded, the limit is %d (Config.MaxFrame)", ErrTooLarge, size, limit))
		return t
	}
	if err := ctx.Err(); err != nil {
		t.fail(nil, err)
		return t
	}
	if err := p.backlog.push(t); err != nil {
		t.fail(nil, err)
	}
	return t
}

// frameOverhead is room left in a frame for the envelope around one task's payload.
const frameOverhead = 1 << 10

// window is how many tasks Map keeps outstanding: enough to fill every worker's pipeline twice.
func (p *Pool) window() int { return max(2, 2*p.cfg.Workers*p.cfg.InFlight) }

// WorkerInfo describes one live worker.
type WorkerInfo struct {
	ID       int // unique in this pool; a replacement gets a new one
	Pid      int
	Handlers []string
	Started  time.Time
}

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

// Shutdown stops accepting tasks, lets the workers finish every task already submitted, closes
// their stdin and waits for them to exit. If ctx ends first, it does what Close does and
// returns ctx's error.
func (p *Pool) Shutdown(ctx context.Context) error {
	p.closeQueue()
	done := make(chan struct{})
	go func() {
		p.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		p.spawner.stop()
		p.drain()
		return nil
	case <-ctx.Done():
		p.Close()
		return ctx.Err()
	}
}

// Close stops the pool now: tasks not yet finished fail with ErrPoolClosed, workers are killed
// (their whole process group), and Close returns once every worker is reaped. It is safe to
// call more than once, and after Shutdown.
func (p *Pool) Close() error {
	p.closeQueue()
	p.mu.Lock()
	p.killing = true
	for w := range p.workers {
		w.kill()
	}
	p.mu.Unlock()
	p.wg.Wait()
	p.spawner.stop()
	p.drain()
	return nil
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
	if ev.Failure {
		p.streak.Add(1)
		wait, backoff = p.restart.failure(time.Now())
	} else {
		wait = p.restart.wait(time.Now())
	}
	p.mu.Lock()
	delete(p.workers, w)
	ev.Restart = replace && !p.killing && !p.broken && (!p.isStopping() || p.backlog.len() > 0)
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
		go p.replace(wait)
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

// replace starts a worker in place of one that exited, after waiting as the restart policy
// says, and tries again while starts fail and the pool is not broken.
func (p *Pool) replace(wait time.Duration) {
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
		_, err := p.startWorker()
		if err == nil {
			return
		}
		p.streak.Add(1)
		var backoff *EventRestartBackoff
		wait, backoff = p.restart.failure(time.Now())
		p.mu.Lock()
		broken := p.breakIfHopeless(err)
		giveUp := broken != nil || p.broken || p.killing
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
