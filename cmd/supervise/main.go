// Command supervise runs work in a pool of worker processes that it supervises.
//
//	supervise [--workers N] digest PATH...
//
// prints the SHA-512 of every regular file under the paths, byte for byte as sha512sum does,
// using one worker process per core;
//
//	supervise [--workers N] run --call NAME -- CMD ARGS...
//
// makes each line of stdin a task for a pool of CMD, a worker in any language that speaks
// docs/protocol.md (child/python for Python), and prints the results; and
//
//	supervise conformance -- CMD ARGS...
//
// checks such a worker against the protocol. The supervise binary is its own worker: the pool
// re-executes it, and child.Main (first thing in main) serves the handlers instead of the CLI.
package main

import (
	"context"
	"errors"
	"fmt"
	"github.com/supervise-dev/supervise/internal/digest"
	"github.com/supervise-dev/supervise/internal/execjob"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"
	"github.com/supervise-dev/supervise/child"
	"github.com/supervise-dev/supervise/internal/handshake"
	"github.com/supervise-dev/supervise/supervisor"
	"golang.org/x/term"
)

// exitError carries an exit status out of a command whose failures were already reported.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// poolFlags are the flags every pool-running subcommand shares. They are persistent flags of
// the root command, so they can go before the subcommand (supervise --workers 8 digest DIR)
// or after it.
type poolFlags struct {
	workers      int
	inFlight     int
	timeout      time.Duration
	cancelGrace  time.Duration
	stopGrace    time.Duration
	hang         time.Duration
	startTimeout time.Duration
	maxTasks     int
	retries      int
	memHard      string
	memSoft      string
	maxProcs     int
	cpuLimit     float64
	logLevel     string
	cpuProfile   string
	metrics      string // --metrics ADDR
	ui           string // --ui ADDR
	uiListener   net.Listener

	progress   bool   // live view even when stderr is not a terminal
	quiet      bool   // no live view (and digest -c: no OK lines)
	quietAt    int64  // when --quiet was given (flagSeq)
	report     bool   // print a report on stderr after the job
	reportJSON string // write the report as JSON to this file
}

// liveView returns the live view on stderr if there should be one: --progress, or stderr is
// a terminal and --quiet is not set. Otherwise nil, a view that shows nothing.
func (pf *poolFlags) liveView(stderr io.Writer, job, items string) *liveView {
	if pf.quiet {
		return nil
	}
	f, ok := stderr.(*os.File)
	if !pf.progress && (!ok || !term.IsTerminal(int(f.Fd()))) {
		return nil
	}
	return newLiveView(stderr, runtime.NumCPU(), job, items)
}

// profileEnv passes --cpuprofile to the workers.
const profileEnv = "SUPERVISE_CPUPROFILE"

// serveProfiled serves as a worker under the CPU profiler (the hidden --cpuprofile flag).
func serveProfiled(path string) int {
	f, err := os.Create(fmt.Sprintf("%s.worker-%d", path, os.Getpid()))
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "supervise worker:", err)
		return 1
	}
	defer pprof.StopCPUProfile()
	if err := child.Serve(); err != nil {
		fmt.Fprintln(os.Stderr, "supervise worker:", err)
		return 1
	}
	return 0
}

