package supervisor

import (
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/supervise-dev/supervise/channel"
	"github.com/supervise-dev/supervise/internal/handshake"
	"go.opentelemetry.io/otel/trace"
)

// Config describes a pool. The zero value is a pool of DefaultWorkers() workers that re-execute
// the current binary (which must call child.Main first thing in main).
type Config struct {
	// Workers is the number of worker processes kept running. Default: DefaultWorkers(); at
	// most MaxWorkers().
	Workers int
	// Command is the worker's argv. Default: this executable, re-executed with no arguments
	// (a plugin pool has no default).
	Command []string
	// Env is added to the worker's environment (which otherwise is the parent's, plus the
	// handshake variables of docs/protocol.md).
	Env []string
	// Dir is the worker's working directory. Default: the parent's.
	Dir string
	// InFlight is how many calls a worker is sent before it answers the first (pipelining);
	// a frame carries up to this many calls (batching). Use 1 or 2 for long tasks of uneven
	// length, so that one worker does not queue up work another could start. Default: 32;
	// for plugins, how many calls a worker runs at once, default 1.
	InFlight int
	// MaxFrame is the largest frame in bytes, in either direction. Default: 64 MiB.
	MaxFrame int
	// MaxReportBytes bounds the reports (child.Report) the pool keeps for a task whose caller
	// has not taken them yet (Future.Reports), in bytes, counting 64 more for each report. A
	// handler that sends more fails its task with a *ReportOverflowError, and its worker is
	// killed. Default: 64 MiB; negative: no limit.
	MaxReportBytes int
	// StartTimeout bounds the wait for a new worker's hello. Default: 10s.
	StartTimeout time.Duration
	// Heartbeat is the period at which workers are asked to send heartbeats (and at which a
	// plugin worker is pinged). Default: 1s.
	Heartbeat time.Duration
	// HangTimeout: a worker that sends nothing at all, not even a heartbeat, for this long is
	// hung (a SIGSTOPped process is): it is killed and replaced, and the calls it was running
	// fail with ErrHung. A plugin worker is hung when no Ping succeeded for this long.
	// Default: 30s; negative: never.
	HangTimeout time.Duration
	// TaskTimeout is the time limit of every call, counted from when the worker starts it: at
	// the limit the call fails with a *TimeoutError (within 50 ms: the watchdog looks that
	// often), never later and never with a result, and the worker is sent a cancel (a Go
	// handler's context is cancelled). A chunk's limit is the chunk's: the input running
	// then fails with it. Zero: no limit (a call's own context deadline still applies).
	TaskTimeout time.Duration
	// CancelGrace is how long a call may go on after its cancel (its time limit, or its
	// context ending) before its worker is killed and replaced. It decides when the worker
	// is killed, not when the call fails. Only that call fails (with ErrTimeout, or its
	// context's error). Default: 5s.
	CancelGrace time.Duration
	// StopGrace is the time between SIGTERM and SIGKILL when a worker's process group is
	// killed. Default: 2s.
	StopGrace time.Duration
	// MemorySoftLimit: a worker whose resident memory (its own and its descendants') goes over
	// this many bytes is recycled: it is sent no more calls, finishes those it has, exits and is
	// replaced. Zero: no limit. Sampled every MemoryInterval, during calls too. Linux only.
	MemorySoftLimit uint64
	// MemoryHardLimit: over this many bytes the worker is killed at once; the calls it was
	// running fail with a *MemoryLimitError that names the RSS seen. Zero: no limit. Linux only.
	// Where the pool has cgroups (Stats.Containment) the kernel enforces it on the worker's
	// cgroup; elsewhere it is sampled.
	MemoryHardLimit uint64
	// MaxProcs: at most this many processes and threads in a worker's cgroup (pids.max): a fork
	// past it fails, and the handler decides what that means for its task. Leave room for the
	// worker's own threads: a Go worker has a dozen, more while calls block in the kernel, and
	// its runtime aborts when it cannot make one it needs (the task then fails with
	// ErrWorkerDied). Zero: no limit. Needs cgroups: Start says what is missing.
	MaxProcs int
	// CPULimit caps the CPU time of each worker's cgroup at this many cores (cpu.max): 0.5 is
	// half a core, whatever the worker starts. Zero: no limit. Needs cgroups, as MaxProcs.
	CPULimit float64
	// MemoryInterval is how often a worker's memory is sampled when a limit is set. Default:
	// 250ms.
	MemoryInterval time.Duration
	// MaxTasksPerWorker recycles a worker after it was sent this many calls: it finishes them,
	// exits, and a fresh one takes its place (Python's maxtasksperchild). Zero: never.
	MaxTasksPerWorker int
	// Retries is how many times a call is given to another worker when the worker running it
	// dies (crash, hung, killed by a signal), for every call (Func.WithRetries sets it per
	// handler). Zero, the default, is at-most-once: a call is never run twice. With retries a
	// call may run more than once, so only use them for idempotent work. Handler errors and
	// time limits are not retried.
	Retries int
	// Init, when its Handler is set, is called on every worker once it has started and before
	// it is given any task (Python's Pool(initializer=...)): load a model, open a database. A
	// worker whose Init fails or does not answer within StartTimeout is a failed start (see
	// RestartPolicy); Start returns that error.
	Init Init
	// Restart is how dead workers are replaced: restart intensity, backoff, and when the pool
	// gives up. The zero value means its documented defaults.
	Restart RestartPolicy
	// EventHook, if set, receives every Event (worker started, exited, killed, task retried,
	// restart backoff, pool broken), one at a time, in order, from the pool's goroutines. It must
	// return quickly and must not call Shutdown or Close.
	EventHook func(Event)
	// Metrics, if set, gets the pool's Prometheus metrics (tasks by handler and outcome, their
	// durations and queue waits, workers by state, kills by reason, each worker's CPU and
	// memory, each core's use; docs/metrics.md). Two pools need two registries, or a
	// prometheus.WrapRegistererWith label to tell them apart. Nil: none are kept.
	Metrics prometheus.Registerer
	// TracerProvider, if set, gets a span per task, a child of the span in the context the
	// task was submitted with: from submission to outcome, with events when it was sent to a
	// worker and started there, and its error as its status. Whether or not it is set, a task
	// submitted with a span in its context passes the trace to its worker (tracing.go).
	TracerProvider trace.TracerProvider
	// StatsInterval is the span Stats's utilization figures cover: the pool samples CPU and
	// memory this often while someone watches (Pool.WatchStats) or asks (Pool.Stats), and not
	// at all otherwise. Default: 1s.
	StatsInterval time.Duration
	// Plugin, when set, makes the workers processes the pool runs calls on with Pool.Call
	// instead of frames: hashicorp/go-plugin plugins with supervisor/goplugin. See Plugin.
	Plugin Plugin
	// Logger receives the pool's events and the workers' stderr, one record per line, tagged
	// with worker and pid. Default: slog.Default().
	Logger *slog.Logger
}

