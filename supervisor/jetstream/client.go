package jetstream

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/supervise-dev/supervise/channel"
	"github.com/supervise-dev/supervise/internal/tracectx"
	"github.com/supervise-dev/supervise/supervisor"
	"github.com/vmihailenco/msgpack/v5"
)

// Client submits tasks to a queue on a JetStream server and collects their outcomes: every
// task submitted ends exactly once, with the result or error that the first machine to finish
// it stored, whatever the number of deliveries it took. It is the QueueBackend of
// supervisor.NewQueueOn, and Submit gives futures.
//
// Each Client is one run: its tasks and results carry the run's id, so that many clients can
// share a queue. Close ends the run.
type Client struct {
	s    *streams
	cfg  Config
	run  string
	keys *sealKeys // the run's: results are sealed to it

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	nextID atomic.Uint64
	wg     sync.WaitGroup // publishers, and recorders of lost tasks; added to only while open

	mu       sync.Mutex
	pending  map[uint64]*pendingTask
	queued   []uint64          // submitted, not yet in a batch (ascending)
	batches  map[uint64]*batch // published, with tasks not yet settled
	unstored map[uint64]bool   // batches whose last task was cancelled before the server stored them
	batchNum uint64            // the last batch's number
	closed   bool

	sizer   sizer
	pause   sync.Mutex    // held by the flusher while it makes a batch
	wake    chan struct{} // the flusher: tasks are queued
	flushed chan struct{} // closed when the flusher has returned

	results natsjs.ConsumeContext
	lost    *nats.Subscription
	reports *nats.Subscription
}

// pendingTask is a task submitted and not yet settled.
type pendingTask struct {
	handler string
	call    []byte // its envelope, until it goes in a batch
	batch   *batch // the message it went in, once it went: its result is bound to its bytes
	done    func(result msgpack.RawMessage, err error)
	stop    func() bool              // stops watching the submitter's context
	reports *taskReports             // counted always, kept for a future's Reports
	put     func(msgpack.RawMessage) // takes its follow-ups (a queue's item); nil: none allowed
	misuse  error                    // a follow-up or report it may not send: its outcome
	died    error                    // a worker died under it (a machine's note): its error if it is lost
	diedOn  string                   // that machine

	// The outcome, once it came, waiting for the reports sent before it (finish).
	final         func()
	finalDelivery uint64
	finalReports  int
	finalTimer    *time.Timer
}

// NewClient opens (creating them if needed) the queue's streams on nc's server and starts
// collecting this run's results.
func NewClient(ctx context.Context, nc *nats.Conn, cfg Config) (*Client, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s, err := openStreams(ctx, nc, cfg)
	if err != nil {
		return nil, err
	}
	keys, err := newSealKeys()
	if err != nil {
		return nil, err
	}
	c := &Client{s: s, cfg: cfg, run: nuid.Next(), keys: keys, pending: map[uint64]*pendingTask{}, batches: map[uint64]*batch{}, unstored: map[uint64]bool{},
		wake: make(chan struct{}, 1), flushed: make(chan struct{})}
	c.sizer.fixed = cfg.MaxBatch
	c.ctx, c.cancel = context.WithCancel(context.Background())
	cons, err := s.js.OrderedConsumer(ctx, cfg.resultsStream(), natsjs.OrderedConsumerConfig{
		FilterSubjects: []string{cfg.resultsOf(c.run)},
	})
	if err == nil {
		// The ordered consumer recovers by itself (a missed heartbeat, a reconnect: it
		// starts again after the last result read); what it met on the way is logged.
		c.results, err = cons.Consume(c.collect, natsjs.ConsumeErrHandler(func(_ natsjs.ConsumeContext, err error) {
			cfg.Logger.Warn("jetstream: reading results", "queue", cfg.Queue, "run", c.run, "err", err)
		}))
	}
	if err != nil {
		c.cancel()
		return nil, fmt.Errorf("reading results from stream %s: %w", cfg.resultsStream(), err)
	}
	if c.reports, err = nc.Subscribe(cfg.reportsSubject(c.run), c.report); err != nil {
		c.results.Stop()
		c.cancel()
		return nil, err
	}
	// A task delivered MaxDeliver times whose last machine was lost has no outcome: the
	// server says so in an advisory, and the task's own client records one.
	c.lost, err = nc.Subscribe(fmt.Sprintf("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.%s.%s", cfg.tasksStream(), consumerName), c.maxDeliveries)
	if err != nil {
		c.results.Stop()
		c.reports.Unsubscribe()
		c.cancel()
		return nil, err
	}
	go c.flushing()
	return c, nil
}

