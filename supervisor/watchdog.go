package supervisor

import (
	"fmt"
	"time"
)

// watchdog decides what a worker's time and memory limits call for: given the worker's ledger,
// the time and what its probe sees of the process, it returns a verdict (cancel these calls,
// recycle the worker, kill it for this cause) and acts on nothing itself. The worker's owner
// calls check on each tick of its clock and carries the verdict out (act). All it remembers
// between looks is here, so tests drive it with a fake probe and exact times
// (watchdog_test.go).
type watchdog struct {
	taskTimeout, cancelGrace, hangTimeout time.Duration
	memSoft, memHard                      uint64
	memInterval                           time.Duration

	lastMem   time.Time     // when memory was last sampled
	lastCPU   time.Duration // the CPU time of the process tree at the last look in a silence
	cpuSeen   time.Time     // when that tree was last seen using CPU
	lateSince time.Time     // since when a kill has been held back for unread output
	recycling bool          // over the soft memory limit: said once
}

// probe is what the watchdog may look at in the worker's process (procProbe reads /proc).
type probe interface {
	cpu() time.Duration   // CPU time used by its process tree; 0 where that cannot be told
	rss() (uint64, error) // resident memory of its process tree
	unread() int          // bytes it wrote to its stdout that the parent has not read yet
}

// verdict is what the watchdog found: the worker's owner acts on it.
type verdict struct {
	cancels []*task    // calls that reached their time limit: send each a cancel
	recycle bool       // over the soft memory limit: feed it no more, replace it once it is done
	rss     uint64     // the memory seen, when recycle
	kill    *killOrder // kill the worker
}

// killOrder is a kill with its cause: reason goes into the error of the calls it was running,
// why is the typed cause (ErrHung, a *MemoryLimitError, a *TimeoutError, ...). task, if set,
// is the call the kill is charged to: it fails with why, before the others learn of the kill.
type killOrder struct {
	reason string
	why    error
	task   *task
}

func newWatchdog(cfg *Config) watchdog {
	return watchdog{taskTimeout: cfg.TaskTimeout, cancelGrace: cfg.CancelGrace, hangTimeout: cfg.HangTimeout,
		memSoft: cfg.MemorySoftLimit, memHard: cfg.MemoryHardLimit, memInterval: cfg.MemoryInterval}
}

// maxTimeoutLag is the most a call's future may end after its time limit, from the watchdog's
// tick alone.
const maxTimeoutLag = 50 * time.Millisecond

// interval is how often check should run: a quarter of the shortest limit, between 5 ms and
// 250 ms, so a limit is enforced within a quarter of itself late.
func (d *watchdog) interval() time.Duration {
	tick := 250 * time.Millisecond
	memory := time.Duration(0)
	if d.memSoft > 0 || d.memHard > 0 {
		memory = d.memInterval * 4
	}
	for _, l := range []time.Duration{d.taskTimeout, d.cancelGrace, d.hangTimeout, memory} {
		if l > 0 {
			tick = min(tick, max(l/4, 5*time.Millisecond))
		}
	}
	if d.taskTimeout > 0 { // a call's future ends at its limit: at most a tick late
		tick = min(tick, maxTimeoutLag)
	}
	return tick
}

// calls is the ledger as the watchdog sees it (ledger.tick).
type calls interface {
	tick(now time.Time, timeout, grace time.Duration) (cancels []*task, overdue *task)
}

// check looks at the worker at now; lastSeen is when it last sent anything.
func (d *watchdog) check(now, lastSeen time.Time, l calls, pr probe) verdict {
	var v verdict
	if v.kill = d.hung(now, lastSeen, pr); v.kill != nil {
		return v
	}
	if v.kill, v.rss = d.memory(now, pr); v.kill != nil {
		return v
	}
	v.recycle = v.rss > 0
	var overdue *task
	v.cancels, overdue = l.tick(now, d.taskTimeout, d.cancelGrace)
	if overdue != nil && !d.answering(now, d.cancelGrace, pr) {
		err := overdueError(overdue, d.taskTimeout, d.cancelGrace)
		v.kill = &killOrder{fmt.Sprintf("task %d still running %v after its cancel", overdue.id, d.cancelGrace), err, overdue}
	}
	return v
}

// hung decides whether a worker silent for HangTimeout is hung: not if its processes use CPU
// (a Python handler inside one long C call starves its heartbeat thread), nor while it has
// written what the parent has not read yet.
func (d *watchdog) hung(now, lastSeen time.Time, pr probe) *killOrder {
	silent := now.Sub(lastSeen)
	if d.hangTimeout <= 0 || silent < d.hangTimeout/2 {
		d.lastCPU = 0 // not silent: the next silence starts from a fresh baseline
		return nil
	}
	total := pr.cpu()
	if d.lastCPU > 0 && total > d.lastCPU { // the first look sets the baseline
		d.cpuSeen = now
	}
	d.lastCPU = total
	if silent < d.hangTimeout || now.Sub(d.cpuSeen) < d.hangTimeout || d.answering(now, d.hangTimeout, pr) {
		return nil
	}
	return &killOrder{reason: fmt.Sprintf("hung: nothing received for %v (HangTimeout %v), and no CPU used by its processes",
		silent.Round(time.Millisecond), d.hangTimeout), why: ErrHung}
}

// memory samples the worker's memory every MemoryInterval: over the hard limit it is killed;
// over the soft one it is recycled (the memory seen is returned, once).
func (d *watchdog) memory(now time.Time, pr probe) (*killOrder, uint64) {
	if (d.memSoft == 0 && d.memHard == 0) || now.Sub(d.lastMem) < d.memInterval {
		return nil, 0
	}
	d.lastMem = now
	rss, err := pr.rss()
	switch {
	case err != nil:
	case d.memHard > 0 && rss > d.memHard:
		e := &MemoryLimitError{RSS: rss, Limit: d.memHard}
		return &killOrder{reason: e.Error(), why: e}, 0
	case d.memSoft > 0 && rss > d.memSoft && !d.recycling:
		d.recycling = true
		return nil, rss
	}
	return nil, 0
}

// answering reports whether the worker has written what the parent has not read yet: its
// answer may be there, and the parent (starved of CPU on a loaded machine) is late, not the
// worker. A kill is then held back for up to bound, looking again at each tick; past that (a
// reader stuck with a full pipe) the kill goes ahead.
func (d *watchdog) answering(now time.Time, bound time.Duration, pr probe) bool {
	if pr.unread() == 0 {
		d.lateSince = time.Time{}
		return false
	}
	if d.lateSince.IsZero() {
		d.lateSince = now
	}
	return now.Sub(d.lateSince) < bound
}
