package supervisor

import (
	"cmp"
	"context"
	"iter"
	"slices"
	"sync"
	"time"

	"github.com/shirou/gopsutil/v4/cpu"
)

// Stats is a snapshot of the machine's cores and of the pool's workers. Utilization figures
// are deltas over Interval, the span since the sample before (never averages over a process's
// whole life, which is what gopsutil's Process.CPUPercent gives).
type Stats struct {
	Taken    time.Time
	Interval time.Duration
	Cores    []CoreStats   // one per logical CPU of the machine, in order
	Workers  []WorkerStats // one per slot (Config.Workers), in slot order
	Slowest  []TaskTiming  // the slowest tasks answered so far, slowest first (at most 10)
	// Failures counts the tasks that failed so far by kind: timeout, memory, hung, died,
	// cancelled, too-large, closed, error-TYPE (a handler's error of that type; past 32 types,
	// error-other) or other. Kinds with none are absent.
	Failures map[string]int
	// Containment is how the workers' processes are kept together: ContainCgroup2,
	// ContainHybrid or ContainProcessGroup.
	Containment string
}

// CoreStats is one logical CPU's time over the interval, as shares that sum to 1: User (user
// and nice), System (system, irq and softirq), Idle (idle and iowait) and Other (steal: a
// virtual machine's CPU taken by its host).
type CoreStats struct {
	User, System, Idle, Other float64
}

// Busy is the share of the interval the core was not idle.
func (c CoreStats) Busy() float64 { return min(1, max(0, 1-c.Idle)) }

// WorkerState is what a worker slot's process is doing.
type WorkerState string

const (
	WorkerIdle     WorkerState = "idle"     // no task sent to it
	WorkerBusy     WorkerState = "busy"     // running a task, or holding some
	WorkerStopping WorkerState = "stopping" // finishing its tasks before it exits
	WorkerDown     WorkerState = "down"     // no process: being replaced, or the pool stopped
)

// WorkerStats describes one worker slot. A worker that is replaced leaves its slot to its
// replacement: the first fields describe the process in the slot now, the totals every process
// that held it.
type WorkerStats struct {
	Slot      int
	ID, Pid   int // 0 when the slot is down
	State     WorkerState
	Started   time.Time
	Uptime    time.Duration
	Processes int // the worker and its descendants, now
	// Utilization is the CPU time the worker and its descendants used over the interval,
	// divided by the interval: 1 is one core kept busy.
	Utilization float64
	RSS         uint64 // resident memory of the worker and its descendants, bytes

	Tasks  int           // answered with a result (each input of a chunk call counts)
	Failed int           // failed on this slot (errors, panics, time limits, crashes; likewise)
	Calls  int           // calls answered with a result: a chunk call counts once
	CPU    time.Duration // user and system time, descendants included
	MaxRSS uint64        // the most seen in samples, or reported by the kernel at exit
	// MemoryPeak is, where the kernel enforces MemoryHardLimit on the workers' cgroups, the
	// most memory a worker's cgroup held (page cache included: what the limit is measured
	// against; RSS can count pages charged elsewhere, such as the shared binary's). 0 otherwise.
	MemoryPeak uint64
	Restarts   int // processes that took the slot after the first
	// BytesIn and BytesOut are the bytes of frames read from and written to the slot's
	// workers' pipes (0 for a Config.Plugin pool, whose connection is not the pool's to count).
	BytesIn, BytesOut uint64
}

// TaskTiming is how long a task ran on its worker: from when the worker could start it (sent,
// and the worker's previous call answered) to its answer, as the parent saw them happen (so a
// little short, by the time an answer takes to arrive, when calls were pipelined).
type TaskTiming struct {
	ID       uint64
	Handler  string
	WorkerID int
	Took     time.Duration
}

const slowestKept = 10

// keepSlowest adds t to list (slowest first, at most slowestKept long) if it is among the
// slowest, and returns the list.
func keepSlowest(list []TaskTiming, t TaskTiming) []TaskTiming {
	if len(list) == slowestKept && t.Took <= list[len(list)-1].Took {
		return list
	}
	i, _ := slices.BinarySearchFunc(list, t, func(a, b TaskTiming) int { return cmp.Compare(b.Took, a.Took) })
	list = slices.Insert(list, i, t)
	return list[:min(len(list), slowestKept)]
}

