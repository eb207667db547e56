package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/supervise-dev/supervise/supervisor"
	"github.com/vmihailenco/msgpack/v5"
)

// runFlags are the flags of supervise run.
type runFlags struct {
	call       string
	chunk      int
	json       bool
	keepOrder  bool
	tracebacks bool
	logFlags
}

func runCommand(pf *poolFlags) *cobra.Command {
	var rf runFlags
	var cf clusterFlags
	cmd := &cobra.Command{
		Use:   "run [flags] -- CMD [ARGS...]",
		Short: "Feed stdin, line by line, to a pool of workers started from any command",
		Long: `run starts --workers copies of CMD, a worker that speaks the supervise protocol in any
language (docs/protocol.md; child/python/supervise_worker.py for Python), and keeps them up:
each line of stdin is one task for the handler named by --call, and each result is one line
of stdout. It is GNU parallel with workers that stay up, so no process start per item.

Input: each line of stdin, without its newline, is sent as a msgpack string (bytes, if the
line is not UTF-8). With --json each non-empty line is one JSON value (JSON Lines), sent as
the msgpack value it maps to (numbers as integers where they are whole).

Output: results are printed one per line as tasks finish, or in input order with
--keep-order. A result that is a string or bytes is printed as is; any other value as JSON.
With --json every result is printed as JSON.

Failures: a task that fails (the handler raised, its worker died, it ran past --timeout)
prints "supervise: line N: ERROR" on stderr, naming its input line; with --tracebacks the
worker's traceback or stderr tail follows, indented. Every line ends exactly once: a result
on stdout or an error on stderr. All pool flags apply: --timeout, --cancel-grace,
--memory-limit, --retries (which re-runs a task whose worker died: only for idempotent
handlers), --max-tasks-per-worker, --hang-timeout. --in-flight defaults to 32 here (lines
are usually small tasks; use 1 or 2 for long ones of uneven length).

With --connect URL the lines go to the worker machines of a queue on a NATS JetStream
server instead (supervise serve; supervise worker --connect URL -- CMD on each machine), CMD
is not given, --call is required and the pool flags belong to the machines.

Exit status: 0 every line succeeded, 1 some failed, 2 the run itself failed (the worker
could not start, bad input), 128+N on signal N.`,
		Example: `  supervise run --call upper -- python3 worker.py < lines.txt
  supervise --workers 8 --timeout 30s run --keep-order --call score -- python3 model.py < inputs.txt
  jq -c '.items[]' data.json | supervise run --json --call price -- ./pricer`,
		Args: func(cmd *cobra.Command, command []string) error {
			if cf.connect != "" {
				return cobra.NoArgs(cmd, command)
			}
			return cobra.MinimumNArgs(1)(cmd, command)
		},
		RunE: func(cmd *cobra.Command, command []string) error {
			if cf.connect != "" && rf.call == "" {
				return fmt.Errorf("run --connect: name the handler with --call")
			}
			if cf.connect == "" && cmd.ArgsLenAtDash() != 0 {
				return fmt.Errorf("run: put the worker command after --, as in: supervise run --call NAME -- python3 worker.py")
			}
			if f := cmd.Flag("in-flight"); f != nil && !f.Changed {
				// Lines are usually small tasks: a round trip per line or two would cost more
				// than the work (100,000 64-byte echoes through Python: 2.3-2.8 s at 2, 0.8-0.9 s
				// at 32). The backlog's fair share keeps a worker from hoarding a short queue.
				pf.inFlight = 32
			}
			return untilSignal(cmd, "lines not done", func(ctx context.Context) error {
				return runLines(ctx, pf, &cf, rf, command, cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr())
			})
		},
	}
	cf.add(cmd.Flags(), "run the lines")
	cmd.Flags().StringVar(&rf.call, "call", "", "the handler each line is a task for (default: the worker's only handler)")
	cmd.Flags().BoolVar(&rf.json, "json", false, "each input line is a JSON value, and results are printed as JSON")
	cmd.Flags().BoolVarP(&rf.keepOrder, "keep-order", "k", false, "print results in input order (default: as they finish)")
	cmd.Flags().IntVar(&rf.chunk, "chunk", 0, "lines per call: 0 sizes chunks of consecutive small lines from the time they take (about 2 ms a call); 1 sends each line alone; N sends N (a local pool's workers that offer chunks)")
	cmd.Flags().BoolVar(&rf.tracebacks, "tracebacks", false, "print each failed task's traceback (or its worker's stderr tail) under its error line")
	rf.logFlags.add(cmd.Flags(), "line")
	return cmd
}