// Run is the client's run id: its tasks' results are on subjects supervise.QUEUE.results.RUN.*.
func (c *Client) Run() string { return c.run }

// Pulls says whether the queue's machines take tasks: how many deliveries they have taken,
// all runs together, and how many of their requests for tasks wait now. A queue no machine
// has ever pulled from has neither.
func (c *Client) Pulls(ctx context.Context) (delivered uint64, waiting int, err error) {
	cons, err := c.s.tasks.Consumer(ctx, consumerName)
	if errors.Is(err, natsjs.ErrConsumerNotFound) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, err
	}
	info := cons.CachedInfo()
	return info.Delivered.Consumer, info.NumWaiting, nil
}

// Submit sends one task for handler and calls done exactly once with its outcome. It is
// supervisor.QueueBackend's method; index is not used (ids are the client's own).
func (c *Client) Submit(ctx context.Context, handler string, index int, in any, done func(result msgpack.RawMessage, err error)) {
	c.submit(ctx, handler, in, done, &taskReports{}, nil)
}

// SubmitFollowing is Submit, with the follow-ups (child.Put) that the task's handler puts on
// its machine given to put, in order, before done: supervisor.FollowUpBackend's method, so
// that a queue on a Client carries them. A task delivered more than once may put its
// follow-ups more than once.
func (c *Client) SubmitFollowing(ctx context.Context, handler string, index int, in any, done func(result msgpack.RawMessage, err error), put func(item msgpack.RawMessage)) {
	c.submit(ctx, handler, in, done, &taskReports{}, put)
}

// submit encodes in, registers the task and queues it for the next batch; its reports are
// counted in reports (and kept, if reports.keep), its follow-ups given to put.
func (c *Client) submit(ctx context.Context, handler string, in any, done func(msgpack.RawMessage, error), reports *taskReports, put func(msgpack.RawMessage)) uint64 {
	id := c.nextID.Add(1)
	fail := func(err error) {
		done(nil, &TaskError{Queue: c.cfg.Queue, ID: id, Handler: handler, Err: err})
	}
	payload, err := channel.Marshal(in)
	if err != nil {
		fail(fmt.Errorf("encoding the input: %w", err))
		return id
	}
	call := channel.AppendMessage(nil, channel.Message{Kind: channel.KindCall, ID: id, Name: handler, Payload: payload, Trace: tracectx.FromContext(ctx)})
	if len(call) > c.s.limit-headerRoom {
		err := fmt.Errorf("%w: the task is %d bytes, the server takes messages of %d at most", ErrTooLarge, len(call), c.s.limit)
		c.s.deadLetter(c.ctx, call, fmt.Sprintf("run %s task %d", c.run, id), "task too large: "+err.Error())
		fail(err)
		return id
	}
	if err := ctx.Err(); err != nil {
		fail(err)
		return id
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		fail(ErrClosed)
		return id
	}
	p := &pendingTask{handler: handler, call: call, done: done, reports: reports, put: put}
	c.pending[id] = p
	c.queued = append(c.queued, id)
	// A cancel (or the deadline) of ctx reaches the machine that holds the task.
	p.stop = context.AfterFunc(ctx, func() { c.cancelTask(id, context.Cause(ctx)) })
	c.mu.Unlock()
	c.wakeFlusher()
	return id
}

// take removes task id from the pending ones (nil if it is not one) and stops watching its
// context. The caller holds c.mu.
func (c *Client) take(id uint64) *pendingTask {
	p := c.pending[id]
	if p != nil {
		delete(c.pending, id)
		p.release()
		if b := p.batch; b != nil {
			if b.open--; b.open == 0 {
				delete(c.batches, b.num)
				c.wakeFlusher() // one message fewer out
			}
		}
	}
	return p
}

