package jetstream

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/supervise-dev/supervise/channel"
	"github.com/supervise-dev/supervise/internal/tracectx"
	"github.com/supervise-dev/supervise/supervisor"
	"github.com/vmihailenco/msgpack/v5"
)

// ServeConfig is how a worker machine takes part in a queue.
type ServeConfig struct {
	Config
	// Hold is how many deliveries (a task, or a batch of tasks sent together) the machine
	// holds at once: pulled, not yet answered. Zero: four per worker process of the pool.
	Hold int
	// Drain is how long a machine told to stop lets the tasks it holds finish; those still
	// running after it are cancelled and handed back (nacked) for another machine. Zero:
	// AckWait.
	Drain time.Duration
	// Metrics, if set, gets the queue's depth and dead letters, read from the server at each
	// scrape (the pool's own metrics go where its supervisor.Config.Metrics says).
	Metrics prometheus.Registerer
	// Heartbeat is how often the machine tells the others it is alive, and which tasks it
	// holds; one silent for three heartbeats is taken for dead, and the live machines hand
	// its tasks back to the queue at once (within AckWait/2 of its last heartbeat; past it,
	// the server does). Zero: one second.
	Heartbeat time.Duration
	// StatsInterval is how often the machine publishes its MachineStats (its pool's Stats and
	// the queue's depth) for a live view (WatchMachines, supervise serve --ui). Zero: one
	// second; negative: never.
	StatsInterval time.Duration
}

// Serve makes this machine a worker of the queue: it pulls tasks from the server for pool,
// runs each on pool's workers, stores its outcome and only then acks it. While a task runs its
// delivery is kept with an in-progress ack every AckWait/4; if this machine is lost, the
// server gives the task to another once AckWait passes without one.
//
// A task whose worker process died (crashed, was killed, hung) is handed back for another
// delivery, up to MaxDeliver; at the last one its error is its outcome and the task is
// terminated (a poison item kills every worker it meets). A handler's error, a time or memory
// limit are outcomes at once. A message that is not a task of this protocol goes to the
// queue's dead-letter subject.
//
// Serve returns when ctx ends, after the tasks it holds have finished or, past Drain, have
// been handed back; it does not close pool.
func Serve(ctx context.Context, nc *nats.Conn, pool *supervisor.Pool, cfg ServeConfig) error {
	if cfg.Logger == nil { // where the pool logs, not slog.Default()
		cfg.Logger = pool.Logger()
	}
	var err error
	if cfg.Config, err = cfg.Config.withDefaults(); err != nil {
		return err
	}
	if cfg.Hold <= 0 {
		cfg.Hold = max(1, 4*len(pool.Workers()))
	}
	if cfg.Drain <= 0 {
		cfg.Drain = cfg.AckWait
	}
	s, err := openStreams(ctx, nc, cfg.Config)
	if err != nil {
		return err
	}
	cons, err := s.consumer(ctx)
	if err != nil {
		return err
	}
	if cfg.Metrics != nil {
		if err := cfg.Metrics.Register(queueCollector{s}); err != nil {
			return fmt.Errorf("ServeConfig.Metrics: %w", err)
		}
	}
	host, _ := os.Hostname()
	keys, err := newSealKeys()
	if err != nil {
		return err
	}
	m := &machine{s: s, cfg: cfg, pool: pool, name: fmt.Sprintf("%s/%d", host, os.Getpid()), keys: keys, slots: make(chan struct{}, cfg.Hold), storing: make(chan struct{}, maxStoring),
		cancels: newCancels(time.Duration(cfg.MaxDeliver) * cfg.AckWait)}
	sub, err := nc.Subscribe(cfg.cancelSubject("*"), m.cancels.cancel)
	if err != nil {
		return fmt.Errorf("listening for cancels: %w", err)
	}
	defer sub.Unsubscribe()
	// Tasks run under runCtx, which outlives ctx by Drain; the heartbeats go on until they end.
	runCtx, stopRuns := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRuns()
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = time.Second
	}
	m.live = newLiveness(m, cfg.Heartbeat)
	beating, stopBeats := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBeats()
	stopped, err := m.live.start(beating)
	if err != nil {
		return fmt.Errorf("announcing the machine: %w", err)
	}
	defer stopped()
	defer stopBeats()
	if cfg.StatsInterval == 0 {
		cfg.StatsInterval = time.Second
	}
	if cfg.StatsInterval > 0 {
		stopStats := m.publishStats(beating, cfg.StatsInterval)
		defer func() { stopBeats(); stopStats() }()
	}
	m.pull(ctx, cons, runCtx)
	drained := make(chan struct{})
	go func() { m.running.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(cfg.Drain):
		cfg.Logger.Warn("jetstream: stopping: handing back the tasks still running", "queue", cfg.Queue, "drain", cfg.Drain)
		stopRuns()
		<-drained
	}
	return nil
}