// slotTotals are the figures of the processes that held a slot and have exited.
type slotTotals struct {
	restarts, tasks, failed, calls int
	cpu                            time.Duration
	maxRSS, memoryPeak             uint64
	bytesIn, bytesOut              uint64
}

// sampler takes Stats. It samples in a goroutine of its own, every Config.StatsInterval, only
// while someone watches (WatchStats) or asked (Stats) within the last two intervals.
type sampler struct {
	mu       sync.Mutex // guards everything below but sampleMu's
	running  bool
	watchers int
	lastAsk  time.Time
	latest   Stats
	changed  chan struct{} // closed and replaced at every sample
	slots    []slotTotals
	slowest  []TaskTiming // of exited workers
	stopped  chan struct{}
	wg       sync.WaitGroup

	sampleMu  sync.Mutex // one sample at a time; guards the previous sample's figures
	prevAt    time.Time
	prevCores []cpu.TimesStat
	prevCPU   map[int]time.Duration // by worker id
}

func (s *sampler) init(slots int) {
	s.slots = make([]slotTotals, slots)
	s.changed = make(chan struct{})
	s.stopped = make(chan struct{})
	s.prevAt = time.Now()
	s.prevCores, _ = cpu.Times(true)
	s.prevCPU = map[int]time.Duration{}
}

// Stats returns a snapshot of the machine's cores and the pool's workers. While the pool
// samples on its own (see WatchStats, and below) it is the latest sample, over the last
// Config.StatsInterval; else it samples now, over the span since the sample before (since
// Start for the first one), and the pool samples on its own for two intervals after, so that
// a caller asking every interval gets regular figures without sampling itself.
func (p *Pool) Stats() Stats {
	s := &p.sampler
	s.mu.Lock()
	s.lastAsk = time.Now()
	if s.running && !s.latest.Taken.IsZero() {
		st := s.latest
		s.mu.Unlock()
		return st
	}
	s.mu.Unlock()
	st := p.sample()
	p.runSampler()
	return st
}

// WatchStats yields a fresh snapshot every Config.StatsInterval until ctx ends or the loop
// stops. The pool samples only while someone watches (or asked Stats lately): with nobody
// listening no goroutine is left sampling.
func (p *Pool) WatchStats(ctx context.Context) iter.Seq[Stats] {
	return func(yield func(Stats) bool) {
		s := &p.sampler
		s.mu.Lock()
		s.watchers++
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			s.watchers--
			s.mu.Unlock()
		}()
		p.runSampler()
		for {
			s.mu.Lock()
			changed := s.changed
			s.mu.Unlock()
			select {
			case <-changed:
			case <-ctx.Done():
				return
			case <-s.stopped:
				return
			}
			s.mu.Lock()
			st := s.latest
			s.mu.Unlock()
			if !yield(st) {
				return
			}
		}
	}
}

// runSampler starts the sampling goroutine unless it runs, or the pool has finished.
func (p *Pool) runSampler() {
	s := &p.sampler
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.stopped:
		return
	default:
	}
	if s.running {
		return
	}
	s.running = true
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(p.cfg.StatsInterval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
			case <-s.stopped:
				s.mu.Lock()
				s.running = false
				s.mu.Unlock()
				return
			}
			p.sample()
			s.mu.Lock()
			if s.watchers == 0 && time.Since(s.lastAsk) > 2*p.cfg.StatsInterval {
				s.running = false
				s.mu.Unlock()
				return
			}
			s.mu.Unlock()
		}
	}()
}

