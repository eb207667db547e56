package supervisor

import (
	"errors"
	"time"

	"github.com/shirou/gopsutil/v4/cpu"
	"github.com/shirou/gopsutil/v4/process"
	"github.com/supervise-dev/supervise/internal/procfs"
)

// The figures behind Stats, read from the system: per-core CPU time (gopsutil) and each
// worker's process tree (/proc).

// coreShares turns two readings of the per-CPU time counters into shares of the interval.
func coreShares(prev, now []cpu.TimesStat) []CoreStats {
	out := make([]CoreStats, 0, len(now))
	for i, c := range now {
		var d cpu.TimesStat
		if i < len(prev) {
			d = prev[i]
		}
		user := c.User + c.Nice - d.User - d.Nice // guest time is counted in user already
		system := c.System + c.Irq + c.Softirq - d.System - d.Irq - d.Softirq
		idle := c.Idle + c.Iowait - d.Idle - d.Iowait
		other := c.Steal - d.Steal
		total := user + system + idle + other
		if total <= 0 {
			out = append(out, CoreStats{Idle: 1})
			continue
		}
		out = append(out, CoreStats{User: user / total, System: system / total, Idle: idle / total, Other: other / total})
	}
	return out
}

type treeSample struct {
	processes int
	rss       uint64
	cpu       time.Duration
}

// treeFigures sums the figures of a worker's process tree: each live process's own CPU time
// and the time of the children it has reaped (so a grandchild's work counts while it runs and
// after it ends), and its resident memory. A process that ends while being read is skipped.
// The CPU times come from one read of /proc/PID/stat on Linux: gopsutil's Process.Times leaves
// out the reaped children's time, and a second read for it doubled the cost of a sample.
func treeFigures(pid int) treeSample { return figuresOf(procfs.Tree(pid)) }

// workerFigures are the figures of the worker's processes: those of its cgroup where it has
// one (every process it started, escaped ones included), else its tree.
func (w *worker) workerFigures() treeSample {
	if w.leaf != nil {
		if pids, err := w.leaf.Procs(); err == nil {
			return figuresOf(pids)
		}
	}
	return treeFigures(w.pid)
}

func figuresOf(pids []int) treeSample {
	var out treeSample
	for _, id := range pids {
		proc := &process.Process{Pid: int32(id)}
		own, reaped, err := procfs.CPU(id)
		if errors.Is(err, errors.ErrUnsupported) {
			var times *cpu.TimesStat
			if times, err = proc.Times(); err == nil {
				own = time.Duration((times.User + times.System) * float64(time.Second))
			}
		}
		if err != nil {
			continue
		}
		out.processes++
		out.cpu += own + reaped
		if mem, err := proc.MemoryInfo(); err == nil {
			out.rss += mem.RSS
		}
	}
	return out
}