// machine is one worker machine's side of a queue.
type machine struct {
	s       *streams
	cfg     ServeConfig
	pool    *supervisor.Pool
	name    string        // host/pid, on every result it stores
	keys    *sealKeys     // the machine's: it seals results with them
	slots   chan struct{} // one per task held to run
	storing chan struct{} // one per task whose outcome is being stored
	running sync.WaitGroup
	cancels *cancels
	live    *liveness
}

// pull fetches tasks while there is room for them, until ctx ends. From then on it starts no
// task: what its last pull brings (for up to a second) goes back to the queue at once.
func (m *machine) pull(ctx context.Context, cons natsjs.Consumer, runCtx context.Context) {
	backoff := time.Duration(0)
	for ctx.Err() == nil {
		select { // room for one more, at least
		case m.slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		room := 1
		for room < cap(m.slots) && len(m.slots) < cap(m.slots) {
			m.slots <- struct{}{}
			room++
		}
		batch, err := cons.Fetch(room, natsjs.FetchMaxWait(time.Second))
		got := 0
		if err == nil {
			for msg := range batch.Messages() {
				if ctx.Err() != nil { // told to stop: a pull still pending brings tasks for others
					msg.Nak()
					continue
				}
				got++
				m.running.Add(1)
				go m.run(runCtx, msg)
			}
			err = batch.Error()
		}
		for ; got < room; got++ { // the room not filled
			<-m.slots
		}
		if err != nil && !errors.Is(err, natsjs.ErrNoMessages) && !errors.Is(err, nats.ErrTimeout) && ctx.Err() == nil {
			backoff = min(2*time.Second, max(100*time.Millisecond, 2*backoff))
			m.cfg.Logger.Warn("jetstream: fetching tasks", "queue", m.cfg.Queue, "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
			}
			continue
		}
		backoff = 0
	}
}

// run runs the tasks of one delivery to their end: their outcomes stored and the delivery
// acked, or the delivery handed back with the outcomes it has stored.
func (m *machine) run(ctx context.Context, msg natsjs.Msg) {
	defer m.running.Done()
	// Its slot is for running it: once its handlers are done, storing its outcomes goes on
	// beside the next delivery (a store slot of its own), so the pool is not left waiting on
	// the server's round trips.
	slot := sync.OnceFunc(func() { <-m.slots })
	defer slot()
	m.live.hold(msg.Reply()) // until it is acked or handed back: if this machine dies, another hands it back
	defer m.live.release(msg.Reply())
	d, ok := m.open(ctx, msg)
	if !ok {
		return
	}
	todo := m.unrecorded(ctx, d)
	if len(todo) == 0 { // earlier deliveries recorded every outcome
		msg.Ack()
		return
	}
	// The delivery stays in progress until it is acknowledged: running its tasks, and then
	// storing their outcomes (a result, or a dead letter of several megabytes) may each
	// outlast AckWait on a busy machine, and the server would deliver it again.
	stop := m.keepInProgress(msg)
	defer stop()
	ends := make([]taskEnd, len(todo))
	var wg sync.WaitGroup
	for k, i := range todo {
		wg.Add(1)
		go func() { defer wg.Done(); ends[k] = m.runTask(ctx, d, i) }()
	}
	wg.Wait()
	var took time.Duration // a task's, on average: its submitter sizes batches by it
	for _, e := range ends {
		took += e.took
	}
	took /= time.Duration(len(ends))
	m.storing <- struct{}{}
	defer func() { <-m.storing }()
	slot()
	m.settle(ctx, d, ends, took)
}

// taskEnd is how one task of a delivery ended on this machine.
type taskEnd struct {
	at        int // its position in the delivery
	result    msgpack.RawMessage
	err       error
	reports   int // reports and follow-ups it sent
	took      time.Duration
	cancelled bool // by its submitter: it has no outcome to store
}

// runTask runs the task at position i of d on the pool, forwarding its reports and follow-ups.
func (m *machine) runTask(ctx context.Context, d *delivery, i int) (end taskEnd) {
	call := d.tasks[i]
	end.at = i
	// Its submitter may cancel it: then it is cancelled as the local pool cancels a call
	// (its handler's context, and a kill past the cancel grace), and neither answered nor
	// handed back.
	taskCtx, cancelTask := context.WithCancelCause(tracectx.Into(ctx, call.Trace)) // the submitter's trace goes on to the worker
	defer cancelTask(nil)
	if !m.cancels.start(d.run, call.ID, cancelTask) {
		end.cancelled = true
		return end
	}
	defer m.cancels.end(d.run, call.ID)
	var puts atomic.Int64
	var lostPut atomic.Pointer[error]      // a follow-up that could not be sent fails the task: it would be lost
	put := func(item msgpack.RawMessage) { // from the worker's reader, before the answer
		if err := m.forward(d, call.ID, item, "put"); err != nil {
			lostPut.CompareAndSwap(nil, &err)
			return
		}
		puts.Add(1)
	}
	f := supervisor.Bind[msgpack.RawMessage, msgpack.RawMessage](m.pool, call.Name).WithFollowUps(put).Submit(taskCtx, call.Payload)
	end.reports = m.forwardReports(f, d, call.ID)
	end.result, end.err = f.Get(context.Background())
	end.took = f.Took()
	end.reports += int(puts.Load())
	if lost := lostPut.Load(); lost != nil && end.err == nil {
		end.result, end.err = nil, fmt.Errorf("a follow-up it put (child.Put) could not be sent: %w", *lost)
	}
	end.cancelled = context.Cause(taskCtx) == errCancelled
	return end
}

// forwardReports sends the task's reports to its submitter as the handler sends them, until
// the task ends; it returns how many it sent.
func (m *machine) forwardReports(f *supervisor.Future[msgpack.RawMessage], d *delivery, id uint64) int {
	n := 0
	for r := range f.Reports(context.Background()) {
		if err := m.forward(d, id, r.Raw(), ""); err != nil {
			m.cfg.Logger.Warn("jetstream: a report dropped", "from", d.from, "task", id, "err", err)
			continue
		}
		n++
	}
	return n
}

// forward sends one report (kind ""), follow-up (kind "put") or note of a worker's death
// (kind "died") of task id of d to its submitter, sealed as its outcome is.
func (m *machine) forward(d *delivery, id uint64, body []byte, kind string) error {
	out := nats.NewMsg(m.cfg.reportsSubject(d.run))
	out.Header.Set(headerTask, strconv.FormatUint(id, 10))
	out.Header.Set(headerDeliveries, strconv.FormatUint(d.number, 10))
	if kind != "" {
		out.Header.Set(headerKind, kind)
	}
	if kind == "died" {
		out.Header.Set(headerWorker, m.name)
	}
	if err := m.seal(out, d, body); err != nil {
		return err
	}
	if len(out.Data) > m.s.limit-headerRoom {
		return fmt.Errorf("%w: %d bytes, the server takes messages of %d at most", ErrTooLarge, len(out.Data), m.s.limit)
	}
	return m.s.nc.PublishMsg(out)
}

// keepInProgress tells the server every AckWait/4 that msg is still being worked on, until
// the returned stop is called (which waits for the ticking goroutine).
func (m *machine) keepInProgress(msg natsjs.Msg) (stop func()) {
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(m.cfg.AckWait / 4)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				_ = msg.InProgress()
			}
		}
	}()
	return func() { close(done); <-stopped }
}