// stopSampler ends the sampling goroutine, once the pool has finished; Stats still samples
// on demand after.
func (p *Pool) stopSampler() {
	s := &p.sampler
	s.mu.Lock()
	select {
	case <-s.stopped:
	default:
		close(s.stopped)
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// sample takes a snapshot, stores it as the latest and wakes the watchers.
func (p *Pool) sample() Stats {
	s := &p.sampler
	s.sampleMu.Lock()
	defer s.sampleMu.Unlock()
	now := time.Now()
	st := Stats{Taken: now, Interval: now.Sub(s.prevAt), Containment: p.containment.kind, Failures: p.failures.snapshot()}
	if cores, err := cpu.Times(true); err == nil {
		st.Cores = coreShares(s.prevCores, cores)
		s.prevCores = cores
	}

	p.mu.Lock()
	live := make([]*worker, 0, len(p.workers))
	for w := range p.workers {
		live = append(live, w)
	}
	p.mu.Unlock()

	st.Workers = make([]WorkerStats, p.cfg.Workers)
	for i := range st.Workers {
		st.Workers[i] = WorkerStats{Slot: i, State: WorkerDown}
	}
	cpuNow := make(map[int]time.Duration, len(live))
	liveStats := make([]WorkerStats, len(live))
	liveSlow := make([][]TaskTiming, len(live))
	for i, w := range live {
		ws := &liveStats[i]
		ws.Slot, ws.ID, ws.Pid, ws.Started, ws.Uptime = w.slot, w.id, w.pid, w.started, now.Sub(w.started)
		ws.Tasks, ws.Failed, ws.Calls = int(w.tasksDone.Load()), int(w.tasksFailed.Load()), int(w.callsDone.Load())
		ws.BytesIn, ws.BytesOut = w.link.bytes()
		w.mu.Lock()
		switch {
		case w.phase != phaseReady:
			ws.State = WorkerStopping
		case w.ledger.len() > 0:
			ws.State = WorkerBusy
		default:
			ws.State = WorkerIdle
		}
		liveSlow[i] = slices.Clone(w.slowest)
		w.mu.Unlock()
		tree := w.workerFigures()
		if w.leaf != nil { // exact: every process that ran in its cgroup, escaped ones too
			if cpu, err := w.leaf.CPU(); err == nil {
				tree.cpu = cpu
			}
		}
		ws.Processes, ws.RSS, ws.CPU = tree.processes, tree.rss, tree.cpu
		ws.MaxRSS = max(w.maxRSS.Load(), tree.rss)
		w.maxRSS.Store(ws.MaxRSS)
		if w.leaf != nil && w.leaf.MemoryLimited() {
			ws.MemoryPeak, _, _ = w.leaf.Memory()
		}
		cpuNow[w.id] = tree.cpu
		if span := min(st.Interval, ws.Uptime); span > 0 {
			ws.Utilization = float64(tree.cpu-s.prevCPU[w.id]) / float64(span)
		}
	}
	s.prevAt, s.prevCPU = now, cpuNow

	var slowest []TaskTiming
	s.mu.Lock()
	for i, w := range live {
		// A worker whose figures were folded into its slot's totals since it was listed
		// would count twice.
		if w.folded {
			continue
		}
		st.Workers[w.slot] = liveStats[i]
		for _, t := range liveSlow[i] {
			slowest = keepSlowest(slowest, t)
		}
	}
	for i := range st.Workers {
		ws, done := &st.Workers[i], s.slots[i]
		ws.Tasks += done.tasks
		ws.Failed += done.failed
		ws.Calls += done.calls
		ws.CPU += done.cpu
		ws.MaxRSS = max(ws.MaxRSS, done.maxRSS)
		ws.MemoryPeak = max(ws.MemoryPeak, done.memoryPeak)
		ws.Restarts = done.restarts
		ws.BytesIn += done.bytesIn
		ws.BytesOut += done.bytesOut
	}
	for _, t := range s.slowest {
		slowest = keepSlowest(slowest, t)
	}
	st.Slowest = slowest
	s.latest = st
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	return st
}

// workerExited folds an exited worker's figures into its slot's totals.
func (p *Pool) workerExited(w *worker) {
	s := &p.sampler
	var cpuTime time.Duration
	maxRSS := w.maxRSS.Load()
	if w.state != nil {
		cpuTime = w.state.UserTime() + w.state.SystemTime() // its own and its reaped children's
		maxRSS = max(maxRSS, exitMaxRSS(w.state))
	}
	cpuTime = max(cpuTime, w.leafUse.CPU) // its cgroup's count also has what it never reaped
	w.mu.Lock()
	slow := slices.Clone(w.slowest)
	w.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	w.folded = true
	t := &s.slots[w.slot]
	t.tasks += int(w.tasksDone.Load())
	t.failed += int(w.tasksFailed.Load())
	t.calls += int(w.callsDone.Load())
	t.cpu += cpuTime
	t.maxRSS = max(t.maxRSS, maxRSS)
	t.memoryPeak = max(t.memoryPeak, w.leafUse.Peak)
	in, out := w.link.bytes()
	t.bytesIn += in
	t.bytesOut += out
	for _, x := range slow {
		s.slowest = keepSlowest(s.slowest, x)
	}
}

// workerReplaced counts a restart of slot.
func (p *Pool) workerReplaced(slot int) {
	p.sampler.mu.Lock()
	p.sampler.slots[slot].restarts++
	p.sampler.mu.Unlock()
}
