package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/supervise-dev/supervise/channel"
	"github.com/supervise-dev/supervise/internal/handshake"
	"github.com/supervise-dev/supervise/internal/keeper"
	"github.com/supervise-dev/supervise/internal/procfs"
	"github.com/vmihailenco/msgpack/v5"
)

// worker is one worker process and everything attached to it.
//
// Ownership, who closes what:
//   - run (the owner goroutine) reads stdout until EOF or a protocol error, then stops the
//     sender, waits for the waiter, closes stdin, stdout and stderr, fails the tasks still held,
//     and reports to the pool. It is the only goroutine that reads frames.
//   - send is the only goroutine that writes frames (calls and cancels). When it is to take no
//     more calls (the queue is closed, the worker is recycled) it waits for the answers to those
//     it sent, still sending cancels, then closes stdin, which tells the worker to exit.
//   - wait calls cmd.Wait (exactly once), then kills what is left of the process group and sets a
//     deadline on stdout and stderr, so that a grandchild holding a pipe cannot block the readers
//     (what exec.Cmd.WaitDelay does for pipes it creates).
//   - forwardStderr logs stderr lines until EOF or that deadline.
//   - watch enforces time limits and notices a hung worker until run closes quit; run waits
//     for it. Killing (terminate, kill) is SIGTERM to the group, then SIGKILL after
//     Config.StopGrace, from a goroutine that ends when the process is reaped.
type worker struct {
	p        *Pool
	log      *slog.Logger
	id, pid  int
	slot     int // its place among Config.Workers; a replacement takes it over (Stats)
	cmd      *exec.Cmd
	handlers []string
	started  time.Time

	stdin, stdout, stderr *os.File      // the parent's ends (no stdin for a plugin)
	conn                  *channel.Conn // nil for a plugin
	plugin                *pluginLink   // only for a plugin (Config.Plugin)
	tail                  tail

	concurrency int // calls the worker runs at once (its hello says; 1 for the Go SDK)

	cancels  chan uint64   // task ids to send cancels for
	room     chan struct{} // capacity 1: an answer freed a slot
	mu       sync.Mutex
	held     map[uint64]*task // sent and not yet answered: at most Config.InFlight; nil once it ended
	pinned   []*task          // for this worker alone (Broadcast), not yet sent
	draining bool             // the sender takes no more tasks, pinned ones included
	sent     []*task          // the same tasks in the order they were sent (settled ones linger)

	stopping   atomic.Bool   // the pool asked it to finish (stdin closed): an exit is expected
	recycled   atomic.Bool   // it was sent MaxTasksPerWorker calls: replace it once it exits
	sentTotal  int           // calls sent so far; only the sender touches it
	lastSeen   atomic.Int64  // unix nanoseconds of the last frame received
	killReason string        // guarded by mu: why the pool killed it (time limit, hung)
	hung       bool          // guarded by mu
	limit      error         // guarded by mu: the limit it was killed for (memory)
	recycleReq atomic.Bool   // over the soft memory limit: the sender stops feeding it
	lastMem    time.Time     // only the watchdog touches it
	lastCPU    time.Duration // CPU time of its process tree at the watchdog's last look; only the watchdog touches it
	cpuSeen    time.Time     // when the watchdog last saw that tree use CPU; likewise

	strays int // answers, puts and reports for tasks it does not hold; only the reader touches it

	// Figures for Stats.
	tasksDone   atomic.Int64
	tasksFailed atomic.Int64
	maxRSS      atomic.Uint64
	lastAnswer  time.Time    // only the reader touches it
	slowest     []TaskTiming // guarded by mu: its slowest calls
	folded      bool         // guarded by the pool's sampler.mu: its figures are in its slot's totals

	quit       chan struct{} // closed by run: the sender stops
	senderDone chan struct{}
	stderrDone chan struct{}
	watchDone  chan struct{}
	waited     chan struct{} // closed by wait once the process is reaped
	state      *os.ProcessState
}

// startWorker starts one worker process, checks it is ready (a hello of our protocol, or
// Config.Plugin's Connect) and puts it to work.
func (p *Pool) startWorker(slot int) (_ *worker, err error) {
	w := &worker{
		p:          p,
		id:         int(p.nextWorker.Add(1)),
		slot:       slot,
		cancels:    make(chan uint64, 64),
		room:       make(chan struct{}, 1),
		held:       map[uint64]*task{},
		quit:       make(chan struct{}),
		senderDone: make(chan struct{}),
		stderrDone: make(chan struct{}),
		watchDone:  make(chan struct{}),
		waited:     make(chan struct{}),
	}
	defer func() {
		if err != nil {
			p.emit(EventStartFailed{WorkerID: w.id, Err: err})
		}
	}()
	if p.cfg.Plugin != nil {
		err = w.startPlugin()
	} else {
		err = w.startFrames()
	}
	if err != nil {
		return nil, err
	}

	p.mu.Lock()
	p.workers[w] = struct{}{}
	p.wg.Add(1)
	p.mu.Unlock()
	p.emit(EventWorkerStarted{WorkerID: w.id, Pid: w.pid, Handlers: w.handlers})
	w.lastSeen.Store(time.Now().UnixNano())
	go w.send()
	go w.watch()
	go w.run()
	return w, nil
}

