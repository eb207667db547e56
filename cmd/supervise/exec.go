package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/spf13/cobra"
	"github.com/supervise-dev/supervise/internal/execjob"
	"github.com/supervise-dev/supervise/supervisor"
)

// execFlags are the flags of supervise exec.
type execFlags struct {
	null      bool
	argFile   string
	shell     bool
	keepOrder bool
	ungroup   bool
	tag       bool
	logFlags
}

func execCommand(pf *poolFlags) *cobra.Command {
	var ef execFlags
	cmd := &cobra.Command{
		Use:   "exec [flags] [--] CMD [ARGS...] [::: INPUT...]",
		Short: "Run an ordinary command once per input line, supervised (GNU parallel's job)",
		Long: `exec runs CMD ARGS once per input: each line of stdin (each NUL-separated record with
-0, each line of FILE with -a FILE, or each word after :::). The replacement strings {}
(the input), {.} (without its extension), {/} (its base name), {//} (its directory), {/.}
(base name without extension) and {#} (the job's number) are replaced in ARGS; with none
of them the input is appended as one more argument.

CMD runs without a shell: an input is always one argument, whatever it holds. For shell
syntax (pipes, redirections) give --shell: CMD and ARGS are joined by spaces into a line for
/bin/sh -c, with the replacements quoted for the shell.

Each job is started by a worker of the pool (the supervise binary itself, kept up), in a
process group of its own inside the worker's cgroup, and under every pool limit:
--timeout sends its group SIGTERM (SIGKILL --stop-grace later), --memory-limit,
--max-procs and --cpu-limit hold per job (one job per worker at a time: --in-flight is 1
here), and --retries N runs a failed job up to N more times. When CMD exits, whatever it
left running in its group is killed. --workers jobs run at once.

Output: each job's stdout and stderr are printed whole when it ends (--group, the default,
as GNU parallel's; past 1 MiB a job's output waits in a temporary file), in the order jobs
finish or in input order with --keep-order; -u prints output as it comes. --tag puts the
input and a tab before each line.

--joblog FILE writes GNU parallel's job log, a line per job as it ends; --resume skips the
jobs the log shows ended, --resume-failed runs again those that failed. --halt stops early:
now,fail=1 kills the running jobs at the first failure, soon,fail=3 starts no more after
the third, now,success=1 stops at the first success, soon,fail=10% after a tenth of all
jobs failed (with a percentage the whole input is read first).

A job that cannot start, runs past --timeout, or whose worker died prints
"supervise: job N (INPUT): ERROR" on stderr; a job that exits non-zero says nothing (its
status is in the exit status and the job log).

Exit status, as GNU parallel's: 0 every job succeeded; 1-100 that many jobs failed; 101 more
than 100 failed; with --halt on a failure, the failing job's status; 255 exec itself failed
(bad flags, input that cannot be read); 128+N on signal N.`,
		Example: `  find . -name '*.log' | supervise exec gzip -9
  supervise -j 4 --timeout 1m exec --joblog jobs.log convert {} {.}.png ::: *.jpg
  supervise exec --resume-failed --joblog jobs.log --shell 'curl -s {} | sha256sum' < urls.txt`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if f := cmd.Flag("in-flight"); f != nil && !f.Changed {
				pf.inFlight = 1 // a job per worker at a time: per-job limits, --workers jobs at once
			}
			err := untilSignal(cmd, "jobs not done", func(ctx context.Context) error {
				return execJobs(ctx, pf, ef, args, cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr())
			})
			var ee exitError
			if err != nil && !errors.As(err, &ee) {
				fmt.Fprintln(cmd.ErrOrStderr(), "supervise:", message(err))
				return exitError{255}
			}
			return err
		},
	}
	f := cmd.Flags()
	f.SetInterspersed(false) // what follows CMD is its own: exec sh -c ... needs no --
	f.BoolVarP(&ef.null, "null", "0", false, "input records end with NUL, not newline (find -print0)")
	f.StringVarP(&ef.argFile, "arg-file", "a", "", "read the inputs from `FILE`, not stdin")
	f.BoolVar(&ef.shell, "shell", false, "run each job's command line with /bin/sh -c (inputs quoted for it)")
	f.BoolVarP(&ef.keepOrder, "keep-order", "k", false, "print jobs' output in input order (default: as they finish)")
	f.BoolVarP(&ef.ungroup, "ungroup", "u", false, "print output as it comes, not each job's whole (lines of jobs may mix)")
	f.Bool("group", true, "print each job's output whole when it ends (the default)")
	f.BoolVar(&ef.tag, "tag", false, "put the input and a tab before each line of a job's output")
	ef.logFlags.add(f, "job")
	cmd.MarkFlagsMutuallyExclusive("ungroup", "group")
	cmd.MarkFlagsMutuallyExclusive("ungroup", "tag")
	return cmd
}

