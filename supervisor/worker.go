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
	"github.com/supervise-dev/supervise/internal/cgroup"
)

// worker is one worker process and everything attached to it.
//
// Ownership, who does what:
//   - run is the owner: one goroutine in a select loop (owner.go). It starts the reader, looks
//     at the worker on each tick of the pool's clock (the watchdog decides, the owner acts),
//     carries out kill orders posted by other goroutines, runs the kill ladder (SIGTERM, then
//     SIGKILL StopGrace later unless reaped), and once the stream ends tears everything down:
//     it stops the sender, waits for the waiter, closes the pipes, settles the calls still
//     held (from the ledger's verdicts) and reports to the pool. It joins every goroutine
//     the worker started (reader, sender, waiter, stderr forwarder, per-task cancel watches)
//     before it reports the worker dead.
//   - the reader (link.serve) is the only goroutine that reads frames; it settles answers.
//   - send is the only goroutine that writes frames (calls and cancels). When it is to take no
//     more calls (the queue is closed, the worker is recycled) it waits for the answers to those
//     it sent, still sending cancels, then closes stdin, which tells the worker to exit.
//   - wait calls cmd.Wait (exactly once), then kills what is left of the process group and sets a
//     deadline on stdout and stderr, so that a grandchild holding a pipe cannot block the readers
//     (what exec.Cmd.WaitDelay does for pipes it creates).
//   - forwardStderr logs stderr lines until EOF or that deadline.
//   - ledger, phase and pinned (guarded by mu) are shared by the reader and the sender, which
//     update the ledger on every frame: going through the owner there would cost a goroutine
//     hand-off per frame on the data path.
type worker struct {
	p        *Pool
	log      *slog.Logger
	id, pid  int
	slot     int // its place among Config.Workers; a replacement takes it over (Stats)
	cmd      *exec.Cmd
	handlers []string
	started  time.Time

	stdin, stdout, stderr *os.File     // the parent's ends (no stdin for a plugin)
	link                  link         // frames (frameLink), or a plugin's connection (pluginLink)
	leaf                  *cgroup.Leaf // its cgroup, if the pool has cgroups (containment.go)
	leafUse               cgroup.Usage // what all its cgroup held used, set by wait once reaped
	tail                  tail

	concurrency int    // calls the worker runs at once (its hello says; 1 for the Go SDK)
	chunks      bool   // it runs chunk calls, and records them in its page (its hello says)
	page        []byte // its progress page, mapped (channel/progress.go); unmapped once it ended

	cancels chan uint64   // task ids to send cancels for
	room    chan struct{} // capacity 1: an answer freed a slot
	mu      sync.Mutex
	ledger  ledger    // the calls sent and not yet answered (at most Config.InFlight)
	pinned  []*task   // for this worker alone (Broadcast), not yet sent
	phase   phase     // where it is in its life (lifecycle.go)
	cause   killCause // why the pool killed it, in phaseKilled
	idle    bool      // counted in the backlog's idle workers (setIdle)

	// The owner's alone.
	mail        mailbox          // kill orders from other goroutines
	dog         watchdog         // time and memory limits: decides, the owner acts
	probe       probe            // what the watchdog sees of the process (procProbe)
	sigkill     <-chan time.Time // the ladder's SIGKILL step, when armed
	stopSIGKILL func() bool      // disarms it

	recycled   atomic.Bool  // it was sent MaxTasksPerWorker calls: replace it once it exits
	sentTotal  int          // calls sent so far; only the sender touches it
	lastSeen   atomic.Int64 // unix nanoseconds (on the pool's clock) of the last frame received
	recycleReq atomic.Bool  // over the soft memory limit: the sender stops feeding it

	answeredAny    atomic.Bool // it answered a call: it works, so a death under a call is the call's doing
	diedUnderInput bool        // it died while it ran an input, charged with its death (Pool.exited); the owner's

	strays    int          // answers, puts and reports for tasks it does not hold; only the reader touches it
	chunkPuts atomic.Int64 // bytes of follow-ups its chunks put, kept until their answers (queuechunk.go)

	// Figures for Stats.
	tasksDone   atomic.Int64
	tasksFailed atomic.Int64
	callsDone   atomic.Int64
	maxRSS      atomic.Uint64
	slowest     []TaskTiming // guarded by mu: its slowest calls
	folded      bool         // guarded by the pool's sampler.mu: its figures are in its slot's totals

	callbacks  sync.WaitGroup // per-task cancel watches (task.watch)
	quit       chan struct{}  // closed by run once the stream ended: the sender stops
	senderDone chan struct{}
	stderrDone chan struct{}
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
		waited:     make(chan struct{}),
		mail:       newMailbox(),
		dog:        newWatchdog(&p.cfg),
	}
	w.probe = procProbe{w}
	if p.containment.limits.Memory > 0 {
		// The kernel enforces the hard limit on the worker's cgroup; RSS, which counts pages
		// charged to other cgroups (the shared binary's), would only kill it early.
		w.dog.memHard = 0
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
	w.lastSeen.Store(p.clock.now().UnixNano())
	go w.send()
	go w.run()
	return w, nil
}