// runTask is one line on its way through the pool.
type runTask struct {
	line  int
	size  int
	text  []byte // the line, for the job log (its first 1,000 bytes)
	start time.Time
	f     pendingTask[msgpack.RawMessage]
}

// runLines is supervise run: lines in, tasks through the pool, results out.
func runLines(ctx context.Context, pf *poolFlags, cf *clusterFlags, rf runFlags, command []string, stdin io.Reader, stdout, stderr io.Writer) error {
	cfg, err := pf.config()
	if err != nil {
		return err
	}
	cfg.Command = command
	rule, past, jl, err := rf.open()
	if err != nil {
		return err
	}
	defer jl.close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	tasks, cancelTasks := context.WithCancel(ctx) // --halt now cancels the tasks out
	defer cancelTasks()
	ends := &jobEnds{log: jl, halt: halter{rule: rule}, cancel: cancelTasks}
	t0 := time.Now()
	view := pf.liveView(stderr, "run", "lines")
	defer view.stop()
	msgs := view.above(stderr)
	job, err := startJob(ctx, pf, cf, cfg, view)
	if err != nil {
		return err
	}
	defer func() {
		cancel()
		job.close()
	}()
	if job.pool != nil {
		if rf.call, err = pickHandler(job.pool, rf.call); err != nil {
			return err
		}
	}

	results, finish := view.results(stdout, stderr)
	lines := make(chan []inputLine, 4)
	// The reader ends at EOF, or at its next batch once ctx ends. Interrupted while it waits
	// in a read of stdin (a terminal), it goes on waiting until the process exits, which
	// follows at once: nothing can cancel a blocked read of a pipe or terminal.
	go readLines(ctx, stdin, rf.json, rf.joblog != "", lines)
	var queued []inputLine // read, not yet submitted
	if rule.percent > 0 {  // a share of all the lines: read them all first
		for b := range lines {
			queued = append(queued, b...)
		}
		lines = nil
		ends.halt.total = len(queued)
	}

	var (
		window   = job.window(pf.workers*pf.inFlight*2 + pf.workers) // lines submitted and not yet printed, at most
		pending  []*runTask                                          // in input order, for --keep-order
		finished = make(chan *runTask, window)                       // done, in the order they finished
		out      = bufio.NewWriterSize(results, 256<<10)
		total    = 0 // lines read
		failed   = 0
		notDone  = 0 // cut short by a signal
		bytesIn  int64
		inputErr error
		what     *taskNames // the lines, for the report's slowest tasks
	)
	if job.means != nil {
		what = newTaskNames()
	}
	outstanding := 0
	chunks := lineChunks{fixed: rf.chunk}
	// logged ends a line's job: its line in the job log, and its count against --halt.
	logged := func(line, size int, text []byte, start time.Time, received int, failed bool) {
		e := jobEntry{Seq: line, Start: start, Runtime: time.Since(start), Send: int64(size), Receive: int64(received), Command: string(text)}
		if failed {
			e.Exit = 1
		}
		ends.ended(e)
	}
	fail := func(line int, err error) {
		failed++
		out.Flush() // the error line after the results before it
		first, rest, _ := strings.Cut(err.Error(), "\n")
		var re *supervisor.RemoteError
		if errors.As(err, &re) && re.Traceback != "" {
			rest = re.Traceback
		}
		fmt.Fprintf(msgs, "supervise: line %d: %s\n", line, first)
		if rf.tracebacks && strings.TrimSpace(rest) != "" {
			fmt.Fprintf(msgs, "    %s\n", strings.ReplaceAll(strings.TrimRight(rest, "\n"), "\n", "\n    "))
		}
	}
	emit := func(t *runTask) {
		outstanding--
		chunks.took(t.f)
		what.ended(t.f)
		view.hashed(1, int64(t.size))
		res, err := t.f.Get(context.Background())
		if err != nil && (interrupted(ctx, err) || ends.halted && tasks.Err() != nil && errors.Is(err, context.Canceled)) {
			notDone++ // interrupted, or halted: left undone, not failed
			return
		}
		var text []byte
		if err == nil {
			text, err = resultLine(res, rf.json)
		}
		logged(t.line, t.size, t.text, t.start, len(text), err != nil)
		if err != nil {
			fail(t.line, err)
			return
		}
		out.Write(text)
		out.WriteByte('\n')
	}
	stopped := ctx.Done()
	for lines != nil || len(queued) > 0 || outstanding > 0 {
		// Room for another call: for a chunk's worth of lines (a chunk sent into each slot
		// as it frees would hold one line).
		for size := chunks.next(job.pool != nil, window); len(queued) > 0 && outstanding+min(size, len(queued)) <= window && !ends.halted; size = chunks.next(job.pool != nil, window) {
			var batch []*runTask
			var payloads []msgpack.RawMessage
			for len(queued) > 0 && outstanding+len(batch) < window && len(batch) < size && !ends.halted {
				it := queued[0]
				queued = queued[1:]
				if it.fatal {
					inputErr = it.err
					continue
				}
				if past.skip(it.n, "", false, rf.resumeFailed) {
					continue
				}
				total++
				bytesIn += int64(it.size)
				view.found(1, int64(it.size))
				if it.err != nil {
					view.hashed(1, int64(it.size))
					logged(it.n, it.size, it.text, time.Now(), 0, true)
					fail(it.n, it.err)
					continue
				}
				chunks.line(it.size)
				batch = append(batch, &runTask{line: it.n, size: it.size, text: it.text, start: time.Now()})
				payloads = append(payloads, it.payload)
			}
			for i, f := range submitLines(tasks, job, rf.call, payloads) {
				t := batch[i]
				t.f = f
				if job.means != nil {
					what.started(t.f.ID(), fmt.Sprintf("line %d", t.line))
				}
				outstanding++
				if rf.keepOrder {
					pending = append(pending, t)
				} else {
					t.f.OnDone(func() { finished <- t }) // never blocks: at most window tasks are outstanding
				}
			}
		}
		var in chan []inputLine // more lines, once those read are all submitted
		if len(queued) == 0 {
			in = lines
		}
		var head <-chan struct{} // --keep-order: the oldest line's task
		if len(pending) > 0 {
			head = pending[0].f.Done()
		}
		select {
		case batch, ok := <-in:
			if !ok {
				lines = nil
				view.walked()
				break
			}
			queued = batch
		case t := <-finished:
			emit(t)
		case <-head:
			for len(pending) > 0 && isDone(pending[0].f) {
				emit(pending[0])
				pending[0] = nil
				pending = pending[1:]
			}
		case <-stopped:
			stopped, lines, queued = nil, nil, nil // read no more; collect what is out
			job.abandon()
		}
		if ends.halted {
			lines, queued = nil, nil
		}
		if len(finished) == 0 && len(queued) == 0 { // nothing more at hand: let the lines out
			if err := out.Flush(); err != nil {
				return fmt.Errorf("writing stdout: %w", err)
			}
		}
	}
	view.stop()
	if err := out.Flush(); err != nil {
		return fmt.Errorf("writing stdout: %w", err)
	}
	if err := finish(); err != nil {
		return fmt.Errorf("writing stdout: %w", err)
	}
	if ctx.Err() != nil {
		return interruptedError{left: notDone, total: total}
	}
	if err := job.close(); err != nil {
		return err
	}
	if job.means != nil {
		r := newReport("run", job.pool, time.Since(t0), job.means, what.name)
		r.Items, r.Bytes, r.Failed = total, bytesIn, failed
		if err := writeReports(pf, r, stderr); err != nil {
			return err
		}
	}
	switch {
	case inputErr != nil:
		return inputErr
	case ends.err != nil:
		return ends.err
	case failed > 0:
		return exitError{1}
	}
	return nil
}

func isDone(f interface{ Done() <-chan struct{} }) bool {
	select {
	case <-f.Done():
		return true
	default:
		return false
	}
}

// pickHandler returns the handler to call: name if the workers serve it, or their only
// handler when name is empty.
func pickHandler(pool *supervisor.Pool, name string) (string, error) {
	ws := pool.Workers()
	if len(ws) == 0 {
		return name, nil
	}
	served := ws[0].Handlers
	switch {
	case name == "" && len(served) == 1:
		return served[0], nil
	case name == "":
		return "", fmt.Errorf("the worker serves %d handlers, %q: name one with --call", len(served), served)
	case !slices.Contains(served, name):
		return "", fmt.Errorf("--call %s: the worker serves no such handler (it serves %q)", name, served)
	}
	return name, nil
}
