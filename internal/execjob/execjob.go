// Package execjob is the worker side of supervise exec: it runs one ordinary command per
// call, in a process group of its own, and sends its output back to the parent.
//
// A job's output comes back in pieces no bigger than Chunk: as reports (child.Report) while
// it runs, each an Output, and the rest in its Result. With Job.Stream each read of the
// command's pipes is reported at once (exec -u); otherwise a piece is reported when Chunk
// bytes of a stream have gathered, so a job that prints little costs no report at all.
//
// When the job's context ends (its time limit, or the run's cancel), the job's process group
// gets SIGTERM, and SIGKILL Job.Grace later. When the command exits, whatever it left
// running in its group is killed: a job is over when its command is, and a process that
// outlived it would hold its output pipes open.
package execjob

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/supervise-dev/supervise/channel"
	"github.com/supervise-dev/supervise/child"
)

// Chunk is the most output bytes a report or a result carries per stream.
const Chunk = 64 << 10

// Job is one command to run.
type Job struct {
	Argv   []string      // the command and its arguments; Argv[0] is looked up in PATH
	Stream bool          // report every read of the output at once
	Grace  time.Duration // from SIGTERM to SIGKILL of the job's group when its context ends
	// Timeout is the job's time limit (0: none): past it, the job is killed as when its
	// context ends, and the call fails, its output so far reported. The handler keeps it, not
	// the pool's TaskTimeout, whose call fails at the limit without waiting for that output.
	Timeout time.Duration
}

// Output is a piece of a job's output: Stream 1 is its stdout, 2 its stderr.
type Output struct {
	Stream int
	Data   []byte
}

// Result is how the job ended, and the output not yet reported.
type Result struct {
	Exit   int // the command's exit status, or -1 if a signal ended it
	Signal int // the signal that ended it, or 0
	Stdout []byte
	Stderr []byte
}

// Run runs job: the handler "exec" of the supervise binary's workers. A job that did not
// succeed fails its call, so that the pool counts it as a failure (Stats.Failures, the
// metrics, the web view), by kind: a *channel.RemoteError of type "exit" (message "exit
// status N"), "signal" ("killed by signal N (name)") or "start" (it could not start). Its
// output goes to the caller as reports first. ParseFailure reads the status back. A context
// that ended (its time limit, the run's cancel) is an error of its own.
func Run(ctx context.Context, job Job) (Result, error) {
	report := func(o Output) error { return child.Report(ctx, o) }
	res, err := run(ctx, job, report)
	if err != nil || res.Exit == 0 && res.Signal == 0 {
		return res, err
	}
	for n, b := range [][]byte{res.Stdout, res.Stderr} {
		if len(b) > 0 {
			if err := report(Output{Stream: n + 1, Data: b}); err != nil {
				return res, err
			}
		}
	}
	if res.Signal != 0 {
		return Result{}, &channel.RemoteError{Type: FailSignal, Message: fmt.Sprintf("killed by signal %d (%v)", res.Signal, syscall.Signal(res.Signal))}
	}
	return Result{}, &channel.RemoteError{Type: FailExit, Message: fmt.Sprintf("exit status %d", res.Exit)}
}

// The error types of a job that did not succeed.
const (
	FailExit   = "exit"   // it exited with a status other than 0
	FailSignal = "signal" // a signal ended it
	FailStart  = "start"  // it could not start
)

// ParseFailure reads a failed job's status from its call's error: ok false if err is not a
// job's exit or signal (a start failure, a time limit, a dead worker).
func ParseFailure(err error) (res Result, ok bool) {
	var re *channel.RemoteError
	if !errors.As(err, &re) {
		return res, false
	}
	switch re.Type {
	case FailExit:
		_, err := fmt.Sscanf(re.Message, "exit status %d", &res.Exit)
		return res, err == nil
	case FailSignal:
		_, err := fmt.Sscanf(re.Message, "killed by signal %d", &res.Signal)
		res.Exit = -1
		return res, err == nil
	}
	return res, false
}

// run is Run with the reports going to report.
func run(ctx context.Context, job Job, report func(Output) error) (Result, error) {
	if len(job.Argv) == 0 {
		return Result{}, errors.New("exec: no command")
	}
	if job.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, job.Timeout, fmt.Errorf("time limit exceeded (%v)", job.Timeout))
		defer cancel()
	}
	cmd := exec.Command(job.Argv[0], job.Argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	outR, outW, err := os.Pipe()
	if err != nil {
		return Result{}, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return Result{}, err
	}
	cmd.Stdout, cmd.Stderr = outW, errW // stdin: /dev/null
	err = cmd.Start()
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return Result{}, &channel.RemoteError{Type: FailStart, Message: err.Error()}
	}
	pgid := cmd.Process.Pid
	stop := killOnDone(ctx, pgid, job.Grace)
	var res Result
	var wg sync.WaitGroup
	var mu sync.Mutex // one report at a time
	wg.Add(2)
	send := func(o Output) error { mu.Lock(); defer mu.Unlock(); return report(o) }
	go func() { defer wg.Done(); res.Stdout = collect(outR, 1, job.Stream, send) }()
	go func() { defer wg.Done(); res.Stderr = collect(errR, 2, job.Stream, send) }()
	// The job is over when its command exits: what it left in its group is killed, so that
	// no process of it holds the pipes open (or runs on, unsupervised).
	waitErr := waitAndKillGroup(cmd)
	wg.Wait()
	outR.Close()
	errR.Close()
	stop()
	var ee *exec.ExitError
	if waitErr != nil && !errors.As(waitErr, &ee) {
		return res, waitErr
	}
	st := cmd.ProcessState.Sys().(syscall.WaitStatus)
	res.Exit = cmd.ProcessState.ExitCode()
	if st.Signaled() {
		res.Signal = int(st.Signal())
	}
	if err := ctx.Err(); err != nil {
		// An error carries no result: what the job printed goes to the caller as reports.
		for n, b := range [][]byte{res.Stdout, res.Stderr} {
			if len(b) > 0 {
				_ = send(Output{Stream: n + 1, Data: b})
			}
		}
		return Result{}, fmt.Errorf("exec: %w (the job was killed: %s)", context.Cause(ctx), cmd.ProcessState)
	}
	return res, nil
}

// killOnDone sends the group SIGTERM when ctx ends, and SIGKILL grace later; stop ends the
// watch and joins it.
func killOnDone(ctx context.Context, pgid int, grace time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-done:
			return
		case <-ctx.Done():
		}
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		}
	}()
	return func() { close(done); wg.Wait() }
}

// collect reads r to its end; it reports each Chunk gathered (each read, with stream) as
// stream n, and returns the rest. If a report fails (the parent is gone), it reads on and
// keeps nothing more.
func collect(r io.Reader, n int, stream bool, report func(Output) error) []byte {
	var buf bytes.Buffer
	b := make([]byte, Chunk)
	failed := false
	for {
		k, err := r.Read(b[:Chunk-buf.Len()])
		buf.Write(b[:k])
		if buf.Len() == Chunk || stream && buf.Len() > 0 {
			if !failed && report(Output{Stream: n, Data: buf.Bytes()}) != nil {
				failed = true
			}
			buf.Reset()
		}
		if err != nil {
			return buf.Bytes()
		}
	}
}