func (w *worker) startError(err error) *StartError {
	return &StartError{WorkerID: w.id, Pid: w.pid, Command: w.p.cfg.Command, Err: err}
}

// run is the worker's owner: it watches the worker and carries out kills until the stream
// ends, then cleans up.
func (w *worker) run() {
	defer w.p.wg.Done()
	err := w.own()
	close(w.quit)
	w.handleMail() // a kill ordered before the end (a report overflow) still counts
	var protocol error
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, os.ErrClosed) {
		protocol = err
	}
	w.mu.Lock()
	expected := w.expected() && protocol == nil
	w.mu.Unlock()
	if !expected && !w.reaped() { // reaped: nothing to kill (and its pid may be another's now)
		w.kill(syscall.SIGKILL)
	}
	w.awaitReaping()
	w.outOfMemory() // the kernel killed for the memory limit: known once reaped
	w.mu.Lock()
	if w.phase == phaseKilled && errors.Is(protocol, channel.ErrTruncated) {
		protocol = nil // killed (hung, a limit) in the middle of a frame
	}
	expected = w.expected() && protocol == nil
	w.mu.Unlock()
	if protocol != nil {
		w.p.emit(EventWorkerKilled{WorkerID: w.id, Pid: w.pid, Reason: "protocol error: " + protocol.Error(), Err: protocol})
	}
	w.stdin.Close() // unblocks a sender stuck on a full pipe
	<-w.senderDone
	w.link.end()
	<-w.stderrDone
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
		if t.chunk > 0 { // how far it got: only the inputs that never started go again
			t.record, t.answerer = w.chunkRecord(t), w
			w.diedUnderInput = w.diedUnderInput || t.record.Started > len(t.record.Outcomes)
		} else {
			w.diedUnderInput = w.diedUnderInput || !t.runningSince.IsZero()
		}
		if t.fail(w, cause) {
			ev.TasksFailed++
		}
	}
	for _, t := range fate.retry { // at-least-once: again
		w.diedUnderInput = true
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
	w.callbacks.Wait()        // every watch was stopped (settled, requeued) or has run
	unmapProgressPage(w.page) // the owner reads it (expireChunk, above) and is done
	w.page = nil
	w.p.workerExited(w)
	w.p.exited(w, ev, !clean || w.recycled.Load())
}

// own is the owner's loop while the worker's stream lasts: it returns the error that ended it.
func (w *worker) own() error {
	ended := make(chan error, 1)
	go func() { ended <- w.link.serve() }() // the reader, joined here
	ticks, stop := w.p.clock.ticker(w.dog.interval())
	defer stop()
	for {
		select {
		case now := <-ticks:
			w.watch(now)
		case <-w.mail.signal:
			w.handleMail()
		case <-w.sigkill:
			w.fireSIGKILL()
		case err := <-ended:
			return err
		}
	}
}

// awaitReaping waits until the process is reaped, still carrying out the kill ladder.
func (w *worker) awaitReaping() {
	defer w.disarmSIGKILL()
	for {
		select {
		case <-w.waited:
			return
		case <-w.mail.signal:
			w.handleMail()
		case <-w.sigkill:
			w.fireSIGKILL()
		}
	}
}

// outOfMemory charges the worker's end to its memory limit when the kernel's OOM killer killed
// a process of its cgroup for it (the worker itself, or a process it started), unless the pool
// had killed it for another cause first.
func (w *worker) outOfMemory() {
	use := w.leafUse
	if use.OOMKills == 0 {
		return
	}
	e := &MemoryLimitError{RSS: use.Peak, Limit: w.p.containment.limits.Memory, Kernel: true}
	w.mu.Lock()
	during := w.phase
	first := w.enter(phaseKilled)
	if first {
		w.cause = killCause{reason: e.Error(), why: e, during: during}
	}
	w.mu.Unlock()
	if first {
		w.p.emit(EventWorkerKilled{WorkerID: w.id, Pid: w.pid, Reason: e.Error(), Err: e})
	}
}