func (w *worker) startError(err error) *StartError {
	return &StartError{WorkerID: w.id, Pid: w.pid, Command: w.p.cfg.Command, Err: err}
}

// spawn starts the worker's process, Config.Command with env added to the pool's environment,
// with pipes for stdout and stderr (and stdin, if withStdin; else it reads /dev/null), as the
// leader of its own process group. It starts wait and the stderr forwarder.
func (w *worker) spawn(env []string, withStdin bool) error {
	var child [3]*os.File // the worker's ends: stdin, stdout, stderr
	for i, parent := range []**os.File{&w.stdin, &w.stdout, &w.stderr} {
		if i == 0 && !withStdin {
			continue
		}
		r, wr, err := os.Pipe()
		if err != nil {
			closeAll(child[:]...)
			closeAll(w.stdin, w.stdout, w.stderr)
			return err
		}
		if i == 0 {
			child[i], *parent = r, wr
		} else {
			child[i], *parent = wr, r
		}
	}
	if withStdin {
		growPipe(w.stdin, 1<<20)
	}
	growPipe(w.stdout, 1<<20)

	cfg := &w.p.cfg
	argv := cfg.Command
	if cfg.Plugin != nil && keeper.Available() {
		// A plugin does not take its group down when we die: a keeper between us does.
		if self, err := os.Executable(); err == nil {
			argv = append([]string{self}, cfg.Command...)
			env = append(env, keeper.Key+"=1", fmt.Sprintf("%s=%d", handshake.StopGraceKey, cfg.StopGrace.Milliseconds()))
		}
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	if withStdin { // a nil *os.File in an io.Reader is not a nil Reader
		cmd.Stdin = child[0]
	}
	cmd.Stdout, cmd.Stderr = child[1], child[2]
	cmd.Dir = cfg.Dir
	cmd.Env = append(append(os.Environ(), cfg.Env...), env...)
	cmd.SysProcAttr = sysProcAttr()
	err := w.p.spawner.start(cmd)
	closeAll(child[:]...)
	if err != nil {
		closeAll(w.stdin, w.stdout, w.stderr)
		return err
	}
	w.cmd, w.pid, w.started = cmd, cmd.Process.Pid, time.Now()
	w.log = w.p.log.With("worker", w.id, "pid", w.pid)
	go w.wait()
	go func() {
		defer close(w.stderrDone)
		forwardStderr(w.stderr, w.log, &w.tail)
	}()
	return nil
}

// abort kills a worker that failed to start and waits until it is reaped; e gets its exit
// status and the tail of its stderr.
func (w *worker) abort(e *StartError) *StartError {
	w.kill(syscall.SIGKILL)
	<-w.waited
	<-w.stderrDone
	closeAll(w.stdin, w.stdout, w.stderr)
	e.State, e.Stderr = w.state, w.tail.String()
	return e
}

// startFrames starts a worker that speaks our protocol: it waits for its hello, then runs
// Config.Init on it.
func (w *worker) startFrames() error {
	cfg := &w.p.cfg
	if err := w.spawn(handshake.Env(channel.ProtocolVersion, w.id, cfg.MaxFrame, cfg.Heartbeat, cfg.StopGrace), true); err != nil {
		return w.startError(err)
	}
	rec := &recorder{r: w.stdout, on: true}
	w.conn = channel.NewConn(rec, w.stdin, channel.Options{MaxFrame: cfg.MaxFrame,
		Peer: fmt.Sprintf("worker %d (pid %d)", w.id, w.pid)})
	_ = w.stdout.SetReadDeadline(time.Now().Add(cfg.StartTimeout))
	err := w.handshake()
	if err == nil && cfg.Init.Handler != "" {
		rec.on = false
		err = w.initialize()
	}
	if err != nil {
		e := w.startError(err)
		if rec.on {
			e.Received = rec.quote(w.stdout)
		}
		return w.abort(e)
	}
	_ = w.stdout.SetReadDeadline(time.Time{})
	rec.on = false
	return nil
}

func closeAll(files ...*os.File) {
	for _, f := range files {
		if f != nil {
			f.Close()
		}
	}
}

// handshake reads the first frame and checks that it is a hello of our protocol version.
func (w *worker) handshake() error {
	msgs, err := w.conn.Recv()
	switch {
	case errors.Is(err, io.EOF):
		return fmt.Errorf("%w: stdout closed before a hello (did the worker exit?)", ErrBadHello)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("%w: no hello within %v (Config.StartTimeout)", ErrBadHello, w.p.cfg.StartTimeout)
	case err != nil:
		return fmt.Errorf("%w: %v", ErrBadHello, err)
	}
	h, err := parseHello(msgs)
	if err != nil {
		return err
	}
	w.handlers = h.Handlers
	w.concurrency = max(1, h.Concurrency)
	return nil
}

// parseHello checks that a worker's first frame is one hello of our protocol version.
func parseHello(msgs []channel.Message) (channel.Hello, error) {
	var h channel.Hello
	if len(msgs) != 1 || msgs[0].Kind != channel.KindHello {
		return h, fmt.Errorf("%w: the first frame holds %d message(s), the first a %s, not one hello", ErrBadHello, len(msgs), msgs[0].Kind)
	}
	if err := channel.Unmarshal(msgs[0].Payload, &h); err != nil {
		return h, fmt.Errorf("%w: the hello's payload: %v", ErrBadHello, err)
	}
	if h.Protocol != channel.ProtocolVersion {
		return h, fmt.Errorf("%w: the worker speaks protocol version %d, this parent speaks %d", ErrBadHello, h.Protocol, channel.ProtocolVersion)
	}
	if h.Concurrency < 0 {
		return h, fmt.Errorf("%w: concurrency %d", ErrBadHello, h.Concurrency)
	}
	return h, nil
}

// initialize runs Config.Init on the worker before it takes tasks: one call, whose answer must
// be a result, within what is left of Config.StartTimeout.
func (w *worker) initialize() error {
	init := w.p.cfg.Init
	payload, err := channel.Marshal(init.Input)
	if err != nil {
		return fmt.Errorf("encoding the input of Config.Init: %w", err)
	}
	id := w.p.nextTask.Add(1)
	if err := w.conn.Send(channel.Message{Kind: channel.KindCall, ID: id, Name: init.Handler, Payload: payload}); err != nil {
		return fmt.Errorf("sending Config.Init: %w", err)
	}
	for {
		msgs, err := w.conn.Recv()
		if err != nil {
			return fmt.Errorf("waiting for Config.Init (%s): %w", init.Handler, err)
		}
		w.lastSeen.Store(time.Now().UnixNano())
		for _, m := range msgs {
			switch {
			case m.ID != id:
			case m.Kind == channel.KindResult:
				return nil
			case m.Kind == channel.KindError:
				return fmt.Errorf("Config.Init (%s) failed: %w", init.Handler, m.Err)
			}
		}
	}
}

// recorder keeps the first bytes read from a worker's stdout, to quote them in a start-up error.
type recorder struct {
	r   io.Reader
	on  bool // only touched by the goroutine reading frames
	buf []byte
}

const quoteBytes = 200

func (r *recorder) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if r.on && len(r.buf) < quoteBytes {
		r.buf = append(r.buf, p[:min(n, quoteBytes-len(r.buf))]...)
	}
	return n, err
}

