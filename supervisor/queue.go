package supervisor

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"sync"
	"time"

	"github.com/supervise-dev/supervise/channel"

	"github.com/vmihailenco/msgpack/v5"
)

// ErrQueueClosed: Put on a queue after its Close.
var ErrQueueClosed = errors.New("supervise: queue is closed")

// QueueConfig describes a Queue. The zero value is an unbounded queue whose items are done
// when their handler returns.
type QueueConfig struct {
	// Capacity bounds the items put by the caller and not yet done: Put blocks while it is
	// reached (backpressure). Follow-ups that handlers put (child.Put) count too but are never
	// refused: a worker must not wait on its own queue. Zero: unbounded.
	Capacity int
	// ManualDone: an item is done when the caller calls TaskDone for it (after taking its
	// outcome from Results, say), not when its handler returns.
	ManualDone bool
	// Retries as Func.WithRetries, for every item. Zero: Config.Retries.
	Retries int
	// Chunk: the most items one call carries (a chunk call, as Func.WithChunk; at most
	// channel.MaxChunk). Items put while all workers are busy gather in the call that waits
	// for the next free one, so an item never waits for others to fill a chunk. 1: one item
	// per call; 0: sized from the handler time and item size measured so far, as Map's (about
	// 2 ms and 64 KiB a call, at most 1,024 items; one per call until an item is answered).
	// Each item still has its own outcome and follow-ups, and an item that kills its worker
	// fails alone: the items of a chunk without an answer go again one per call. Ignored by
	// NewQueueOn, whose backend sends items as it sees fit.
	Chunk int
	// MaxFollowUps bounds the follow-ups one item's handler may put (child.Put), so that a
	// handler gone wrong cannot fill the parent's memory with them: one that puts more fails
	// with a *FollowUpOverflowError (ErrFollowUpOverflow) and its worker is killed; the
	// follow-ups it put before stay on the queue. Zero: 1,048,576; negative: no bound.
	// Ignored by NewQueueOn.
	MaxFollowUps int
}

// defaultMaxFollowUps is QueueConfig.MaxFollowUps's default.
const defaultMaxFollowUps = 1 << 20

// Queue is a joinable queue of inputs for one handler, served by the pool's workers, as
// Python's multiprocessing.JoinableQueue: Put adds an item, an item is done when its handler
// returns (or when TaskDone says so, with QueueConfig.ManualDone), and Join waits until every
// item put is done, follow-ups put by handlers with child.Put included. Every item's outcome
// comes out of Results exactly once. Items and results are kept in the parent, never in a pipe
// buffer, so large items cannot deadlock it.
type Queue[In, Out any] struct{ q *queue }

// NewQueue returns a queue of inputs for the handler called name on p's workers.
func NewQueue[In, Out any](p *Pool, name string, cfg QueueConfig) *Queue[In, Out] {
	retries := cfg.Retries
	if retries == 0 {
		retries = -1
	}
	switch {
	case cfg.MaxFollowUps == 0:
		cfg.MaxFollowUps = defaultMaxFollowUps
	case cfg.MaxFollowUps < 0:
		cfg.MaxFollowUps = 0 // no bound
	}
	q := &queue{pool: p, handler: name, cfg: cfg, retries: retries, changed: make(chan struct{})}
	q.sizer.fixed = min(max(cfg.Chunk, 0), channel.MaxChunk)
	return &Queue[In, Out]{q}
}

// QueueBackend runs a Queue's items somewhere other than a Pool's workers: package
// supervisor/jetstream sends them to worker machines through NATS JetStream.
type QueueBackend interface {
	// Submit runs item index of a queue for handler and calls done exactly once with the
	// item's outcome: the handler's msgpack-encoded result, or an error. ctx carries the
	// caller's values but is never cancelled: an item, once put, runs to its end.
	Submit(ctx context.Context, handler string, index int, in any, done func(result msgpack.RawMessage, err error))
}

// FollowUpBackend is a QueueBackend that carries follow-ups: it calls put with each item a
// handler puts (child.Put), as the handler encoded it, before it calls done for the item
// that put it.
type FollowUpBackend interface {
	QueueBackend
	SubmitFollowing(ctx context.Context, handler string, index int, in any, done func(result msgpack.RawMessage, err error), put func(item msgpack.RawMessage))
}

// NewQueueOn returns a queue of inputs for the handler called name, run by b. Capacity and
// ManualDone work as on a pool's queue; Retries is b's business. Follow-ups (child.Put) are
// carried if b is a FollowUpBackend (supervisor/jetstream's Client is): they are put on the
// queue as on a pool's, counted before the item that put them is done; otherwise a handler
// that puts one fails its item.
func NewQueueOn[In, Out any](b QueueBackend, name string, cfg QueueConfig) *Queue[In, Out] {
	return &Queue[In, Out]{&queue{backend: b, handler: name, cfg: cfg, changed: make(chan struct{})}}
}

// JoinableQueue is what a Queue does, whichever runs its items (a Pool, or a QueueBackend).
type JoinableQueue[In, Out any] interface {
	Put(ctx context.Context, in In) error
	TaskDone() error
	Join(ctx context.Context) error
	Close()
	Results(ctx context.Context) iter.Seq[Result[Out]]
}

var _ JoinableQueue[int, int] = (*Queue[int, int])(nil)