// Init is a call made on every worker before it takes tasks: Handler on Input.
type Init struct {
	Handler string
	Input   any
}

func (c Config) withDefaults() (Config, error) {
	if c.MaxProcs < 0 || c.CPULimit < 0 {
		return c, fmt.Errorf("supervise: Config.MaxProcs %d, Config.CPULimit %v: not below zero", c.MaxProcs, c.CPULimit)
	}
	if c.Workers <= 0 {
		c.Workers = DefaultWorkers()
	}
	if most := MaxWorkers(); c.Workers > most {
		// Starting them all would end in "too many open files" part way.
		return c, fmt.Errorf("supervise: Config.Workers %d: at most %d workers fit in this process's limit of open files (RLIMIT_NOFILE)", c.Workers, most)
	}
	if c.Plugin != nil {
		switch {
		case len(c.Command) == 0:
			return c, fmt.Errorf("supervise: Config.Plugin needs Config.Command, the plugin's argv")
		case c.Init.Handler != "":
			return c, fmt.Errorf("supervise: Config.Init needs workers that speak frames, not Config.Plugin")
		case c.InFlight <= 0:
			c.InFlight = 1
		}
	}
	if len(c.Command) == 0 {
		self, err := os.Executable()
		if err != nil {
			return c, fmt.Errorf("supervise: finding this executable to re-execute as a worker: %w", err)
		}
		c.Command = []string{self}
	}
	if c.InFlight <= 0 {
		c.InFlight = 32
	}
	if c.MaxFrame <= 0 {
		c.MaxFrame = channel.DefaultMaxFrame
	}
	if c.MaxReportBytes == 0 {
		c.MaxReportBytes = 64 << 20
	}
	if c.StartTimeout <= 0 {
		c.StartTimeout = defaultStartTimeout
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = handshake.DefaultHeartbeat
	}
	if c.HangTimeout == 0 {
		c.HangTimeout = 30 * time.Second
	}
	if c.CancelGrace <= 0 {
		c.CancelGrace = 5 * time.Second
	}
	if c.MemoryInterval <= 0 {
		c.MemoryInterval = 250 * time.Millisecond
	}
	if c.StatsInterval <= 0 {
		c.StatsInterval = time.Second
	}
	if c.StopGrace <= 0 {
		c.StopGrace = 2 * time.Second
	}
	c.Restart = c.Restart.withDefaults()
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// DefaultWorkers is the pool size when Config.Workers is not given: the CPUs this process may
// use, which Go's runtime.GOMAXPROCS(0) says since Go 1.25: the machine's logical CPUs, fewer
// under a CPU quota on the process's cgroup (a container's --cpus, systemd's CPUQuota=) or an
// affinity mask (taskset), or as the GOMAXPROCS environment variable says.
func DefaultWorkers() int { return runtime.GOMAXPROCS(0) }

// defaultStartTimeout is Config.StartTimeout's default (this package's tests set it longer:
// see export_test.go).
var defaultStartTimeout = 10 * time.Second