// quote returns the recorded bytes, topped up with whatever f still has within a short wait.
func (r *recorder) quote(f *os.File) []byte {
	if len(r.buf) < quoteBytes {
		_ = f.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		more := make([]byte, quoteBytes-len(r.buf))
		n, _ := io.ReadFull(f, more)
		r.buf = append(r.buf, more[:n]...)
	}
	return r.buf
}

// terminate kills the worker for breaking a limit; reason goes into the error of the tasks it
// was running, why (the typed reason: ErrHung, a *MemoryLimitError, a *TimeoutError) into the
// event. The first reason given is kept.
func (w *worker) terminate(reason string, why error) {
	w.mu.Lock()
	first := w.killReason == ""
	if first {
		w.killReason, w.hung = reason, why == ErrHung
		if _, ok := why.(*MemoryLimitError); ok {
			w.limit = why
		}
	}
	w.mu.Unlock()
	if first { // the watchdog may see the same overdue call or silence on every tick until the end
		w.p.emit(EventWorkerKilled{WorkerID: w.id, Pid: w.pid, Reason: reason, Err: why})
		w.ladder()
	}
}

// kill sends sig to the worker's process group, and to the worker itself through its pidfd
// (os.Process uses one on Linux, so a reused pid is never hit): a worker that left its group
// (setpgid) is still reached.
func (w *worker) kill(sig syscall.Signal) {
	killGroup(w.pid, sig)
	if w.cmd != nil && w.cmd.Process != nil {
		_ = w.cmd.Process.Signal(sig) // "process already finished" once reaped
	}
}

