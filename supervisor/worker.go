package supervisor

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/supervise-dev/supervise/channel"
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
//     Config.StopGrace, from a timer goroutine that ends when the process is reaped; run joins
//     the timers, and the per-task cancel watches (context.AfterFunc), before it reports the
//     worker dead.
//   - ledger (guarded by mu) is which calls it holds and which it runs; the reader, the sender
//     and the watchdog ask it, and run reads the fate of each call from it at the end.
type worker struct {
	p        *Pool
	log      *slog.Logger
	id, pid  int
	slot     int // its place among Config.Workers; a replacement takes it over (Stats)
	cmd      *exec.Cmd
	handlers []string
	started  time.Time

	stdin, stdout, stderr *os.File // the parent's ends (no stdin for a plugin)
	link                  link     // frames (frameLink), or a plugin's connection (pluginLink)
	tail                  tail

	concurrency int // calls the worker runs at once (its hello says; 1 for the Go SDK)

	cancels chan uint64   // task ids to send cancels for
	room    chan struct{} // capacity 1: an answer freed a slot
	mu      sync.Mutex
	ledger  ledger    // the calls sent and not yet answered (at most Config.InFlight)
	pinned  []*task   // for this worker alone (Broadcast), not yet sent
	phase   phase     // where it is in its life (lifecycle.go)
	cause   killCause // why the pool killed it, in phaseKilled
	idle    bool      // counted in the backlog's idle workers (setIdle)

	recycled   atomic.Bool   // it was sent MaxTasksPerWorker calls: replace it once it exits
	sentTotal  int           // calls sent so far; only the sender touches it
	lastSeen   atomic.Int64  // unix nanoseconds of the last frame received
	recycleReq atomic.Bool   // over the soft memory limit: the sender stops feeding it
	lastMem    time.Time     // only the watchdog touches it
	lastCPU    time.Duration // CPU time of its process tree at the watchdog's last look; only the watchdog touches it
	cpuSeen    time.Time     // when the watchdog last saw that tree use CPU; likewise
	lateSince  time.Time     // since when the watchdog held a kill back for unread output; likewise

	answeredAny atomic.Bool // it answered a call: it works, so a death under a call is the call's doing

	strays int // answers, puts and reports for tasks it does not hold; only the reader touches it

	// Figures for Stats.
	tasksDone   atomic.Int64
	tasksFailed atomic.Int64
	maxRSS      atomic.Uint64
	slowest     []TaskTiming // guarded by mu: its slowest calls
	folded      bool         // guarded by the pool's sampler.mu: its figures are in its slot's totals

	timerMu    sync.Mutex     // guards ended, and timers' Add against run's Wait
	ended      bool           // run joined the timers: no new ones
	timers     sync.WaitGroup // kill ladders' SIGKILL timers; each ends when the process is reaped
	callbacks  sync.WaitGroup // per-task cancel watches (task.watch)
	quit       chan struct{}  // closed by run: the sender stops
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
	w.ledger = newLedger(w.concurrency)

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

// run is the worker's owner: it reads answers until the stream ends, then cleans up.
func (w *worker) run() {
	defer w.p.wg.Done()
	var err error
	err = w.link.serve()
	close(w.quit)
	var protocol error
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, os.ErrClosed) {
		protocol = err
	}
	w.mu.Lock()
	killed := w.phase == phaseKilled
	if killed && errors.Is(protocol, channel.ErrTruncated) {
		protocol = nil // the pool killed it (hung, a limit) in the middle of a frame
	}
	expected := w.expected() && protocol == nil
	w.mu.Unlock()
	if protocol != nil {
		w.p.emit(EventWorkerKilled{WorkerID: w.id, Pid: w.pid, Reason: "protocol error: " + protocol.Error(), Err: protocol})
	}
	select {
	case <-w.waited: // reaped: nothing to kill (and its pid may be another's now)
	default:
		if !expected {
			w.kill(syscall.SIGKILL)
		}
	}
	<-w.waited
	w.stdin.Close() // unblocks a sender stuck on a full pipe
	<-w.senderDone
	w.link.end()
	<-w.stderrDone
	<-w.watchDone
	closeAll(w.stdout, w.stderr)

	w.mu.Lock()
	reason, hung, limit := w.cause.reason, w.cause.why == ErrHung, w.cause.limit()
	w.enter(phaseEnded)
	fate := w.ledger.death()
	pinned := w.pinned
	w.pinned = nil
	w.mu.Unlock()
	cause := &WorkerError{WorkerID: w.id, Pid: w.pid, Command: w.p.cfg.Command, State: w.state,
		Protocol: protocol, Killed: reason, Hung: hung, Limit: limit, Stderr: w.tail.String()}
	// Calls it was running fail with the cause, or go again if they have retries left; calls
	// waiting in its queue never started and go back to the backlog for another worker.
	ev := EventWorkerExited{WorkerID: w.id, Pid: w.pid, State: w.state}
	for _, t := range fate.fail {
		if t.fail(w, cause) {
			ev.TasksFailed++
		}
	}
	for _, t := range fate.retry { // at-least-once: again
		t.retries--
		w.p.emit(EventTaskRetried{TaskID: t.id, Handler: t.handler, WorkerID: w.id, RetriesLeft: t.retries, Err: cause})
	}
	requeue := append(fate.retry, fate.requeue...)
	for _, t := range requeue { // their next worker watches their contexts
		if stop := t.unwatch.Swap(nil); stop != nil {
			(*stop)()
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
	w.timerMu.Lock()
	w.ended = true
	w.timerMu.Unlock()
	w.timers.Wait()    // they end at the reaping, which is past
	w.callbacks.Wait() // every watch was stopped (settled, requeued) or has run
	w.p.workerExited(w)
	w.p.exited(w, ev, !clean || w.recycled.Load())
}
