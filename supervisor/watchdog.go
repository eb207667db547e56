package supervisor

import (
	"fmt"
	"time"

	"github.com/supervise-dev/supervise/internal/procfs"
)

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
		if idle := now.Sub(w.cpuSeen); silent >= cfg.HangTimeout && idle >= cfg.HangTimeout && !w.answering(now, cfg.HangTimeout) {
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
	w.mu.Lock()
	cancels, overdue := w.ledger.tick(now, cfg.TaskTimeout, cfg.CancelGrace)
	var err error
	if overdue != nil {
		err = overdueError(overdue, cfg.TaskTimeout, cfg.CancelGrace)
	}
	w.mu.Unlock()
	for _, t := range cancels {
		select {
		case w.cancels <- t.id:
		default: // the sender is far behind; the hard limit still holds
		}
	}
	if overdue == nil || w.answering(now, cfg.CancelGrace) {
		return
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

// answering reports whether the worker has written what the parent has not read yet: its
// answer may be there, and the parent (starved of CPU on a loaded machine) is late, not the
// worker. The watchdog then holds a kill back for up to bound, looking again at each tick;
// past that (a reader stuck with a full pipe) the kill goes ahead.
func (w *worker) answering(now time.Time, bound time.Duration) bool {
	if w.stdout == nil || unread(w.stdout) == 0 {
		w.lateSince = time.Time{}
		return false
	}
	if w.lateSince.IsZero() {
		w.lateSince = now
	}
	return now.Sub(w.lateSince) < bound
}