func main() {
	child.Handle("digest", digest.Files)
	child.Handle("exec", execjob.Run)
	if os.Getenv(profileEnv) != "" && os.Getenv(handshake.CookieKey) != "" {
		os.Exit(serveProfiled(os.Getenv(profileEnv)))
	}
	child.Main() // a worker of some pool serves here and exits

	var pf poolFlags
	root := &cobra.Command{
		Use:   "supervise",
		Short: "Run work in supervised worker processes",
		Long: `supervise runs work in a pool of worker processes that it starts, feeds over their
stdin/stdout with msgpack frames, and watches: a worker that dies fails only the tasks it was
running and is replaced.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version(),
	}
	root.SetVersionTemplate("supervise {{.Version}}\n")
	root.PersistentFlags().IntVarP(&pf.workers, "workers", "j", supervisor.DefaultWorkers(), "number of worker processes; by default the CPUs this process may use (a cgroup CPU quota or an affinity mask counts)")
	root.PersistentFlags().IntVar(&pf.inFlight, "in-flight", 2, "tasks sent to a worker ahead of its answers (run: 32 unless given)")
	root.PersistentFlags().DurationVar(&pf.timeout, "timeout", 0, "soft time limit of a task: its worker is asked to cancel it (0: none)")
	root.PersistentFlags().DurationVar(&pf.cancelGrace, "cancel-grace", 5*time.Second, "how long a cancelled task may go on before its worker is killed and replaced")
	root.PersistentFlags().DurationVar(&pf.stopGrace, "stop-grace", 2*time.Second, "time between SIGTERM and SIGKILL when a worker's process group is killed")
	root.PersistentFlags().DurationVar(&pf.hang, "hang-timeout", 30*time.Second, "kill a worker that sends nothing, not even a heartbeat, and uses no CPU, for this long (0: never)")
	root.PersistentFlags().DurationVar(&pf.startTimeout, "start-timeout", 10*time.Second, "how long a new worker has to say hello (and pass its init) before its start counts as failed")
	root.PersistentFlags().IntVar(&pf.maxTasks, "max-tasks-per-worker", 0, "replace a worker after this many tasks (0: never)")
	root.PersistentFlags().IntVar(&pf.retries, "retries", 0, "give a task to another worker up to this many times when its worker dies")
	root.PersistentFlags().StringVar(&pf.memHard, "memory-limit", "", "kill a worker whose memory (with its children's) goes over this, e.g. 2GiB; its task fails (Linux: enforced by the kernel on the worker's cgroup where it has one, else sampled)")
	root.PersistentFlags().IntVar(&pf.maxProcs, "max-procs", 0, "at most this many processes and threads in each worker's cgroup: forks past it fail (0: no limit; needs cgroups)")
	root.PersistentFlags().Float64Var(&pf.cpuLimit, "cpu-limit", 0, "cap each worker, with all it starts, at this many cores, e.g. 0.5 (0: no limit; needs cgroups)")
	root.PersistentFlags().StringVar(&pf.memSoft, "memory-soft-limit", "", "replace a worker over this much memory once it has finished its tasks, e.g. 1GiB (Linux)")
	root.PersistentFlags().StringVar(&pf.logLevel, "log-level", "warn", "log level of the pool and its workers: debug, info, warn, error")
	root.PersistentFlags().StringVar(&pf.cpuProfile, "cpuprofile", "", "write CPU profiles: FILE for the parent, FILE.worker-PID for each worker")
	_ = root.PersistentFlags().MarkHidden("cpuprofile")
	root.PersistentFlags().StringVar(&pf.metrics, "metrics", "", "serve Prometheus metrics of the pool at http://ADDR/metrics while the command runs (run, exec, digest, worker; docs/metrics.md)")
	root.PersistentFlags().StringVar(&pf.ui, "ui", "", "serve a live web view of the pool at http://ADDR/ while the command runs (run, exec, digest, worker); on serve: of every machine of every queue. It asks for no credentials: keep ADDR on loopback, or behind a proxy that does")
	root.PersistentFlags().BoolVar(&pf.progress, "progress", false, "show the live view (job progress, a bar per core) on stderr even when it is not a terminal")
	root.PersistentFlags().VarPF(orderedBool{&pf.quiet, &pf.quietAt}, "quiet", "q", "no live view, even on a terminal (digest -c: and no OK lines, as sha512sum -c --quiet)").NoOptDefVal = "true"
	root.PersistentFlags().BoolVar(&pf.report, "report", false, "print a report on stderr after the job: wall and CPU time, efficiency, per-core and per-worker use, slowest tasks")
	root.PersistentFlags().StringVar(&pf.reportJSON, "report-json", "", "write the report as JSON to `FILE` (schema: docs/report.schema.json)")
	root.AddCommand(digestCommand(&pf))
	root.AddCommand(conformanceCommand(&pf))
	root.AddCommand(runCommand(&pf))
	root.AddCommand(execCommand(&pf))
	root.AddCommand(serveCommand(&pf))
	root.AddCommand(workerCommand(&pf))
	root.PersistentPreRunE = func(*cobra.Command, []string) error {
		if err := pf.check(); err != nil {
			return err
		}
		if err := checkOutputPath("--report-json", pf.reportJSON); err != nil {
			return err
		}
		if pf.cpuProfile == "" {
			return nil
		}
		os.Setenv(profileEnv, pf.cpuProfile) // inherited by the workers
		f, err := os.Create(pf.cpuProfile)
		if err != nil {
			return err
		}
		return pprof.StartCPUProfile(f)
	}

	err := unknownLeadingFlag(root, os.Args[1:])
	if err == nil {
		err = root.Execute()
	}
	pprof.StopCPUProfile()
	var ee exitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		os.Exit(ee.code)
	default:
		fmt.Fprintln(os.Stderr, "supervise:", message(err))
		os.Exit(2)
	}
}

// untilSignal runs job with a context that signals cancel (withSignals). A job a signal cut
// short (an interruptedError) is reported as how many of its items were left ("3 of 10 " +
// left) and ends the command with status 128+signal.
func untilSignal(cmd *cobra.Command, left string, job func(ctx context.Context) error) error {
	ctx, caught, stop := withSignals(cmd.Context())
	defer stop()
	err := job(ctx)
	var ie interruptedError
	if errors.As(err, &ie) {
		fmt.Fprintf(cmd.ErrOrStderr(), "supervise: interrupted: %d of %d %s\n", ie.left, ie.total, left)
		return exitError{128 + int(caught())}
	}
	return err
}

// withSignals returns a context that the first SIGINT or SIGTERM cancels (the command stops
// cleanly: the pool shuts down, cancelling running tasks, with the kill ladder for workers
// still busy --cancel-grace later) and a function that says which signal it
// was. A second signal exits at once with status 128+signal; the workers follow through their
// parent-death signal and stdin EOF. stop releases the signals.
func withSignals(parent context.Context) (ctx context.Context, caught func() syscall.Signal, stop func()) {
	ctx, cancel := context.WithCancel(parent)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	var got atomic.Int32
	done := make(chan struct{})
	go func() {
		select {
		case s := <-sigs:
			got.Store(int32(s.(syscall.Signal)))
			// "\r": a terminal echoes ^C where the cursor is; start the line over it.
			fmt.Fprintf(console, "\rsupervise: %v: stopping (a second signal exits at once)\n", s)
			cancel()
		case <-done:
			return
		}
		select {
		case s := <-sigs:
			eraseView(500 * time.Millisecond) // no frozen bars left on the terminal
			fmt.Fprintf(os.Stderr, "supervise: %v again: exiting now\n", s)
			os.Exit(128 + int(s.(syscall.Signal)))
		case <-done:
		}
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			signal.Stop(sigs)
			close(done)
			cancel()
		})
	}
	return ctx, func() syscall.Signal { return syscall.Signal(got.Load()) }, stop
}

// config is the pool configuration the flags describe, its Logger the one --log-level asks for.
func (pf *poolFlags) config() (supervisor.Config, error) {
	log, err := pf.logger()
	if err != nil {
		return supervisor.Config{}, err
	}
	cfg := supervisor.Config{Workers: pf.workers, InFlight: pf.inFlight, Logger: log,
		TaskTimeout: pf.timeout, CancelGrace: pf.cancelGrace, StopGrace: pf.stopGrace, HangTimeout: pf.hang,
		MaxTasksPerWorker: pf.maxTasks, Retries: pf.retries, MaxProcs: pf.maxProcs, CPULimit: pf.cpuLimit,
		StartTimeout: pf.startTimeout}
	if pf.hang == 0 {
		cfg.HangTimeout = -1 // never (the library's zero is its default)
	}
	if pf.metrics != "" {
		reg, err := serveMetrics(pf.metrics)
		if err != nil {
			return cfg, err
		}
		cfg.Metrics = reg
	}
	if pf.ui != "" && pf.uiListener == nil {
		if pf.uiListener, err = listenUI(pf.ui); err != nil {
			return cfg, err
		}
	}
	for _, m := range []struct {
		flag, value string
		to          *uint64
	}{{"--memory-limit", pf.memHard, &cfg.MemoryHardLimit}, {"--memory-soft-limit", pf.memSoft, &cfg.MemorySoftLimit}} {
		if m.value == "" {
			continue
		}
		n, err := humanize.ParseBytes(m.value)
		if err != nil {
			return cfg, fmt.Errorf("%s %q: %w", m.flag, m.value, err)
		}
		*m.to = n
	}
	return cfg, nil
}

func (pf *poolFlags) logger() (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(pf.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	// The library's errors name its Config fields; here the flags that set them.
	flagNames := func(_ []string, a slog.Attr) slog.Attr {
		if err, ok := a.Value.Any().(error); ok && a.Value.Kind() == slog.KindAny {
			return slog.String(a.Key, configNames.Replace(err.Error()))
		}
		return a
	}
	return slog.New(slog.NewTextHandler(console, &slog.HandlerOptions{Level: level, ReplaceAttr: flagNames})), nil
}
