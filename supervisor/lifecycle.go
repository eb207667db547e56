package supervisor

// phase is where a worker is in its life, one explicit state instead of flags (roadrunner's
// fsm). It only moves forward, under the worker's mu:
//
//	ready ──> draining ──> stopping ──> ended
//	  └──────────┴────────────┴──> killed ──> ended
//
// (Starting comes before: startWorker lists a worker only once it is ready.)
type phase int

const (
	phaseReady    phase = iota // takes calls
	phaseDraining              // takes no more calls, pinned ones included; answers those it holds
	phaseStopping              // told to exit (shutdown, then stdin closed): its exit is expected
	phaseKilled                // the pool is killing it: a limit, a hang, an overdue call (killCause)
	phaseEnded                 // its stream ended and it was reaped; its calls are settled
)

var phaseNames = [...]string{"ready", "draining", "stopping", "killed", "ended"}

func (p phase) String() string { return phaseNames[p] }

// killCause is why the pool killed a worker.
type killCause struct {
	reason string // for the error of the calls it was running: "hung: ...", "task 7 still running ..."
	why    error  // typed: ErrHung, a *MemoryLimitError, a *TimeoutError, a *ReportOverflowError
	during phase  // the phase it was killed in
}

// limit is the memory limit the worker was killed for, if that was why.
func (c killCause) limit() error {
	if _, ok := c.why.(*MemoryLimitError); ok {
		return c.why
	}
	return nil
}

// enter moves the worker to phase to, if that is forward; it reports whether it moved.
// Called with mu held.
func (w *worker) enter(to phase) bool {
	if to <= w.phase {
		return false
	}
	w.phase = to
	if to != phaseReady {
		w.setIdle(false) // new tasks go to workers that take them
	}
	return true
}

// expected reports whether the worker's end is one the pool asked for: it was told to exit
// (a kill after that, say for a hang while exiting, does not change it). Called with mu held.
func (w *worker) expected() bool {
	return w.phase == phaseStopping || (w.phase == phaseKilled && w.cause.during == phaseStopping)
}
