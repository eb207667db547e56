package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/supervise-dev/supervise/internal/execjob"
	"github.com/supervise-dev/supervise/supervisor"
)

// execRun is one run of supervise exec: its jobs, from input to output.
type execRun struct {
	pf      *poolFlags
	ef      execFlags
	command []string // CMD ARGS, before replacements
	replace bool     // they hold replacement strings
	past    pastJobs // --resume
	ends    *jobEnds

	job    *job
	view   *liveView
	msgs   io.Writer     // stderr, above the live view
	out    *bufio.Writer // stdout
	outMu  sync.Mutex    // out, written by -u's reports too
	stderr io.Writer

	total    int // jobs started
	notDone  int // cut short by a signal or --halt now
	bytesIn  int64
	inputErr error
	haltCode int // the exit status of the job that halted the run
}

// execTask is one job: its input, and its command in the pool.
type execTask struct {
	seq       int
	input     string
	size      int
	argv      []string
	start     time.Time
	attempts  int
	finished  bool      // its task has ended (this attempt)
	received  int64     // output bytes reported so far
	stdout    io.Writer // where its reported output goes: a spool, or with -u stdout
	stderr    io.Writer
	collected chan struct{} // closed once every report is in stdout/stderr
	f         *supervisor.Future[execjob.Result]
}

// loop submits a job per record and ends each as it finishes (or in input order with
// --keep-order), until the input ends and every job has. No more jobs are out than the pool
// runs at once, so that none waits in the pool, and --halt starts no job after it; with
// --keep-order up to hold more may have finished and wait for an earlier one.
func (r *execRun) loop(ctx, jobs context.Context, records <-chan []record) error {
	slots := r.pf.workers * r.pf.inFlight
	hold := 0
	if r.ef.keepOrder {
		hold = 2*slots + 16
	}
	var queued []record
	if r.ends.halt.rule.percent > 0 { // a share of all the jobs: read them all first
		for b := range records {
			queued = append(queued, b...)
			r.found(b)
		}
		records = nil
		r.view.walked()
		r.ends.halt.total = len(queued)
	}
	finished := make(chan *execTask, slots+hold) // never blocks: no more tasks are out
	var pending []*execTask                      // --keep-order: in input order
	running, out := 0, 0                         // jobs in the pool; and those not yet ended
	stopped := ctx.Done()
	for records != nil || len(queued) > 0 || out > 0 {
		for len(queued) > 0 && running < slots && out < slots+hold {
			t := r.task(queued[0])
			queued = queued[1:]
			if t == nil {
				continue
			}
			r.submit(jobs, t)
			r.notify(t, finished)
			running++
			out++
			if r.ef.keepOrder {
				pending = append(pending, t)
			}
		}
		if records == nil && len(queued) == 0 && out == 0 {
			break // the input ended (as read ahead) and no record left ran: nothing to wait for
		}
		var in <-chan []record // more records, once those read are all submitted
		if len(queued) == 0 {
			in = records
		}
		select {
		case b, ok := <-in:
			if !ok {
				records = nil
				r.view.walked()
				break
			}
			queued = b
			r.found(b)
			select { // input that has ended (:::) says so now: the bar's total is final
			case more, ok := <-records:
				if !ok {
					records = nil
					r.view.walked()
				} else {
					queued = append(queued, more...)
					r.found(more)
				}
			default:
			}
		case t := <-finished:
			running--
			t.finished = true
			if !r.ef.keepOrder {
				pending = []*execTask{t}
			}
			for len(pending) > 0 && pending[0].finished {
				if !r.end(ctx, jobs, pending[0]) { // submitted again
					r.notify(pending[0], finished)
					running++
					break
				}
				pending[0] = nil
				pending = pending[1:]
				out--
			}
		case <-stopped:
			stopped, records, queued = nil, nil, nil // start no more; collect what is out
		}
		if r.ends.halted {
			records, queued = nil, nil
		}
		if len(finished) == 0 && len(queued) == 0 {
			if err := r.flush(); err != nil {
				return err
			}
		}
	}
	if err := r.flush(); err != nil {
		return err
	}
	return r.ends.err
}

// found counts the records read in the live view's total, as soon as they are read: all of
// them at once for ::: (the bar shows the total and an ETA), a batch at a time for a stream.
func (r *execRun) found(b []record) {
	var size int64
	for _, rec := range b {
		size += int64(rec.size)
	}
	r.view.found(len(b), size)
}

