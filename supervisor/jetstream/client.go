package jetstream

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/supervise-dev/supervise/channel"
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
	unstored map[uint64]bool // cancelled before the server said where it stored them
	closed   bool

	results natsjs.ConsumeContext
	lost    *nats.Subscription
	reports *nats.Subscription
}

// pendingTask is a task submitted and not yet settled.
type pendingTask struct {
	handler string
	digest  [sealDigest]byte // of the task as published: its result is bound to it
	done    func(result msgpack.RawMessage, err error)
	seq     uint64                   // its message in the tasks stream, once the server has stored it
	stop    func() bool              // stops watching the submitter's context
	reports *taskReports             // counted always, kept for a future's Reports
	put     func(msgpack.RawMessage) // takes its follow-ups (a queue's item); nil: none allowed
	misuse  error                    // a follow-up or report it may not send: its outcome

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
	c := &Client{s: s, cfg: cfg, run: nuid.Next(), keys: keys, pending: map[uint64]*pendingTask{}, unstored: map[uint64]bool{}}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	cons, err := s.js.OrderedConsumer(ctx, cfg.resultsStream(), natsjs.OrderedConsumerConfig{
		FilterSubjects: []string{cfg.resultsOf(c.run)},
	})
	if err == nil {
		c.results, err = cons.Consume(c.collect)
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

// submit encodes in, registers the task and publishes it; its reports are counted in reports
// (and kept, if reports.keep), its follow-ups given to put.
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
	msg := nats.NewMsg(c.cfg.tasksSubject())
	msg.Header.Set(headerRun, c.run)
	msg.Header.Set(headerSeal, c.keys.pubText)
	msg.Data = channel.AppendMessage(nil, channel.Message{Kind: channel.KindCall, ID: id, Name: handler, Payload: payload})
	if len(msg.Data) > c.s.limit-headerRoom {
		err := fmt.Errorf("%w: the task is %d bytes, the server takes messages of %d at most", ErrTooLarge, len(msg.Data), c.s.limit)
		c.s.deadLetter(c.ctx, msg.Data, fmt.Sprintf("run %s task %d", c.run, id), "task too large: "+err.Error())
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
	p := &pendingTask{handler: handler, digest: sha256.Sum256(msg.Data), done: done, reports: reports, put: put}
	c.pending[id] = p
	c.wg.Add(1)
	// A cancel (or the deadline) of ctx reaches the machine that holds the task.
	p.stop = context.AfterFunc(ctx, func() { c.cancelTask(id, context.Cause(ctx)) })
	c.mu.Unlock()
	msgID := c.run + "." + strconv.FormatUint(id, 10)
	ack, err := c.s.js.PublishMsgAsync(msg, natsjs.WithMsgID(msgID))
	go c.confirm(id, msg, msgID, ack, err)
	return id
}

// confirm waits for the server to store a task, publishing it again (the same message id, so
// stored once) until it does or the client closes: a server restarting loses nothing sent.
func (c *Client) confirm(id uint64, msg *nats.Msg, msgID string, ack natsjs.PubAckFuture, err error) {
	defer c.wg.Done()
	for attempt := 1; ; attempt++ {
		if err == nil {
			select {
			case pa := <-ack.Ok():
				c.stored(id, pa.Sequence)
				return
			case err = <-ack.Err():
			case <-c.ctx.Done():
				return // Close fails the task
			}
		}
		delay := min(2*time.Second, time.Duration(attempt)*100*time.Millisecond)
		c.cfg.Logger.Warn("jetstream: publishing a task failed; again", "queue", c.cfg.Queue, "task", id, "attempt", attempt, "err", err, "retry_in", delay)
		select {
		case <-time.After(delay):
		case <-c.ctx.Done():
			return
		}
		ack, err = c.s.js.PublishMsgAsync(msg, natsjs.WithMsgID(msgID))
	}
}

// take removes task id from the pending ones (nil if it is not one) and stops watching its
// context. The caller holds c.mu.
func (c *Client) take(id uint64) *pendingTask {
	p := c.pending[id]
	if p != nil {
		delete(c.pending, id)
		p.release()
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

// collect takes one result message of this run.
func (c *Client) collect(msg natsjs.Msg) {
	subject := msg.Subject()
	id, err := strconv.ParseUint(subject[strings.LastIndexByte(subject, '.')+1:], 10, 64)
	if err != nil {
		c.s.deadLetter(c.ctx, msg.Data(), subject, "result on a subject without a task id")
		return
	}
	c.mu.Lock()
	p := c.pending[id]
	c.mu.Unlock()
	if p == nil && id > c.nextID.Load() {
		// Not submitted yet, so no machine has run it: another client published this. The
		// stream keeps one result per task, so it would shut out the task's own: remove it.
		c.cfg.Logger.Warn("jetstream: removing a result for a task this run has not submitted", "queue", c.cfg.Queue, "subject", subject, "task", id)
		if meta, err := msg.Metadata(); err == nil {
			if err := c.s.results.DeleteMsg(c.ctx, meta.Sequence.Stream); err != nil {
				c.cfg.Logger.Error("jetstream: could not remove a result for a task not submitted", "subject", subject, "err", err)
			}
		}
		return
	}
	if p == nil {
		return // settled already (a result seen again after a reconnect)
	}
	deliveries, _ := strconv.Atoi(msg.Headers().Get(headerDeliveries))
	reports, _ := strconv.Atoi(msg.Headers().Get(headerReports))
	result, err := c.outcome(msg, p, id, deliveries)
	c.finish(id, p, uint64(deliveries), reports, func() { p.done(result, err) })
}

// outcome reads a result message of task p: its result, or the error it stands for.
func (c *Client) outcome(msg natsjs.Msg, p *pendingTask, id uint64, deliveries int) (msgpack.RawMessage, error) {
	subject := msg.Subject()
	te := &TaskError{Queue: c.cfg.Queue, ID: id, Handler: p.handler, Machine: msg.Headers().Get(headerWorker), Deliveries: deliveries}
	data, err := c.unseal(msg, p)
	if err != nil {
		c.cfg.Logger.Warn("jetstream: a result not for this run's task", "queue", c.cfg.Queue, "subject", subject, "machine", te.Machine, "err", err)
		te.Err = fmt.Errorf("result %s: %w: %v", subject, ErrForged, err)
		return nil, te
	}
	env, err := channel.ParseMessage(data)
	switch {
	case err != nil:
		te.Err = fmt.Errorf("result %s: %w", subject, err)
		c.s.deadLetter(c.ctx, data, subject, "malformed result: "+err.Error())
	case env.Kind == channel.KindResult:
		return env.Payload, nil
	case env.Kind == channel.KindError && env.Err != nil:
		te.Err = env.Err
	default:
		te.Err = fmt.Errorf("result %s: a %s message, not a result or an error", subject, env.Kind)
		c.s.deadLetter(c.ctx, data, subject, "malformed result: "+te.Err.Error())
	}
	return nil, te
}

// unseal opens a result sealed to the run and checks that it was sealed for task p's bytes.
func (c *Client) unseal(msg natsjs.Msg, p *pendingTask) ([]byte, error) {
	by := msg.Headers().Get(headerSealedBy)
	if by == "" {
		return nil, errors.New("it is not sealed")
	}
	peer, err := parseKey(by)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", headerSealedBy, err)
	}
	digest, env, err := c.keys.open(peer, msg.Data())
	if err != nil {
		return nil, err
	}
	if digest != p.digest {
		return nil, errors.New("it was sealed for a task with other bytes than this run's")
	}
	return env, nil
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
		env, err := channel.ParseMessage(raw.Data)
		if err != nil {
			return
		}
		if adv.Deliveries < uint64(c.cfg.MaxDeliver) {
			// Not what the server would say: a client published it.
			c.cfg.Logger.Warn("jetstream: ignoring a max-deliveries advisory for a task not in its last delivery", "queue", c.cfg.Queue, "task", env.ID, "deliveries", adv.Deliveries)
			return
		}
		// The outcome is settled here, not stored as a result: a submitter has no right to
		// publish results (Roles), and a result a machine stores after all is then ignored.
		c.mu.Lock()
		p := c.take(env.ID)
		c.mu.Unlock()
		if p == nil {
			return // settled already
		}
		lost := fmt.Errorf("%w: delivered %d times (MaxDeliver), each time to a machine that was lost before it answered", ErrLost, adv.Deliveries)
		p.done(nil, &TaskError{Queue: c.cfg.Queue, ID: env.ID, Handler: p.handler, Deliveries: int(adv.Deliveries), Err: remoteError(lost)})
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
	for _, p := range left {
		p.release()
		if p.seq != 0 {
			seqs = append(seqs, p.seq)
		}
	}
	c.mu.Unlock()
	if len(left) > 0 {
		c.announceCancel("*")
		c.withdrawAll(seqs)
	}
	c.cancel()
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
