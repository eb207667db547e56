package main

import (
	"bufio"
	"errors"
	"io"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/supervise-dev/supervise/internal/proctest"
)

// A first SIGINT or SIGTERM stops digest cleanly: it says what was left undone, exits with
// 128+signal, and leaves no worker behind.
func TestInterruptStopsCleanly(t *testing.T) {
	dir := sparseTree(t, 8, 1<<30)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		cmd := exec.Command(binary, "--log-level", "debug", "digest", dir)
		stderr, err := cmd.StderrPipe()
		must(t, err)
		must(t, cmd.Start())
		r := bufio.NewReader(stderr)
		for { // until the pool is up: its debug log says so
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("stderr ended before the pool started: %v", err)
			}
			if strings.Contains(line, `msg="pool started"`) {
				break
			}
		}
		must(t, cmd.Process.Signal(sig))
		rest, _ := io.ReadAll(r) // to EOF: the command has exited
		var ee *exec.ExitError
		if err := cmd.Wait(); !errors.As(err, &ee) || ee.ExitCode() != 128+int(sig) {
			t.Fatalf("%v: %v, want exit status %d", sig, err, 128+int(sig))
		}
		if !strings.Contains(string(rest), "supervise: interrupted: ") || !strings.Contains(string(rest), " files not hashed\n") {
			t.Fatalf("%v: stderr does not say what was left undone:\n%s", sig, rest)
		}
		proctest.AssertNoProcessRuns(t, binary)
	}
}

// A second signal while digest is stopping exits at once, with 128+signal; the workers follow
// their parent (parent-death signal, stdin EOF) and none is left. The workers are stopped
// (SIGSTOP) before the first signal, so they cannot answer its cancel and stopping would wait
// for --cancel-grace.
func TestSecondSignalExitsAtOnce(t *testing.T) {
	dir := sparseTree(t, 4, 16<<30)
	cmd := exec.Command(binary, "--log-level", "debug", "--workers", "2", "--stop-grace", "100ms", "--cancel-grace", "1m", "digest", dir)
	stderr, err := cmd.StderrPipe()
	must(t, err)
	must(t, cmd.Start())
	r := bufio.NewReader(stderr)
	var workers []int
	started := regexp.MustCompile(`msg="supervise: worker started" worker=\d+ pid=(\d+)`)
	waitFor := func(what string) {
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				cmd.Process.Kill()
				t.Fatalf("stderr ended before %q: %v", what, err)
			}
			if m := started.FindStringSubmatch(line); m != nil {
				pid, _ := strconv.Atoi(m[1])
				workers = append(workers, pid)
			}
			if strings.Contains(line, what) {
				return
			}
		}
	}
	waitFor(`msg="pool started"`)
	if len(workers) != 2 {
		t.Fatalf("workers %v", workers)
	}
	for _, pid := range workers {
		must(t, syscall.Kill(pid, syscall.SIGSTOP))
	}
	defer func() { // to die of their parent-death signal, they must run
		for _, pid := range workers {
			syscall.Kill(pid, syscall.SIGCONT)
		}
	}()
	must(t, cmd.Process.Signal(syscall.SIGINT))
	waitFor("stopping (a second signal exits at once)")
	must(t, cmd.Process.Signal(syscall.SIGTERM))
	rest, _ := io.ReadAll(r)
	var ee *exec.ExitError
	if err := cmd.Wait(); !errors.As(err, &ee) || ee.ExitCode() != 128+int(syscall.SIGTERM) {
		t.Fatalf("%v, want exit status %d", err, 128+int(syscall.SIGTERM))
	}
	if !strings.Contains(string(rest), "terminated again: exiting now") || strings.Contains(string(rest), "interrupted:") {
		t.Fatalf("the second signal did not take the immediate path:\n%s", rest)
	}
	for _, pid := range workers {
		syscall.Kill(pid, syscall.SIGCONT)
	}
	proctest.AwaitNoProcessRuns(t, 10*time.Second, binary)
}

// Ctrl-C on run while lines run on workers: the lines in flight are counted as not done, not
// failed. (They used to be failed one by one, "pool is closed: cancelled by Shutdown", and
// then the summary said "interrupted: 0 of 6 lines not done".)
func TestRunInterruptCountsLinesNotDone(t *testing.T) {
	worker, cleanup, err := proctest.Build("../../examples/conformance-worker")
	must(t, err)
	defer cleanup()
	cmd := exec.Command(binary, "--workers", "2", "run", "--json", "--call", "sleep", "--", worker)
	cmd.Stdin = strings.NewReader("0\n0\n30\n30\n30\n30\n")
	stdout, err := cmd.StdoutPipe()
	must(t, err)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	must(t, cmd.Start())
	r := bufio.NewReader(stdout)
	for range 2 { // the quick lines are done: the slow ones went out with them, and run
		if _, err := r.ReadString('\n'); err != nil {
			t.Fatalf("stdout ended before two results: %v; stderr:\n%s", err, stderr.String())
		}
	}
	must(t, cmd.Process.Signal(syscall.SIGINT))
	io.Copy(io.Discard, r)
	var ee *exec.ExitError
	if err := cmd.Wait(); !errors.As(err, &ee) || ee.ExitCode() != 130 {
		t.Fatalf("%v, want exit status 130; stderr:\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "supervise: interrupted: 4 of 6 lines not done\n") || strings.Contains(stderr.String(), "supervise: line ") {
		t.Fatalf("want 4 of 6 lines not done, and no line failed; stderr:\n%s", stderr.String())
	}
	proctest.AssertNoProcessRuns(t, worker)
}
