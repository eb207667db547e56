package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/supervise-dev/supervise/supervisor"
)

// jobReport is what --report prints and --report-json writes after a job; its JSON form is
// described by docs/report.schema.json (kept in step by TestReportJSONSchema).
type jobReport struct {
	Command    string         `json:"command"`
	Workers    int            `json:"workers"`
	Cores      int            `json:"cores"`
	Contained  string         `json:"containment"` // how the workers' processes were kept together
	Wall       float64        `json:"wall_seconds"`
	CPU        float64        `json:"cpu_seconds"`         // parent and workers
	ParentCPU  float64        `json:"parent_cpu_seconds"`  // this process
	WorkersCPU float64        `json:"workers_cpu_seconds"` // every worker process, and their children
	Efficiency float64        `json:"parallel_efficiency"` // CPU / (wall x cores)
	CoreBusy   []float64      `json:"core_busy"`           // mean busy share of each core over the job
	Items      int            `json:"items"`               // files, for digest
	Bytes      int64          `json:"bytes"`
	Failed     int            `json:"failed"` // items that ended in an error
	PerWorker  []workerReport `json:"per_worker"`
	Slowest    []slowTask     `json:"slowest_tasks"`
}

type workerReport struct {
	Slot     int     `json:"slot"`
	Tasks    int     `json:"tasks"`
	Failed   int     `json:"failed"`
	CPU      float64 `json:"cpu_seconds"`
	MaxRSS   uint64  `json:"max_rss_bytes"`
	Peak     uint64  `json:"memory_peak_bytes,omitempty"` // the cgroup's, where the kernel limits memory
	Restarts int     `json:"restarts"`
}

type slowTask struct {
	Task    uint64  `json:"task"`
	Worker  int     `json:"worker"`
	Seconds float64 `json:"seconds"`
	What    string  `json:"what"` // the files it hashed, for digest
}

// coreMeans averages each core's busy share over the snapshots it is given, weighted by their
// intervals.
type coreMeans struct {
	busy []float64
	span time.Duration
}

func (m *coreMeans) add(st supervisor.Stats) {
	if m.busy == nil {
		m.busy = make([]float64, len(st.Cores))
	}
	for i, c := range st.Cores[:min(len(st.Cores), len(m.busy))] {
		m.busy[i] += c.Busy() * st.Interval.Seconds()
	}
	m.span += st.Interval
}

func (m *coreMeans) means() []float64 {
	out := make([]float64, len(m.busy))
	for i, b := range m.busy {
		out[i] = min(1, max(0, b/m.span.Seconds())) // within rounding of 0 and 1 already
	}
	return out
}

// monitor feeds the live view's core bars and the report's per-core means from the pool's
// snapshots until ctx ends. It samples only when one of them wants it.
func monitor(ctx context.Context, pool *supervisor.Pool, view *liveView, means *coreMeans) (wait func()) {
	done := make(chan struct{})
	if view == nil && means == nil {
		close(done)
		return func() {}
	}
	go func() {
		defer close(done)
		for st := range pool.WatchStats(ctx) {
			busy := make([]float64, len(st.Cores))
			for i, c := range st.Cores {
				busy[i] = c.Busy()
			}
			view.coreUse(busy)
			if means != nil {
				means.add(st)
			}
		}
	}()
	return func() { <-done }
}

// newReport puts together the report of a job that has ended, from the closed pool's final
// figures. what names a task by id (nil: tasks are named by id alone).
func newReport(command string, pool *supervisor.Pool, wall time.Duration, means *coreMeans, what func(uint64) string) *jobReport {
	st := pool.Stats() // the pool is closed: final figures, over the span since the last sample
	means.add(st)
	r := &jobReport{Command: command, Workers: len(st.Workers), Cores: len(st.Cores), Contained: st.Containment, Wall: wall.Seconds(),
		CoreBusy: means.means(), ParentCPU: selfCPU().Seconds(), PerWorker: []workerReport{}, Slowest: []slowTask{}}
	for _, w := range st.Workers {
		r.PerWorker = append(r.PerWorker, workerReport{Slot: w.Slot, Tasks: w.Tasks, Failed: w.Failed,
			CPU: w.CPU.Seconds(), MaxRSS: w.MaxRSS, Peak: w.MemoryPeak, Restarts: w.Restarts})
		r.WorkersCPU += w.CPU.Seconds()
	}
	r.CPU = r.ParentCPU + r.WorkersCPU
	if r.Wall > 0 && r.Cores > 0 {
		r.Efficiency = r.CPU / (r.Wall * float64(r.Cores))
	}
	for _, t := range st.Slowest[:min(5, len(st.Slowest))] {
		s := slowTask{Task: t.ID, Worker: t.WorkerID, Seconds: t.Took.Seconds()}
		if what != nil {
			s.What = what(t.ID)
		}
		r.Slowest = append(r.Slowest, s)
	}
	return r
}

