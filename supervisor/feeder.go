package supervisor

import (
	"context"
)

// send feeds the worker: whenever it has free slots and the backlog has tasks, it takes as
// many as fit and sends them in one frame. It also sends cancels.
func (w *worker) send() {
	defer close(w.senderDone)
	w.mu.Lock()
	w.setIdle(true) // nothing in flight yet
	w.mu.Unlock()
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
			if free > 0 && !busy {
				idleReady = w.p.backlog.idleReady
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
			if quit {
				return
			}
			if cancelled {
				w.sendCancel(cancel)
			}
			continue
		}
		for i, t := range tasks {
			if t.gather != nil { // a queue's chunk: it gathers no more items
				tasks[i] = t.gather.seal(t)
			}
		}
		now := w.p.clock.now()
		var dropped []dropping
		w.mu.Lock()
		live := tasks[:0]
		for _, t := range tasks {
			if err := t.ctx.Err(); err != nil { // cancelled while queued: never sent
				dropped = append(dropped, dropping{t, nil, err})
				continue
			}
			if t.chunk > 0 && !w.chunks { // its Map runs its inputs one per call instead
				dropped = append(dropped, dropping{t, w, errNoChunks})
				continue
			}
			live = append(live, t)
			w.ledger.send(t, now)
			w.setIdle(false)
		}
		started := w.ledger.takeStarted()
		w.mu.Unlock()
		// Failing a task runs its callbacks (OnDone, a tracer, a Map's resends), which may
		// call back into the pool: never under the worker's lock.
		for _, d := range dropped {
			d.t.fail(d.w, d.err)
		}
		for _, t := range live {
			if t.span != nil {
				spanSent(t, w)
			}
		}
		recordStarts(started, now)
		clear(tasks[len(live):])
		tasks = live
		if err := w.link.send(tasks); err != nil {
			// The worker cannot be fed (it died, or closed stdin): run sees its stdout end
			// and settles what it held.
			w.log.Debug("supervise: writing to worker failed", "err", err)
			w.mail.post(order{kind: orderSIGKILL})
			return
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
	if w.phase != phaseReady { // being killed: calls sent now would only go back
		free = 0
	}
	k := max(0, min(free, len(w.pinned)))
	dst = append(dst, w.pinned[:k]...)
	clear(w.pinned[:k])
	w.pinned = w.pinned[k:]
	return dst, free - k, w.ledger.len() > 0 || k > 0
}

// finish waits until the worker has answered every call it holds, still sending cancels
// (time limits, Shutdown), then sends it a shutdown and closes its stdin: it exits. Only the
// sender calls it.
func (w *worker) finish() {
	w.mu.Lock()
	w.enter(phaseDraining) // no more pinned tasks; those pinned already fail when it ends
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
	w.mu.Lock()
	told := w.enter(phaseStopping) // not if killed meanwhile
	w.mu.Unlock()
	if told {
		w.link.shutdown()
	}
}

func (w *worker) busy() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ledger.len() > 0
}

// holding returns the task with id if the worker holds it.
func (w *worker) holding(id uint64) *task {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ledger.held[id]
}

// freeLocked is how many more tasks the worker may be sent now. Called with mu held.
func (w *worker) freeLocked() int {
	free := w.p.cfg.InFlight - w.ledger.len()
	if max := w.p.cfg.MaxTasksPerWorker; max > 0 {
		free = min(free, max-w.sentTotal)
	}
	return free
}

// sendCancel sends the worker a cancel of call id, if it holds it. A call whose context ended
// while it waited in the worker's queue fails at once with its context's error: it will not
// run (the worker drops a cancelled call it has not started), and it must not wait for, or be
// blamed with, the call running ahead of it.
func (w *worker) sendCancel(id uint64) {
	w.mu.Lock()
	t, held := w.ledger.held[id]
	waiting := held && w.ledger.cancel(t, w.p.clock.now()) // the hard limit counts from here
	if held && t.stopCall != nil {
		t.stopCall()
	}
	closing := held && t.closing // guarded by mu: Shutdown's cancelAll sets it
	w.mu.Unlock()
	if waiting && t.ctx.Err() != nil && !closing {
		t.fail(nil, context.Cause(t.ctx))
	}
	if held {
		w.link.cancel(id)
	}
}

// cancelAll is Shutdown's cancel of every call the worker holds. The watchdog kills the worker
// if any is still unanswered Config.CancelGrace later, even if the frame could not be sent.
func (w *worker) cancelAll() {
	w.mu.Lock()
	ids := make([]uint64, 0, w.ledger.len())
	now := w.p.clock.now()
	for id, t := range w.ledger.held {
		t.closing = true
		w.ledger.cancel(t, now)
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
	// Each watch ends once: its callback runs, or a stop keeps it from running. The worker
	// waits for all of them (callbacks) before it reports itself dead.
	w.callbacks.Add(1)
	stopFunc := context.AfterFunc(t.ctx, func() {
		defer w.callbacks.Done()
		select {
		case w.cancels <- t.id:
		default: // the sender is far behind; the answer will come anyway
		}
	})
	stop := func() bool {
		stopped := stopFunc()
		if stopped {
			w.callbacks.Done()
		}
		return stopped
	}
	// Unregister once settled, so long-lived contexts do not pile up callbacks. settle loads
	// unwatch after marking the task settled; we check settled after storing it: one of the two
	// sees the other.
	t.unwatch.Store(&stop)
	if t.settled.Load() {
		stop()
	}
}

// setIdle counts the worker in or out of the backlog's idle workers, those with nothing in
// flight, which new tasks go to first. It counts from the moment its last answer frees it (the
// reader calls it), not from when its sender next waits: a task submitted in between must not
// go to a busy worker. Called with mu held.
func (w *worker) setIdle(idle bool) {
	idle = idle && w.phase == phaseReady
	if idle == w.idle {
		return
	}
	w.idle = idle
	if idle {
		w.p.backlog.waitIdle(+1, false)
	} else {
		w.p.backlog.waitIdle(-1, w.phase != phaseReady)
	}
}

// dropping is a task the sender took but will not send, and the error it fails with once the
// worker's lock is released.
type dropping struct {
	t   *task
	w   *worker
	err error
}