// release lets go of what watches a task that is settled now: its context, the wait for its
// reports, and the reports' stream (which ends).
func (p *pendingTask) release() {
	p.stop()
	if p.finalTimer != nil {
		p.finalTimer.Stop()
	}
	p.reports.end()
}

// maxDeliveries records an outcome for one of this run's tasks that the server stopped
// delivering after MaxDeliver lost deliveries.
func (c *Client) maxDeliveries(m *nats.Msg) {
	var adv struct {
		StreamSeq  uint64 `json:"stream_seq"`
		Deliveries uint64 `json:"deliveries"`
	}
	if json.Unmarshal(m.Data, &adv) != nil {
		return
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.wg.Add(1) // Close waits for it
	c.mu.Unlock()
	go func() {
		defer c.wg.Done()
		ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
		defer cancel()
		raw, err := c.s.tasks.GetMsg(ctx, adv.StreamSeq)
		if err != nil || raw.Header.Get(headerRun) != c.run {
			return // another run's, or answered after all
		}
		num, err := strconv.ParseUint(raw.Header.Get(headerBatch), 10, 64)
		if err != nil {
			return // not a batch: not this client's
		}
		if adv.Deliveries < uint64(c.cfg.MaxDeliver) {
			// Not what the server would say: a client published it.
			c.cfg.Logger.Warn("jetstream: ignoring a max-deliveries advisory for a batch not in its last delivery", "queue", c.cfg.Queue, "batch", num, "deliveries", adv.Deliveries)
			return
		}
		// The outcomes are settled here, not stored: a submitter has no right to publish
		// results (Roles), and a result a machine stores after all is then ignored.
		c.mu.Lock()
		b := c.batches[num]
		c.mu.Unlock()
		if b == nil || sha256.Sum256(raw.Data) != b.digest {
			return // settled already, or not the batch this run sent
		}
		lost := fmt.Errorf("%w: delivered %d times (MaxDeliver), each time to a machine that was lost before it answered", ErrLost, adv.Deliveries)
		for _, id := range b.ids {
			c.mu.Lock()
			p := c.pending[id]
			if p == nil || p.batch != b {
				c.mu.Unlock()
				continue
			}
			c.take(id)
			te := &TaskError{Queue: c.cfg.Queue, ID: id, Handler: p.handler, Deliveries: int(adv.Deliveries), Err: remoteError(lost)}
			if p.died != nil { // a worker died under it, by a machine's note: that is the cause
				te.Err, te.Machine = p.died, p.diedOn
			}
			c.mu.Unlock()
			p.done(nil, te)
		}
		c.s.tasks.DeleteMsg(ctx, adv.StreamSeq)
	}()
}

// Close ends the run: tasks without an outcome yet fail with ErrClosed, are cancelled on the
// machines that hold them and removed from the queue; and the run's results are removed from
// the server.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	left := c.pending
	c.pending = nil
	var seqs []uint64
	for _, b := range c.batches {
		if b.seq != 0 {
			seqs = append(seqs, b.seq)
		}
	}
	for _, p := range left {
		p.release()
	}
	c.mu.Unlock()
	if len(left) > 0 {
		c.announceCancel("*")
		c.withdrawAll(seqs)
	}
	c.cancel()
	<-c.flushed
	c.wg.Wait()
	c.results.Stop()
	c.lost.Unsubscribe()
	c.reports.Unsubscribe()
	for id, p := range left {
		p.done(nil, &TaskError{Queue: c.cfg.Queue, ID: id, Handler: p.handler, Err: ErrClosed})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	results, err := c.s.js.Stream(ctx, c.cfg.resultsStream())
	if err == nil {
		err = results.Purge(ctx, natsjs.WithPurgeSubject(c.cfg.resultsOf(c.run)))
	}
	if err != nil {
		return fmt.Errorf("removing the results of run %s: %w", c.run, err)
	}
	return nil
}

var _ supervisor.FollowUpBackend = (*Client)(nil)