// selfCPU is this process's CPU time so far, user and system.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// writeText prints the report as a short table.
func (r *jobReport) writeText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "%s: %d items, %s, %d failed\n", r.Command, r.Items, humanize.IBytes(uint64(r.Bytes)), r.Failed)
	fmt.Fprintf(tw, "wall %.3fs  cpu %.3fs (workers %.3fs, parent %.3fs)  parallel efficiency %.0f%% of %d cores\n",
		r.Wall, r.CPU, r.WorkersCPU, r.ParentCPU, 100*r.Efficiency, r.Cores)
	fmt.Fprintf(tw, "workers contained by %s\n", r.Contained)
	fmt.Fprint(tw, "core busy:")
	for i, b := range r.CoreBusy {
		fmt.Fprintf(tw, "  cpu%d %.0f%%", i, 100*b)
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "worker\ttasks\tfailed\tcpu\tmax rss\trestarts")
	for _, p := range r.PerWorker {
		fmt.Fprintf(tw, "%d\t%d\t%d\t%.3fs\t%s\t%d\n", p.Slot, p.Tasks, p.Failed, p.CPU, humanize.IBytes(p.MaxRSS), p.Restarts)
	}
	if len(r.Slowest) > 0 {
		fmt.Fprintln(tw, "slowest tasks\tworker\ttook\twhat")
		for _, s := range r.Slowest {
			fmt.Fprintf(tw, "%d\t%d\t%.3fs\t%s\n", s.Task, s.Worker, s.Seconds, s.What)
		}
	}
	return tw.Flush()
}

// writeJSON writes the report to path.
func (r *jobReport) writeJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// writeReports writes r as --report and --report-json ask.
func writeReports(pf *poolFlags, r *jobReport, stderr io.Writer) error {
	if pf.report {
		if err := r.writeText(stderr); err != nil {
			return err
		}
	}
	if pf.reportJSON != "" {
		if err := r.writeJSON(pf.reportJSON); err != nil {
			return fmt.Errorf("--report-json: %w", err)
		}
	}
	return nil
}

// startJobPool starts a job's pool and, when the live view or a report (--report,
// --report-json) wants them, the monitor that feeds them; means is nil without a report.
// stopMonitor ends the monitor and waits for it; it may be called more than once.
func startJobPool(ctx context.Context, pf *poolFlags, cfg supervisor.Config, view *liveView) (pool *supervisor.Pool, means *coreMeans, stopMonitor func(), err error) {
	if pf.report || pf.reportJSON != "" {
		means = &coreMeans{}
	}
	if view != nil {
		cfg.StatsInterval = viewRefresh
	}
	// A command that is not a worker (cat, say) waits silently for input that never comes:
	// say so well before --start-timeout fails it.
	// (Not for the supervise binary's own workers, slow only on a loaded machine.)
	hint := time.AfterFunc(min(2*time.Second, cfg.StartTimeout/2), func() {
		fmt.Fprintf(console, "supervise: no hello from %q yet: %s\n", cfg.Command, notAWorker)
	})
	if len(cfg.Command) == 0 {
		hint.Stop()
	}
	pool, err = supervisor.Start(ctx, cfg)
	hint.Stop()
	if err != nil {
		return nil, nil, nil, err
	}
	if pf.uiListener != nil {
		serveUI(pf.uiListener, "supervise: a local pool", localMachine(pool))
	}
	watching, stop := context.WithCancel(ctx)
	wait := monitor(watching, pool, view, means)
	var once sync.Once
	return pool, means, func() { once.Do(func() { stop(); wait() }) }, nil
}

// keepNames is how many names of ended tasks a job keeps for its report: the slowest so far.
// The report lists the pool's 5 slowest.
const keepNames = 16

// taskNames names a job's tasks for its report's slowest tasks. It keeps a task's name while
// the task runs and, once it has ended, only if it is among the keepNames slowest so far: a job
// of millions of tasks keeps a few dozen names, not one per task. A nil *taskNames keeps none.
type taskNames struct {
	mu    sync.Mutex
	names map[uint64]string
	slow  []slowName // the slowest ended, at most keepNames
}

type slowName struct {
	id   uint64
	took time.Duration
}

func newTaskNames() *taskNames { return &taskNames{names: map[uint64]string{}} }

// started names task id.
func (n *taskNames) started(id uint64, name string) {
	if n == nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.names[id] = name
}

// ended forgets the name of f's task, unless it is among the slowest so far (by f's Took, where
// its future has one).
func (n *taskNames) ended(f interface{ ID() uint64 }) {
	if n == nil {
		return
	}
	var took time.Duration
	if t, ok := f.(interface{ Took() time.Duration }); ok {
		took = t.Took()
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.end(f.ID(), took)
}

func (n *taskNames) end(id uint64, took time.Duration) {
	if len(n.slow) < keepNames {
		n.slow = append(n.slow, slowName{id, took})
		return
	}
	least := 0
	for i, s := range n.slow {
		if s.took < n.slow[least].took {
			least = i
		}
	}
	if took <= n.slow[least].took {
		delete(n.names, id)
		return
	}
	delete(n.names, n.slow[least].id)
	n.slow[least] = slowName{id, took}
}

// name is task id's name, or "".
func (n *taskNames) name(id uint64) string {
	if n == nil {
		return ""
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.names[id]
}
