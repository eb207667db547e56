package supervisor

import (
	"sync"
	"syscall"
	"time"

	"github.com/supervise-dev/supervise/internal/procfs"
)

// The worker's owner (worker.run) is one goroutine in a select loop, as a suture supervisor
// is: it alone looks at the clock for the watchdog, decides kills and carries them out
// (SIGTERM, and SIGKILL Config.StopGrace later unless the process was reaped), and tears the
// worker down when its stream ends. Other goroutines ask it for a kill by posting an order
// to its mailbox, which never blocks them.

// orderKind is what an order asks of the owner.
type orderKind int

const (
	orderKill    orderKind = iota // kill the worker for a cause (killOrder): the kill ladder
	orderReap                     // SIGKILL unless reaped within StopGrace (a plugin gone quiet)
	orderSIGKILL                  // SIGKILL now: it cannot be fed (the sender's write failed)
)

type order struct {
	kind orderKind
	kill killOrder // for orderKill
}

// mailbox holds the orders posted to the owner; posting never blocks.
type mailbox struct {
	mu     sync.Mutex
	orders []order
	signal chan struct{} // capacity 1: orders are waiting
}

func newMailbox() mailbox { return mailbox{signal: make(chan struct{}, 1)} }

func (m *mailbox) post(o order) {
	m.mu.Lock()
	m.orders = append(m.orders, o)
	m.mu.Unlock()
	select {
	case m.signal <- struct{}{}:
	default:
	}
}

func (m *mailbox) take() []order {
	m.mu.Lock()
	defer m.mu.Unlock()
	o := m.orders
	m.orders = nil
	return o
}

// terminate asks the owner to kill the worker for breaking a limit: reason goes into the
// error of the calls it was running, why (ErrHung, a *MemoryLimitError, a *TimeoutError) into
// the event. The first reason given is kept. Any goroutine may call it.
func (w *worker) terminate(reason string, why error) {
	w.mail.post(order{kind: orderKill, kill: killOrder{reason: reason, why: why}})
}

// handleMail carries out the orders posted. Only the owner calls it.
func (w *worker) handleMail() {
	for _, o := range w.mail.take() {
		switch o.kind {
		case orderKill:
			w.killFor(o.kill)
		case orderReap:
			w.armSIGKILL()
		case orderSIGKILL:
			if !w.reaped() {
				w.kill(syscall.SIGKILL)
			}
		}
	}
}

// watch is the owner's tick: the watchdog looks at the worker, and the owner acts on what it
// found.
func (w *worker) watch(now time.Time) {
	v := w.dog.check(now, time.Unix(0, w.lastSeen.Load()), lockedLedger{w}, w.probe)
	for _, t := range v.cancels {
		select {
		case w.cancels <- t.id:
		default: // the sender is far behind; the hard limit still holds
		}
		// A call never succeeds past its limit: it fails now, and its handler's answer, if it
		// stops in time, is dropped; CancelGrace only decides when its worker is killed if it
		// goes on. A chunk's inputs end as the chunk's record says (expireChunk).
		if t.chunk == 0 {
			t.fail(w, &TimeoutError{Limit: w.p.cfg.TaskTimeout})
		} else {
			w.expireChunk(t)
		}
	}
	if v.recycle && !w.recycleReq.Load() {
		w.log.Info("supervise: recycling a worker over its soft memory limit", "rss", v.rss, "limit", w.p.cfg.MemorySoftLimit)
		w.recycleReq.Store(true)
		select {
		case w.room <- struct{}{}: // wake the sender
		default:
		}
	}
	if v.kill != nil {
		w.killFor(*v.kill)
	}
	if w.p.checked != nil {
		w.p.checked(w.id, now)
	}
}

// killFor kills the worker for k's cause, charging k.task if set. The first cause is kept.
// The worker leaves phaseReady before the task is failed: a caller who submits more work once
// it learns of the failure must not have it sent to this worker.
func (w *worker) killFor(k killOrder) {
	w.mu.Lock()
	during := w.phase
	first := w.enter(phaseKilled)
	if first {
		w.cause = killCause{reason: k.reason, why: k.why, during: during}
	}
	w.mu.Unlock()
	if k.task != nil && k.task.chunk == 0 { // a chunk's inputs end as its record says, once it is reaped
		k.task.fail(w, k.why)
	}
	if first { // the watchdog may see the same overdue call or silence on every tick until the end
		w.p.emit(EventWorkerKilled{WorkerID: w.id, Pid: w.pid, Reason: k.reason, Err: k.why})
		w.ladder()
	}
}

// ladder sends SIGTERM to the worker's process group, and arms the SIGKILL Config.StopGrace
// later. Only the owner calls it.
func (w *worker) ladder() {
	if w.reaped() {
		return
	}
	w.kill(syscall.SIGTERM)
	w.armSIGKILL()
}

// armSIGKILL arms the ladder's second step, once: the owner SIGKILLs the group StopGrace from
// now unless the process was reaped by then.
func (w *worker) armSIGKILL() {
	if w.sigkill == nil && !w.reaped() {
		w.sigkill, w.stopSIGKILL = w.p.clock.timer(w.p.cfg.StopGrace)
	}
}

// fireSIGKILL is the ladder's second step, when its time came.
func (w *worker) fireSIGKILL() {
	w.sigkill = nil
	if !w.reaped() {
		w.kill(syscall.SIGKILL)
	}
}

func (w *worker) disarmSIGKILL() {
	if w.stopSIGKILL != nil {
		w.stopSIGKILL()
	}
	w.sigkill, w.stopSIGKILL = nil, nil
}

func (w *worker) reaped() bool {
	select {
	case <-w.waited:
		return true
	default:
		return false
	}
}

// lockedLedger is the worker's ledger for the watchdog, under the worker's mu.
type lockedLedger struct{ w *worker }

func (l lockedLedger) tick(now time.Time, timeout, grace time.Duration) ([]*task, *task) {
	l.w.mu.Lock()
	defer l.w.mu.Unlock()
	return l.w.ledger.tick(now, timeout, grace)
}

// procProbe is the watchdog's look at a worker's process tree through /proc, and at its
// stdout pipe.
type procProbe struct {
	w *worker
}

func (p procProbe) cpu() time.Duration {
	if p.w.leaf != nil { // one read, and it sees processes that left the tree
		if cpu, err := p.w.leaf.CPU(); err == nil {
			return cpu
		}
	}
	var total time.Duration
	for _, pid := range procfs.Tree(p.w.pid) {
		if own, reaped, err := procfs.CPU(pid); err == nil {
			total += own + reaped
		}
	}
	return total
}

func (p procProbe) rss() (uint64, error) {
	if p.w.leaf != nil { // every process of its cgroup, escaped ones included
		if pids, err := p.w.leaf.Procs(); err == nil {
			var rss uint64
			for _, pid := range pids {
				if r, err := procfs.RSS(pid); err == nil {
					rss += r
				}
			}
			return rss, nil
		}
	}
	return procfs.TreeRSS(p.w.pid)
}

func (p procProbe) unread() int {
	if p.w.stdout == nil {
		return 0
	}
	return unread(p.w.stdout)
}