// outcome encodes a task's result or error as a result message. A result too large for the
// server becomes an error, and the result's head goes to the dead-letter subject (not when
// the result is to be sealed: then only the reason goes there).
func (m *machine) outcome(ctx context.Context, call channel.Message, result msgpack.RawMessage, err error, from string, sealed bool) []byte {
	if err == nil {
		b := channel.AppendMessage(nil, channel.Message{Kind: channel.KindResult, ID: call.ID, Payload: result})
		if len(b) <= m.s.limit-headerRoom-sealOverhead {
			return b
		}
		err = fmt.Errorf("%w: the result is %d bytes, the server takes messages of %d at most", ErrTooLarge, len(result), m.s.limit)
		if sealed {
			b = nil
		}
		m.s.deadLetter(ctx, b, from, "result too large: "+err.Error())
	}
	return channel.AppendMessage(nil, channel.Message{Kind: channel.KindError, ID: call.ID, Err: remoteError(err)})
}

// maxStoring is how many outcomes a machine stores at once, beside the tasks it runs.
const maxStoring = 256

// headerRoom is what a message's headers and envelope may take beside its payload.
const headerRoom = 4 << 10

// handBack reports whether a task that failed with err should go to another delivery: its
// worker process died under it without a limit being the cause, or the pool is stopping.
func handBack(err error) bool {
	if errors.Is(err, supervisor.ErrTimeout) || errors.Is(err, supervisor.ErrMemoryLimit) {
		return false
	}
	return errors.Is(err, supervisor.ErrWorkerDied) || errors.Is(err, supervisor.ErrPoolClosed) || errors.Is(err, supervisor.ErrPoolBroken)
}