// task makes the job of a record, or nil for one not to run (--resume, a read error), which
// counts as done in the live view at once.
func (r *execRun) task(rec record) *execTask {
	if rec.err != nil {
		r.inputErr = rec.err
		r.view.hashed(1, int64(rec.size))
		return nil
	}
	if r.past.skip(rec.seq, "", false, r.ef.resumeFailed) {
		r.view.hashed(1, int64(rec.size))
		return nil
	}
	r.total++
	r.bytesIn += int64(rec.size)
	if rec.bad != nil { // a failed job, in its place
		r.write(func() { fmt.Fprintf(r.msgs, "supervise: job %d: its input is %v\n", rec.seq, rec.bad) })
		if r.ends.ended(jobEntry{Seq: rec.seq, Start: time.Now(), Send: int64(rec.size), Exit: -1}) {
			r.haltCode = -1
		}
		r.view.hashed(1, int64(rec.size))
		return nil
	}
	return &execTask{seq: rec.seq, input: rec.text, size: rec.size,
		argv: commandFor(r.command, rec.text, rec.seq, r.ef.shell, r.replace)}
}

func (r *execRun) notify(t *execTask, finished chan<- *execTask) {
	t.f.OnDone(func() { finished <- t })
}

// end ends a finished job: its output printed, its line logged, --halt consulted. It returns
// false if the job failed and was submitted again (--retries).
func (r *execRun) end(ctx, jobs context.Context, t *execTask) bool {
	<-t.collected
	res, err := t.f.Get(context.Background())
	if st, ok := execjob.ParseFailure(err); ok { // its status, not supervise's error: as a Result
		res, err = st, nil
	}
	if err != nil && (interrupted(ctx, err) || r.ends.halted && jobs.Err() != nil && errors.Is(err, context.Canceled)) {
		r.notDone++ // cut short: neither failed nor logged
		r.view.hashed(1, int64(t.size))
		return true
	}
	failed := err != nil || res.Exit != 0 || res.Signal != 0
	if failed && t.attempts <= r.pf.retries && !r.ends.halted {
		discard(t.stdout)
		discard(t.stderr)
		t.finished, t.received = false, 0
		r.submit(jobs, t)
		return false
	}
	r.view.hashed(1, int64(t.size))
	r.print(t, res)
	// A job that exits non-zero says so in its status alone (as with GNU parallel); one that
	// never started, ran out of time or was killed is told.
	why := ""
	switch {
	case err != nil:
		why, _, _ = strings.Cut(message(err), "\n")
	case res.Signal != 0:
		why = fmt.Sprintf("killed by signal %d (%v)", res.Signal, syscall.Signal(res.Signal))
	}
	if why != "" {
		r.write(func() { fmt.Fprintf(r.msgs, "supervise: job %d (%.200q): %s\n", t.seq, t.input, why) })
	}
	e := jobEntry{Seq: t.seq, Start: t.start, Runtime: time.Since(t.start), Send: int64(t.size),
		Receive: t.received + int64(len(res.Stdout)+len(res.Stderr)), Exit: res.Exit, Signal: res.Signal,
		Command: commandLine(t.argv)}
	if err != nil {
		e.Exit = -1
	}
	if r.ends.ended(e) {
		r.haltCode = e.Exit
	}
	return true
}

// print prints a job's output: what its worker reported, then what came with its result;
// its stdout on stdout, its stderr on stderr, each line after the input with --tag.
func (r *execRun) print(t *execTask, res execjob.Result) {
	r.write(func() {
		var out, errOut io.Writer = r.out, r.msgs
		if r.ef.tag {
			tag := []byte(t.input + "\t")
			out, errOut = &tagWriter{w: r.out, tag: tag}, &tagWriter{w: r.msgs, tag: tag}
		}
		if s, ok := t.stdout.(*spool); ok {
			if _, err := s.WriteTo(out); err != nil {
				fmt.Fprintf(r.msgs, "supervise: job %d: its output, kept in a temporary file, was lost: %v\n", t.seq, err)
			}
		}
		out.Write(res.Stdout)
		if s, ok := t.stderr.(*spool); ok && s.n+int64(len(res.Stderr)) > 0 {
			r.out.Flush() // a job's stdout before its stderr
			s.WriteTo(errOut)
		}
		errOut.Write(res.Stderr)
		r.out.Flush() // a job's output shows when it ends, not when a buffer fills
	})
}

// write runs f with stdout to itself (-u's reports write too).
func (r *execRun) write(f func()) {
	r.outMu.Lock()
	defer r.outMu.Unlock()
	f()
}

func (r *execRun) flush() error {
	r.outMu.Lock()
	defer r.outMu.Unlock()
	if err := r.out.Flush(); err != nil {
		return fmt.Errorf("writing stdout: %w", err)
	}
	return nil
}

// discard frees a failed attempt's output.
func discard(w io.Writer) {
	if s, ok := w.(*spool); ok {
		s.WriteTo(io.Discard)
	}
}

// lockedWriter is -u's stdout or stderr: each piece of output written whole, at once.
type lockedWriter struct {
	w     io.Writer
	mu    *sync.Mutex
	flush bool // w is stdout's buffer: flush it after each piece
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, err := l.w.Write(p)
	if b, ok := l.w.(*bufio.Writer); ok && l.flush && err == nil {
		err = b.Flush()
	}
	return n, err
}
