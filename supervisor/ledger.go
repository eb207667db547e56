package supervisor

import (
	"context"
	"fmt"
	"time"
)

// ledger is a worker's account of the calls it was sent: those it holds (sent, not answered),
// in the order sent, and which of them it is running. A worker runs calls in the order it
// received them, concurrency at a time, so the first concurrency unanswered calls are the
// running ones, and the rest wait in its queue. From that the ledger decides what each event
// means for each call: a cancel, the watchdog's tick, the worker's death.
//
// It is plain logic over tasks: no process, no goroutine, no clock of its own (callers pass
// now), so that every case is table-tested (ledger_test.go). The worker guards it with its mu.
type ledger struct {
	concurrency int
	held        map[uint64]*task // sent and not yet answered; nil once the worker ended
	sent        []*task          // the same tasks in the order sent (answered ones linger)
	fresh       []*task          // started since takeStarted, to be recorded without the lock
}

func newLedger(concurrency int) ledger {
	return ledger{concurrency: max(1, concurrency), held: map[uint64]*task{}}
}

// send records t as sent at now.
func (l *ledger) send(t *task, now time.Time) {
	l.held[t.id] = t
	l.sent = append(l.sent, t)
	t.sentAt = now
	t.runningSince, t.cancelSent, t.timedOut = time.Time{}, time.Time{}, false
	l.markRunning(now)
}

// answer removes the call with id from those held, and reports it (nil if not held: a
// duplicate answer, or one after the call was given up on). The calls behind it may start.
func (l *ledger) answer(id uint64, now time.Time) *task {
	t := l.held[id]
	if t == nil {
		return nil
	}
	l.started(t, now) // an answered call ran, even if the ledger had not seen it start
	delete(l.held, id)
	// Answers mostly come in order: drop the answered prefix of sent.
	i := 0
	for i < len(l.sent) && l.held[l.sent[i].id] != l.sent[i] {
		l.sent[i] = nil
		i++
	}
	l.sent = l.sent[i:]
	if len(l.sent) > 4*max(len(l.held), l.concurrency) { // a long call at the head, answers behind it: compact
		live := l.sent[:0]
		for _, s := range l.sent {
			if l.held[s.id] == s {
				live = append(live, s)
			}
		}
		clear(l.sent[len(live):])
		l.sent = live
	}
	l.markRunning(now)
	return t
}

// runningCalls yields the calls the worker runs now: the first concurrency it holds, in the
// order sent.
func (l *ledger) runningCalls(yield func(*task) bool) {
	n := 0
	for _, t := range l.sent {
		if n >= l.concurrency {
			return
		}
		if l.held[t.id] != t {
			continue
		}
		n++
		if !yield(t) {
			return
		}
	}
}

// running reports whether the worker is running t.
func (l *ledger) running(t *task) bool {
	for r := range l.runningCalls {
		if r == t {
			return true
		}
	}
	return false
}

// markRunning stamps the calls the worker runs now with the time they started.
func (l *ledger) markRunning(now time.Time) {
	for t := range l.runningCalls {
		l.started(t, now)
	}
}

// started counts t's start, once per send: TaskError.Attempts is the times a handler started.
func (l *ledger) started(t *task, now time.Time) {
	if t.runningSince.IsZero() {
		t.runningSince = now
		t.starts.Add(1)
		if t.metrics != nil || t.span != nil {
			l.fresh = append(l.fresh, t)
		}
	}
}

// takeStarted returns the calls that started since it was last called, whose metrics and
// spans are to record it: the caller does that once it has released the worker's lock, since
// a tracer is user code.
func (l *ledger) takeStarted() []*task {
	f := l.fresh
	l.fresh = nil
	return f
}

// recordStarts records, in the metrics and the spans, the starts of ts (from takeStarted) at
// now. Called without the worker's lock.
func recordStarts(ts []*task, now time.Time) {
	for _, t := range ts {
		if t.metrics != nil {
			t.metrics.start(t, now)
		}
		if t.span != nil {
			spanStarted(t, t.starts.Load())
		}
	}
}

// cancel records a cancel sent for t at now (its grace counts from then, or from its start if
// it was still waiting), and reports whether t was waiting in the worker's queue, not
// running: the caller fails it at once, since it will not run.
func (l *ledger) cancel(t *task, now time.Time) (waiting bool) {
	if l.held[t.id] != t {
		return false
	}
	if t.cancelSent.IsZero() {
		t.cancelSent = now
	}
	return !l.running(t)
}

// tick is the watchdog's look at the calls at now: the calls that reached timeout running (a
// cancel goes to each; 0 means no limit), and the running call whose cancel is the oldest
// past grace, if any: it fails with the error overdueError gives, and the worker is killed
// for it. Calls waiting in the worker's queue are never overdue: they are not running.
func (l *ledger) tick(now time.Time, timeout, grace time.Duration) (cancels []*task, overdue *task) {
	for t := range l.runningCalls {
		switch {
		case t.runningSince.IsZero():
		case t.cancelSent.IsZero():
			if timeout > 0 && !t.settled.Load() && now.Sub(t.runningSince) >= timeout {
				t.timedOut, t.cancelSent = true, now
				cancels = append(cancels, t)
			}
		case now.Sub(later(t.cancelSent, t.runningSince)) >= grace:
			if overdue == nil || t.cancelSent.Before(overdue.cancelSent) {
				overdue = t
			}
		}
	}
	return cancels, overdue
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// overdueError is the error of a call that still ran grace after its cancel.
func overdueError(t *task, timeout, grace time.Duration) error {
	switch {
	case t.timedOut:
		return &TimeoutError{Limit: timeout, Hard: true}
	case t.closing:
		return fmt.Errorf("%w: cancelled by Shutdown, and the call still ran %v later: worker killed", ErrPoolClosed, grace)
	default:
		return fmt.Errorf("%w, and the call still ran %v later: worker killed", context.Cause(t.ctx), grace)
	}
}

// verdicts is what a worker's death means for the calls it held.
type verdicts struct {
	fail    []*task // running (or for this worker alone): they fail with the cause of death
	retry   []*task // running, with retries left: back to the backlog's front, a retry spent
	requeue []*task // waiting in its queue: back to the backlog's front, as if never sent
}

// death decides the fate of every call held when the worker died, and empties the ledger.
func (l *ledger) death() verdicts {
	var v verdicts
	n := 0
	for _, t := range l.sent {
		if l.held[t.id] != t { // answered
			continue
		}
		running := n < l.concurrency
		n++
		switch {
		case t.settled.Load(): // failed already (a cancel, a time limit)
		case running && t.retries > 0 && !t.closing:
			v.retry = append(v.retry, t)
		case running || t.pinned:
			v.fail = append(v.fail, t)
		default:
			v.requeue = append(v.requeue, t)
		}
	}
	l.held, l.sent = nil, nil
	return v
}

func (l *ledger) len() int { return len(l.held) }