// execInput is where exec's inputs come from: after :::, -a FILE, or stdin. feed sends them;
// done closes -a's file, on every path, whether feed ran or not.
func execInput(ctx context.Context, ef execFlags, args []string, stdin io.Reader, out chan<- []record) (command []string, feed, done func(), err error) {
	if i := slices.Index(args, ":::"); i >= 0 {
		inputs := args[i+1:]
		return args[:i], func() { sendArgs(ctx, inputs, out) }, func() {}, nil
	}
	sep := byte('\n')
	if ef.null {
		sep = 0
	}
	if ef.argFile != "" {
		f, err := os.Open(ef.argFile)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("-a: %w", err)
		}
		return args, func() { readRecords(ctx, f, sep, out) }, func() { f.Close() }, nil
	}
	return args, func() { readRecords(ctx, stdin, sep, out) }, func() {}, nil
}

// execJobs is supervise exec: inputs in, a job per input through the pool, output out.
func execJobs(ctx context.Context, pf *poolFlags, ef execFlags, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	records := make(chan []record, 4)
	command, feed, closeInput, err := execInput(ctx, ef, args, stdin, records)
	if err != nil {
		return err
	}
	defer closeInput()
	if len(command) == 0 {
		return errors.New("exec: no command before :::")
	}
	rule, past, jl, err := ef.open()
	if err != nil {
		return err
	}
	defer jl.close()
	cfg, err := pf.config()
	if err != nil {
		return err
	}
	cfg.Retries = 0 // exec retries failed jobs itself, whatever failed them
	if pf.timeout > 0 {
		// The job's handler keeps --timeout (execjob.Job.Timeout): it kills the job, and its
		// call fails with the output it printed. The pool's limit is only a backstop.
		cfg.TaskTimeout = pf.timeout + pf.stopGrace + time.Second
	}
	r := &execRun{pf: pf, ef: ef, command: command, replace: hasReplacement(command), past: past,
		ends: &jobEnds{log: jl, halt: halter{rule: rule}}, stderr: stderr}
	r.view = pf.liveView(stderr, "exec", "jobs")
	defer r.view.stop()
	results, finish := r.view.results(stdout, stderr)
	r.out = bufio.NewWriterSize(results, 64<<10)
	r.msgs = r.view.above(stderr)
	if r.job, err = startJob(ctx, pf, &clusterFlags{}, cfg, r.view); err != nil {
		return err
	}
	jobs, cancelJobs := context.WithCancel(ctx) // --halt now cancels the running jobs
	defer cancelJobs()
	r.ends.cancel = cancelJobs
	go feed()
	t0 := time.Now()
	err = r.loop(ctx, jobs, records)
	r.view.stop()
	if ferr := finish(); err == nil && ferr != nil {
		err = fmt.Errorf("writing stdout: %w", ferr)
	}
	cancelJobs()
	if cerr := r.job.close(); err == nil {
		err = cerr
	}
	if err == nil && ctx.Err() == nil && r.job.means != nil {
		rep := newReport("exec", r.job.pool, time.Since(t0), r.job.means, func(uint64) string { return "" })
		rep.Items, rep.Bytes, rep.Failed = r.total, r.bytesIn, r.ends.halt.failed
		err = writeReports(pf, rep, stderr)
	}
	return r.exit(ctx, err)
}

// exit is the run's exit: interrupted, failed, halted, or GNU parallel's count of failures.
func (r *execRun) exit(ctx context.Context, err error) error {
	switch {
	case ctx.Err() != nil:
		return interruptedError{left: r.notDone, total: r.total}
	case err != nil:
		return err
	case r.inputErr != nil:
		return r.inputErr
	case r.ends.halted && r.ends.halt.rule.on == "fail":
		return exitError{min(max(r.haltCode, 1), 255)}
	case r.ends.halted && r.ends.halt.rule.on == "success":
		return nil
	case r.ends.halt.failed > 0:
		return exitError{min(r.ends.halt.failed, 101)}
	}
	return nil
}

// submit hands t's command to the pool, and collects its output as the worker reports it.
func (r *execRun) submit(jobs context.Context, t *execTask) {
	t.attempts++
	t.start = time.Now()
	t.collected = make(chan struct{})
	if r.ef.ungroup {
		t.stdout, t.stderr = lockedWriter{r.out, &r.outMu, true}, lockedWriter{r.msgs, &r.outMu, false}
	} else {
		t.stdout, t.stderr = &spool{}, &spool{}
	}
	t.f = supervisor.Bind[execjob.Job, execjob.Result](r.job.pool, "exec").Submit(jobs,
		execjob.Job{Argv: t.argv, Stream: r.ef.ungroup, Grace: r.pf.stopGrace, Timeout: r.pf.timeout})
	go func() {
		defer close(t.collected)
		for rep := range t.f.Reports(context.Background()) {
			var o execjob.Output
			if rep.Decode(&o) != nil {
				continue
			}
			t.received += int64(len(o.Data))
			if o.Stream == 1 {
				t.stdout.Write(o.Data)
			} else {
				t.stderr.Write(o.Data)
			}
		}
	}()
}