// ladder sends SIGTERM to the worker's process group, then SIGKILL after Config.StopGrace
// unless the worker was reaped first. Safe to call at any time, repeatedly.
func (w *worker) ladder() {
	select {
	case <-w.waited:
		return
	default:
	}
	w.kill(syscall.SIGTERM)
	go w.killUnlessReaped()
}

// killUnlessReaped waits Config.StopGrace for the worker to be reaped, and SIGKILLs its group
// if it was not.
func (w *worker) killUnlessReaped() {
	t := time.NewTimer(w.p.cfg.StopGrace)
	defer t.Stop()
	select {
	case <-w.waited:
	case <-t.C:
		w.kill(syscall.SIGKILL)
	}
}

// watch checks the worker's time limits every tick until run closes quit: a worker silent for
// HangTimeout is killed as hung; a call running TaskTimeout is sent a cancel; a call still
// running CancelGrace after its cancel fails and its worker is killed.
func (w *worker) watch() {
	defer close(w.watchDone)
	cfg := &w.p.cfg
	tick := 250 * time.Millisecond
	memory := time.Duration(0)
	if cfg.MemorySoftLimit > 0 || cfg.MemoryHardLimit > 0 {
		memory = cfg.MemoryInterval * 4 // sampled every tick
	}
	for _, d := range []time.Duration{cfg.TaskTimeout, cfg.CancelGrace, cfg.HangTimeout, memory} {
		if d > 0 {
			tick = min(tick, max(d/4, 5*time.Millisecond))
		}
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-w.quit:
			return
		case now := <-t.C:
			w.check(now)
		}
	}
}

func (w *worker) check(now time.Time) {
	cfg := &w.p.cfg
	if silent := now.Sub(time.Unix(0, w.lastSeen.Load())); cfg.HangTimeout > 0 && silent >= cfg.HangTimeout/2 {
		// Silent for a while: a worker whose processes use CPU is busy, not hung (a Python
		// handler inside one long C call starves its heartbeat thread).
		if w.cpuProgress() {
			w.cpuSeen = now
		}
		if idle := now.Sub(w.cpuSeen); silent >= cfg.HangTimeout && idle >= cfg.HangTimeout {
			w.terminate(fmt.Sprintf("hung: nothing received for %v (HangTimeout %v), and no CPU used by its processes", silent.Round(time.Millisecond), cfg.HangTimeout), ErrHung)
			return
		}
	} else {
		w.lastCPU = 0 // not silent: the next silence starts from a fresh baseline
	}
	if (cfg.MemorySoftLimit > 0 || cfg.MemoryHardLimit > 0) && now.Sub(w.lastMem) >= cfg.MemoryInterval {
		w.lastMem = now
		if rss, err := procfs.TreeRSS(w.pid); err == nil {
			switch {
			case cfg.MemoryHardLimit > 0 && rss > cfg.MemoryHardLimit:
				e := &MemoryLimitError{RSS: rss, Limit: cfg.MemoryHardLimit}
				w.terminate(e.Error(), e)
				return
			case cfg.MemorySoftLimit > 0 && rss > cfg.MemorySoftLimit && !w.recycleReq.Load():
				w.log.Info("supervise: recycling a worker over its soft memory limit", "rss", rss, "limit", cfg.MemorySoftLimit)
				w.recycleReq.Store(true)
				select {
				case w.room <- struct{}{}: // wake the sender
				default:
				}
			}
		}
	}
	var cancels []uint64
	var overdue *task
	w.mu.Lock()
	for _, t := range w.held {
		switch {
		case t.settled.Load():
		case t.cancelSent.IsZero():
			if cfg.TaskTimeout > 0 && !t.runningSince.IsZero() && now.Sub(t.runningSince) >= cfg.TaskTimeout {
				t.timedOut, t.cancelSent = true, now
				cancels = append(cancels, t.id)
			}
		case now.Sub(t.cancelSent) >= cfg.CancelGrace && overdue == nil:
			overdue = t
		}
	}
	timedOut := overdue != nil && overdue.timedOut
	closing := overdue != nil && overdue.closing
	w.mu.Unlock()
	for _, id := range cancels {
		select {
		case w.cancels <- id:
		default: // the sender is far behind; the hard limit still holds
		}
	}
	if overdue == nil {
		return
	}
	var err error
	switch {
	case timedOut:
		err = &TimeoutError{Limit: cfg.TaskTimeout, Hard: true}
	case closing:
		err = fmt.Errorf("%w: cancelled by Shutdown, and the call still ran %v later: worker killed", ErrPoolClosed, cfg.CancelGrace)
	default:
		err = fmt.Errorf("%w, and the call still ran %v later: worker killed", context.Cause(overdue.ctx), cfg.CancelGrace)
	}
	overdue.fail(w, err)
	w.terminate(fmt.Sprintf("task %d still running %v after its cancel", overdue.id, cfg.CancelGrace), err)
}