// queue is the part of a Queue that does not depend on its types.
type queue struct {
	pool    *Pool
	backend QueueBackend // instead of pool
	handler string
	cfg     QueueConfig
	retries int

	mu         sync.Mutex
	unfinished int     // put and not yet done
	puts       int     // items put so far: the next one's index
	results    []*task // settled, not yet yielded by Results
	closed     bool
	changed    chan struct{} // closed and replaced on every change

	gmu   sync.Mutex // guards the chunks (queuechunk.go):
	open  *task      // the chunk that items join, waiting in the backlog; nil: the next item starts one
	sizer chunkSizer
}

func (q *queue) wake() { // with mu held
	close(q.changed)
	q.changed = make(chan struct{})
}

// Put adds an item, blocking while the queue is at its capacity; ctx bounds only that wait
// (the item, once put, runs to its end). An item of type []byte is sent from its own memory,
// without a copy (as Func.Submit's input): do not modify it until its outcome is out.
func (q *Queue[In, Out]) Put(ctx context.Context, in In) error {
	qq := q.q
	qq.mu.Lock()
	for {
		if qq.closed {
			qq.mu.Unlock()
			return ErrQueueClosed
		}
		if qq.cfg.Capacity <= 0 || qq.unfinished < qq.cfg.Capacity {
			break
		}
		wait := qq.changed
		qq.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return ctx.Err()
		}
		qq.mu.Lock()
	}
	index := qq.enter()
	qq.mu.Unlock()
	if qq.backend != nil {
		qq.backendSubmit(context.WithoutCancel(ctx), index, in, 0)
		return nil
	}
	t, o := qq.item(ctx, index, nil)
	qq.submit(t, in, o)
	return nil
}

// backendSubmit gives item index (put by the item numbered putBy-1, if putBy > 0) to the
// backend, with its follow-ups put on the queue if the backend carries them.
func (q *queue) backendSubmit(ctx context.Context, index int, in any, putBy int) {
	t := &task{id: uint64(index) + 1, handler: q.handler, ctx: ctx, index: index, queue: q, putBy: putBy, done: make(chan struct{})}
	done := func(result msgpack.RawMessage, err error) { t.settle(result, err) }
	fb, ok := q.backend.(FollowUpBackend)
	if !ok {
		q.backend.Submit(ctx, q.handler, index, in, done)
		return
	}
	fb.SubmitFollowing(ctx, q.handler, index, in, done, func(item msgpack.RawMessage) {
		q.mu.Lock()
		i := q.enter()
		q.mu.Unlock()
		q.backendSubmit(ctx, i, item, index+1)
	})
}

// enter counts a new item and returns its index. Called with mu held.
func (q *queue) enter() int {
	q.unfinished++
	q.puts++
	return q.puts - 1
}

// followUp puts an item a handler sent with child.Put while running parent. The worker's
// reader calls it before it reads parent's answer, so Join cannot see the queue empty between.
func (q *queue) followUp(parent *task, payload msgpack.RawMessage) {
	q.mu.Lock()
	index := q.enter()
	q.mu.Unlock()
	t, o := q.item(parent.ctx, index, parent)
	q.submit(t, payload, o)
}

// settled takes the outcome of one of its items.
func (q *queue) settled(t *task) {
	if took := t.took.Load(); t.err == nil && took > 0 && q.pool != nil && q.sizer.fixed == 0 { // only the automatic size uses it
		q.gmu.Lock()
		q.sizer.answered(1, time.Duration(took))
		q.gmu.Unlock()
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.results = append(q.results, t)
	if !q.cfg.ManualDone {
		q.unfinished--
	}
	q.wake()
}

// TaskDone marks one item done, with QueueConfig.ManualDone. Calling it more times than items
// were put is an error, as in Python.
func (q *Queue[In, Out]) TaskDone() error {
	qq := q.q
	qq.mu.Lock()
	defer qq.mu.Unlock()
	if !qq.cfg.ManualDone {
		return errors.New("supervise: TaskDone on a queue without ManualDone: items are done when their handler returns")
	}
	if qq.unfinished == 0 {
		return errors.New("supervise: TaskDone called more times than items were put")
	}
	qq.unfinished--
	qq.wake()
	return nil
}

// Join waits until every item put so far, and every follow-up they put, is done, or until ctx
// ends.
func (q *Queue[In, Out]) Join(ctx context.Context) error {
	qq := q.q
	for {
		qq.mu.Lock()
		n, wait := qq.unfinished, qq.changed
		qq.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return fmt.Errorf("joining queue %q with %d items not done: %w", qq.handler, n, ctx.Err())
		}
	}
}

// Close says no more items will be Put by the caller (handlers may still put follow-ups while
// items run). Results ends once the queue is closed and every item is done.
func (q *Queue[In, Out]) Close() {
	q.q.mu.Lock()
	defer q.q.mu.Unlock()
	q.q.closed = true
	q.q.wake()
}

// Results yields the outcome of every item as it completes; Index is the item's number in the
// order put (follow-ups numbered as they are put). It ends when ctx ends, or once the queue is
// closed, every item is done and every outcome was yielded. Each outcome is yielded once, to
// one caller.
func (q *Queue[In, Out]) Results(ctx context.Context) iter.Seq[Result[Out]] {
	qq := q.q
	return func(yield func(Result[Out]) bool) {
		for {
			qq.mu.Lock()
			if len(qq.results) > 0 {
				t := qq.results[0]
				qq.results[0] = nil
				qq.results = qq.results[1:]
				qq.mu.Unlock()
				v, err := decode[Out](t)
				if !yield(Result[Out]{Index: t.index, Value: v, Err: err}) {
					return
				}
				continue
			}
			finished, wait := qq.closed && qq.unfinished == 0, qq.changed
			qq.mu.Unlock()
			if finished {
				return
			}
			select {
			case <-wait:
			case <-ctx.Done():
				return
			}
		}
	}
}