// cpuProgress reports whether the worker's process tree used CPU since the last call. Where
// /proc cannot tell (outside Linux), it never did.
func (w *worker) cpuProgress() bool {
	var total time.Duration
	for _, pid := range procfs.Tree(w.pid) {
		if own, reaped, err := procfs.CPU(pid); err == nil {
			total += own + reaped
		}
	}
	progressed := w.lastCPU > 0 && total > w.lastCPU // the first look sets the baseline
	w.lastCPU = total
	return progressed
}

// markRunning stamps the calls the worker is running now (the first `concurrency` unanswered
// ones, in the order sent) with the time they started. Called with mu held.
func (w *worker) markRunning(now time.Time) {
	n := 0
	for _, t := range w.sent {
		if n >= w.concurrency {
			return
		}
		if w.held[t.id] != t {
			continue
		}
		if t.runningSince.IsZero() {
			t.runningSince = now
		}
		n++
	}
}

// wait reaps the process (the only cmd.Wait), then clears away the rest of its group and
// bounds how long the pipe readers may still block.
func (w *worker) wait() {
	_ = w.cmd.Wait()
	w.state = w.cmd.ProcessState
	killGroup(w.pid, syscall.SIGKILL) // nothing of the group outlives its leader (reaped: no pid to signal)
	deadline := time.Now().Add(time.Second)
	_ = w.stdout.SetReadDeadline(deadline)
	_ = w.stderr.SetReadDeadline(deadline)
	close(w.waited)
}

// send feeds the worker: whenever it has free slots and the backlog has tasks, it takes as
// many as fit and sends them in one frame. It also sends cancels.
func (w *worker) send() {
	defer close(w.senderDone)
	batch := make([]channel.Message, 0, w.p.cfg.InFlight)
	var cuts []int // where each frame of batch ends
	tasks := make([]*task, 0, w.p.cfg.InFlight)
	for {
		if w.recycleReq.Load() { // over its soft memory limit: it finishes what it has and goes
			w.recycled.Store(true)
			w.finish()
			return
		}
		var free int
		var busy bool
		tasks, free, busy = w.takePinned(tasks[:0])
		closing := false
		if free > 0 {
			tasks, closing = w.p.backlog.take(tasks, free, w.p.cfg.Workers, busy)
		}
		if len(tasks) == 0 && !closing {
			var ready, idleReady, done <-chan struct{} // nil, and never ready, while the worker is full
			if free > 0 {
				ready, done = w.p.backlog.ready, w.p.backlog.done
			}
			idle := free > 0 && !busy
			if idle {
				idleReady = w.p.backlog.idleReady
				w.p.backlog.waitIdle(+1)
			}
			var cancel uint64
			cancelled, quit := false, false
			select {
			case <-ready:
			case <-idleReady:
			case <-done:
			case <-w.room:
			case cancel = <-w.cancels:
				cancelled = true
			case <-w.quit:
				quit = true
			}
			if idle {
				w.p.backlog.waitIdle(-1)
			}
			if quit {
				return
			}
			if cancelled {
				w.sendCancel(cancel)
			}
			continue
		}
		batch, cuts = batch[:0], cuts[:0]
		frameBytes := 0
		now := time.Now()
		w.mu.Lock()
		live := tasks[:0]
		for _, t := range tasks {
			if err := t.ctx.Err(); err != nil { // cancelled while queued: never sent
				t.fail(nil, err)
				continue
			}
			live = append(live, t)
			w.held[t.id] = t
			w.sent = append(w.sent, t)
			t.sends++
			t.sentAt = now
			if w.plugin != nil {
				continue
			}
			// A frame holds calls up to batchBytes of payload, and never more than the frame
			// limit or channel.MaxBatch calls: a big call starts a frame of its own, so the
			// worker can start on it as soon as it has read it.
			size := len(t.payload) + len(t.bin) + frameOverhead
			inFrame := len(batch)
			if len(cuts) > 0 {
				inFrame -= cuts[len(cuts)-1]
			}
			if inFrame > 0 && (frameBytes+size > batchBytes || frameBytes+size > w.p.cfg.MaxFrame || inFrame == channel.MaxBatch) {
				cuts = append(cuts, len(batch))
				frameBytes = 0
			}
			frameBytes += size
			batch = append(batch, channel.Message{Kind: channel.KindCall, ID: t.id, Name: t.handler, Payload: t.payload, Bin: t.bin})
		}
		cuts = append(cuts, len(batch))
		if w.p.cfg.TaskTimeout > 0 {
			w.markRunning(now)
		}
		w.mu.Unlock()
		clear(tasks[len(live):])
		tasks = live
		if w.plugin != nil {
			w.startCalls(tasks)
		}
		if len(batch) > 0 {
			from := 0
			for _, to := range cuts {
				if from == to {
					continue
				}
				if err := w.conn.Send(batch[from:to]...); err != nil {
					// The worker cannot be fed (it died, or closed stdin): run sees its stdout
					// end and settles what it held.
					w.log.Debug("supervise: writing to worker failed", "err", err)
					w.kill(syscall.SIGKILL)
					return
				}
				from = to
			}
			clear(batch)
		}
		for _, t := range tasks {
			t.watch(w)
		}
		w.sentTotal += len(tasks)
		clear(tasks)
		if max := w.p.cfg.MaxTasksPerWorker; max > 0 && w.sentTotal >= max {
			w.recycled.Store(true)
			closing = true
		}
		if closing {
			w.finish()
			return
		}
	}
}

// takePinned moves as many of the tasks pinned to this worker as it has free slots into dst,
// and returns how many slots are left for the backlog, and whether the worker has tasks in
// flight (busy).
func (w *worker) takePinned(dst []*task) ([]*task, int, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	free := w.freeLocked()
	k := max(0, min(free, len(w.pinned)))
	dst = append(dst, w.pinned[:k]...)
	clear(w.pinned[:k])
	w.pinned = w.pinned[k:]
	return dst, free - k, len(w.held) > 0 || k > 0
}

// finish waits until the worker has answered every call it holds, still sending cancels
// (time limits, Shutdown), then sends it a shutdown and closes its stdin: it exits. Only the
// sender calls it.
func (w *worker) finish() {
	w.mu.Lock()
	w.draining = true // no more pinned tasks; those pinned already fail when it ends
	w.mu.Unlock()
	for w.busy() {
		select {
		case <-w.room:
		case id := <-w.cancels:
			w.sendCancel(id)
		case <-w.quit:
			return
		}
	}
	w.stopping.Store(true)
	if w.plugin != nil {
		_ = w.plugin.conn.Close()
	} else {
		// A shutdown, then EOF: a worker that sees EOF without it takes its parent for dead
		// and its group down itself (docs/protocol.md, section 5).
		_ = w.conn.Send(channel.Message{Kind: channel.KindShutdown})
		w.stdin.Close()
	}
}

func (w *worker) busy() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.held) > 0
}

// holding returns the task with id if the worker holds it.
func (w *worker) holding(id uint64) *task {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.held[id]
}

// freeLocked is how many more tasks the worker may be sent now. Called with mu held.
func (w *worker) freeLocked() int {
	free := w.p.cfg.InFlight - len(w.held)
	if max := w.p.cfg.MaxTasksPerWorker; max > 0 {
		free = min(free, max-w.sentTotal)
	}
	return free
}

func (w *worker) sendCancel(id uint64) {
	w.mu.Lock()
	t, held := w.held[id]
	if held && t.cancelSent.IsZero() {
		t.cancelSent = time.Now() // the hard limit counts from here
	}
	if held && t.stopCall != nil {
		t.stopCall()
	}
	w.mu.Unlock()
	if held && w.plugin == nil {
		_ = w.conn.Send(channel.Message{Kind: channel.KindCancel, ID: id})
	}
}

// cancelAll is Shutdown's cancel of every call the worker holds. The watchdog kills the worker
// if any is still unanswered Config.CancelGrace later, even if the frame could not be sent.
func (w *worker) cancelAll() {
	w.mu.Lock()
	ids := make([]uint64, 0, len(w.held))
	now := time.Now()
	for id, t := range w.held {
		t.closing = true
		if t.cancelSent.IsZero() {
			t.cancelSent = now
		}
		ids = append(ids, id)
	}
	w.mu.Unlock()
	for _, id := range ids {
		select {
		case w.cancels <- id:
		default: // the sender is far behind; the hard limit still holds
		}
	}
}

// watch arranges for a cancel frame when the task's context ends while the worker holds it.
func (t *task) watch(w *worker) {
	if t.ctx.Done() == nil {
		return
	}
	stop := context.AfterFunc(t.ctx, func() {
		select {
		case w.cancels <- t.id:
		default: // the sender is far behind; the answer will come anyway
		}
	})
	// Unregister once settled, so long-lived contexts do not pile up callbacks. settle loads
	// unwatch after marking the task settled; we check settled after storing it: one of the two
	// sees the other.
	t.unwatch.Store(&stop)
	if t.settled.Load() {
		stop()
	}
}

// run is the worker's owner: it reads answers until the stream ends, then cleans up.
func (w *worker) run() {
	defer w.p.wg.Done()
	var err error
	if w.plugin != nil {
		<-w.waited // a plugin's stream is not ours to read: its end is the process's
	} else {
		err = w.read()
	}
	close(w.quit)
	var protocol error
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, os.ErrClosed) {
		protocol = err
	}
	w.mu.Lock()
	killed := w.killReason != ""
	w.mu.Unlock()
	if killed && errors.Is(protocol, channel.ErrTruncated) {
		protocol = nil // the pool killed it (hung, a limit) in the middle of a frame
	}
	expected := w.stopping.Load() && protocol == nil
	if protocol != nil {
		w.p.emit(EventWorkerKilled{WorkerID: w.id, Pid: w.pid, Reason: "protocol error: " + protocol.Error(), Err: protocol})
	}
	if !expected && w.plugin == nil { // (a plugin's run starts once it is reaped)
		w.kill(syscall.SIGKILL)
	}
	<-w.waited
	w.stdin.Close() // unblocks a sender stuck on a full pipe
	<-w.senderDone
	if w.plugin != nil {
		w.plugin.end()
	}
	<-w.stderrDone
	<-w.watchDone
	closeAll(w.stdout, w.stderr)

	w.mu.Lock()
	sent, held, pinned := w.sent, w.held, w.pinned
	w.held, w.sent, w.pinned = nil, nil, nil
	reason, hung, limit := w.killReason, w.hung, w.limit
	w.mu.Unlock()
	cause := &WorkerError{WorkerID: w.id, Pid: w.pid, Command: w.p.cfg.Command, State: w.state,
		Protocol: protocol, Killed: reason, Hung: hung, Limit: limit, Stderr: w.tail.String()}
	// The worker runs calls in the order sent, w.concurrency at a time: the first unanswered
	// ones may have started and fail with the cause (unless a time limit failed one already);
	// the rest never started and go back to the backlog for another worker.
	ev := EventWorkerExited{WorkerID: w.id, Pid: w.pid, State: w.state}
	started := 0
	var requeue []*task
	for _, t := range sent {
		switch {
		case held[t.id] != t: // answered
		case started < w.concurrency:
			started++
			if t.retries > 0 && !t.closing && !t.settled.Load() { // at-least-once: again
				t.retries--
				t.runningSince, t.cancelSent, t.timedOut = time.Time{}, time.Time{}, false
				requeue = append(requeue, t)
				w.p.emit(EventTaskRetried{TaskID: t.id, Handler: t.handler, WorkerID: w.id, RetriesLeft: t.retries, Err: cause})
				continue
			}
			if t.fail(w, cause) {
				ev.TasksFailed++
			}
		case t.pinned: // sent, not started: it was for this worker alone
			t.fail(w, cause)
		case !t.settled.Load():
			requeue = append(requeue, t)
		}
	}
	for _, t := range pinned { // never sent
		t.fail(w, cause)
	}
	if len(requeue) > 0 {
		if err := w.p.backlog.pushFront(requeue); err != nil { // shut down, or broken
			for _, t := range requeue {
				t.fail(nil, err)
			}
		} else {
			ev.TasksRequeued = len(requeue)
		}
	}
	clean := expected && ev.TasksFailed == 0 && w.state != nil && w.state.Success()
	if !clean {
		ev.Err = cause
		// Killed for a time or memory limit, or by Shutdown: the task was at fault, or the
		// caller asked for it, not the worker.
		ev.Failure = reason == "" || hung
	}
	w.p.workerExited(w)
	w.p.exited(w, ev, !clean || w.recycled.Load())
}

// answered removes task id from those held and frees its slot. timedOut and closing report
// that the task was cancelled for its time limit or by Shutdown.
func (w *worker) answered(id uint64, now time.Time) (t *task, timedOut, closing bool) {
	w.mu.Lock()
	t = w.held[id]
	delete(w.held, id)
	// Answers mostly come in order: drop the answered prefix of sent.
	i := 0
	for i < len(w.sent) && (w.sent[i] == t || w.held[w.sent[i].id] == nil) {
		w.sent[i] = nil
		i++
	}
	w.sent = w.sent[i:]
	if len(w.sent) > 4*w.p.cfg.InFlight { // a long call at the head, answers behind it: compact
		live := w.sent[:0]
		for _, s := range w.sent {
			if w.held[s.id] == s {
				live = append(live, s)
			}
		}
		clear(w.sent[len(live):])
		w.sent = live
	}
	if t != nil {
		timedOut, closing = t.timedOut, t.closing
		if w.p.cfg.TaskTimeout > 0 {
			w.markRunning(now)
		}
		// It could start once sent and once the call before it was answered (calls run in
		// order; with concurrency above 1 this counts its wait behind the others too).
		start := t.sentAt
		if w.concurrency == 1 && w.lastAnswer.After(start) {
			start = w.lastAnswer
		}
		w.lastAnswer = now
		w.slowest = keepSlowest(w.slowest, TaskTiming{ID: t.id, Handler: t.handler, WorkerID: w.id, Took: now.Sub(start)})
	}
	w.mu.Unlock()
	select {
	case w.room <- struct{}{}:
	default:
	}
	return t, timedOut, closing
}

// settleAnswer settles t with its worker's answer: result, or the error remote. timedOut and
// closing say why it was cancelled, if it was (see answered).
func (w *worker) settleAnswer(t *task, timedOut, closing bool, result msgpack.RawMessage, remote error) {
	switch {
	case t.badPut:
		t.fail(w, errors.New("the handler put follow-up work (child.Put), but the task did not come from a queue"))
	case remote == nil:
		w.tasksDone.Add(1) // counted before settle wakes the caller, who may read Stats next
		if !t.settle(result, nil) {
			w.tasksDone.Add(-1)
		}
	case timedOut: // the handler gave up when cancelled for its time limit
		t.fail(w, &TimeoutError{Limit: w.p.cfg.TaskTimeout, Cause: remote})
	case closing:
		t.fail(w, fmt.Errorf("%w: cancelled by Shutdown: %w", ErrPoolClosed, remote))
	default:
		t.fail(w, remote)
	}
}

// stray logs a message about a task the worker does not hold (a duplicate answer, a report
// after the answer, an answer to a call it was killed for) and otherwise ignores it: failing
// the worker for it would fail the innocent calls it holds. Only the first few are logged.
func (w *worker) stray(m *channel.Message) {
	w.strays++
	switch {
	case w.strays <= 10:
		w.log.Warn("supervise: ignoring a message about a task this worker does not hold", "kind", m.Kind.String(), "task", m.ID)
	case w.strays == 11:
		w.log.Warn("supervise: ignoring more messages about tasks this worker does not hold; not logging them")
	}
}

// overflow fails t, whose caller has not taken its reports as fast as its handler sends them,
// and kills its worker, which sent them.
func (w *worker) overflow(t *task, size int) {
	err := &ReportOverflowError{TaskID: t.id, Held: t.reports.held(), Report: size, Limit: w.p.cfg.MaxReportBytes}
	t.fail(w, err)
	w.terminate(err.Error(), err)
}

// answers reports whether msgs holds an answer to a call.
func answers(msgs []channel.Message) bool {
	for i := range msgs {
		if k := msgs[i].Kind; (k == channel.KindResult || k == channel.KindError) && msgs[i].ID != 0 {
			return true
		}
	}
	return false
}

// read handles frames from the worker until its stdout ends or it breaks the protocol.
func (w *worker) read() error {
	for {
		msgs, err := w.conn.Recv()
		if err != nil {
			return err
		}
		now := time.Now()
		w.lastSeen.Store(now.UnixNano())
		if w.p.streak.Load() != 0 && answers(msgs) {
			w.p.streak.Store(0) // the pool makes progress: see RestartPolicy
		}
		for i := range msgs {
			m := &msgs[i]
			switch m.Kind {
			case channel.KindResult, channel.KindError:
				if m.ID == 0 && m.Kind == channel.KindError {
					w.log.Error("supervise: worker reports an error", "err", m.Err)
					continue
				}
				t, timedOut, closing := w.answered(m.ID, now)
				if t == nil { // a duplicate, or a late answer to a call it was killed for
					w.stray(m)
					continue
				}
				var remote error
				if m.Kind == channel.KindError {
					remote = m.Err
					if m.Err == nil {
						remote = &RemoteError{Type: "error", Message: "the worker reported an error without details"}
					}
				}
				w.settleAnswer(t, timedOut, closing, m.Payload, remote)
			case channel.KindPut, channel.KindReport:
				t := w.holding(m.ID)
				if t == nil || t.settled.Load() {
					w.stray(m)
					continue
				}
				switch {
				case m.Kind == channel.KindReport:
					if !t.reports.add(m.Payload, w.p.cfg.MaxReportBytes) {
						w.overflow(t, len(m.Payload))
					}
				case t.queue != nil:
					t.queue.followUp(t, m.Payload)
				default:
					t.badPut = true
				}
			case channel.KindHello:
				return errors.New("a second hello")
			case channel.KindLog:
				var rec map[string]any
				if channel.Unmarshal(m.Payload, &rec) == nil {
					msg, _ := rec["msg"].(string)
					w.log.Info(msg, "record", rec)
				}
			}
		}
	}
}
