package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/supervise-dev/supervise/internal/pooltest"
	"github.com/supervise-dev/supervise/internal/proctest"
)

// runStdin runs supervise with stdin and returns what it printed and its exit status. The
// worker processes, which run the script at worker, must be gone afterwards.
func runStdin(t *testing.T, stdin, worker string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	stdout, stderr, code = runCLI(t, stdin, args...)
	proctest.AwaitNoProcessWithArg(t, 5*time.Second, worker)
	return stdout, stderr, code
}

// pythonScript copies the Python library and a script of testdata into a directory of the
// test's own, and returns python3 and the script's path.
func pythonScript(t *testing.T, script string) (python, path string) {
	python = proctest.Python(t)
	dir := proctest.CopyFiles(t, "../../child/python/supervise_worker.py", filepath.Join("testdata", script))
	return python, filepath.Join(dir, script)
}

func numbered(n int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintln(&b, i)
	}
	return b.String()
}

var errorLine = regexp.MustCompile(`^supervise: line (\d+): (.*)$`)

// TestRunEveryLineEndsOnce: 10,000 lines through Python workers, some raising, some hanging
// past --timeout (one ignoring its cancel, so its worker is killed): each line ends exactly
// once, as a result on stdout or an error naming it on stderr.
func TestRunEveryLineEndsOnce(t *testing.T) {
	const n = 10000
	py, script := pythonScript(t, "e2e_worker.py")
	stdout, stderr, code := runStdin(t, numbered(n), script,
		"--workers", "2", "--timeout", "1s", "--cancel-grace", "1s", "--stop-grace", "200ms", "--log-level", "error",
		"run", "--call", "work", "--", py, script)
	if code != 1 {
		t.Errorf("exit status %d, want 1 (some lines failed)", code)
	}
	ended := make(map[int]string, n)
	end := func(line int, how string) {
		if prev, dup := ended[line]; dup {
			t.Errorf("line %d ended twice: %q and %q", line, prev, how)
		}
		ended[line] = how
	}
	for _, l := range strings.Split(strings.TrimSuffix(stdout, "\n"), "\n") {
		v, ok := strings.CutPrefix(l, "ok ")
		line, err := strconv.Atoi(v)
		if !ok || err != nil {
			t.Fatalf("stdout line %q is not a result", l)
		}
		end(line, l)
	}
	for _, l := range strings.Split(strings.TrimSuffix(stderr, "\n"), "\n") {
		m := errorLine.FindStringSubmatch(l)
		if m == nil {
			t.Errorf("stderr line %q is not an error line", l)
			continue
		}
		line, _ := strconv.Atoi(m[1])
		end(line, m[2])
	}
	for i := 1; i <= n; i++ {
		how, ok := ended[i]
		switch {
		case !ok:
			t.Errorf("line %d never ended", i)
		case i%997 == 0:
			if !strings.Contains(how, "ValueError: "+strconv.Itoa(i)+" is a multiple of 997") {
				t.Errorf("line %d: %q, want its ValueError", i, how)
			}
		case i == 2500 || i == 7500 || i == 5000: // each fails at its limit, whether its handler stops or not
			if !strings.Contains(how, "time limit exceeded (1s)") {
				t.Errorf("line %d: %q, want its time limit", i, how)
			}
		case how != "ok "+strconv.Itoa(i):
			t.Errorf("line %d: %q", i, how)
		}
	}
	if len(ended) != n {
		t.Errorf("%d lines ended, want %d", len(ended), n)
	}
}

// With --keep-order results come in input order, and errors name their line; --json maps
// JSON values to msgpack and back. A Go worker (the conformance worker) this time.
func TestRunKeepOrderJSON(t *testing.T) {
	worker, cleanup, err := proctest.Build("../../examples/conformance-worker")
	must(t, err)
	defer cleanup()
	in := `{"a":1,"b":[true,null,2.5]}
"text"

12345678901
[1,"two"]
not json
`
	stdout, stderr, code := runStdin(t, in, worker, "--workers", "2", "run", "--json", "--keep-order", "--call", "echo", "--", worker)
	want := `{"a":1,"b":[true,null,2.5]}
"text"
12345678901
[1,"two"]
`
	if stdout != want || code != 1 {
		t.Errorf("stdout %q, exit %d; want %q, exit 1", stdout, code, want)
	}
	if !strings.HasPrefix(stderr, "supervise: line 6: not JSON") {
		t.Errorf("stderr %q, want an error naming line 6", stderr)
	}

	stdout, _, code = runStdin(t, numbered(2000), worker, "--workers", "2", "--in-flight", "8", "run", "-k", "--call", "echo", "--", worker)
	if stdout != numbered(2000) || code != 0 {
		t.Errorf("--keep-order: the lines came back out of order, or exit %d", code)
	}
}

func TestRunBadUsage(t *testing.T) {
	worker, cleanup, err := proctest.Build("../../examples/conformance-worker")
	must(t, err)
	defer cleanup()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--", worker}, `name one with --call`},
		{[]string{"run", "--call", "nope", "--", worker}, `--call nope: the worker serves no such handler`},
		{[]string{"run", "--call", "echo", worker}, `put the worker command after --`},
		{[]string{"run", "--call", "echo", "--", "/nonexistent/worker"}, `/nonexistent/worker`},
	} {
		_, stderr, code := runStdin(t, "x\n", worker, tc.args...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want exit 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
}

// SIGKILL supervise run while its Python workers are busy and have children of their own:
// the parent-death signal reaches each worker, which takes its process group down, so no
// worker and no grandchild is left.
func TestRunParentKilledLeavesNoOrphan(t *testing.T) {
	py, script := pythonScript(t, "spawner_worker.py")
	marker := sleepMarker()
	killRunAndAwait(t, script, marker, marker+"\n"+marker+"\n", nil,
		"--workers", "2", "--stop-grace", "300ms", "run", "--call", "spawn", "--", py, script)
}

// SIGKILL supervise run while its Python worker is idle, after a task that left a process
// behind that ignores SIGTERM and SIGHUP: the worker sees stdin end without a shutdown
// message, takes that for its parent's death, and takes its group down. It used to exit at
// once, before its parent-death ladder had sent SIGKILL, leaving the process (6 of 6 tries).
func TestRunParentOfIdleWorkerKilledLeavesNoOrphan(t *testing.T) {
	py, script := pythonScript(t, "litter_worker.py")
	marker := sleepMarker()
	idle := func(stdout io.Reader) { // the task is done: the worker is idle
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err != nil || !strings.Contains(line, marker) {
			t.Fatalf("first line %q, %v", line, err)
		}
	}
	killRunAndAwait(t, script, marker, marker+"\n", idle,
		"--workers", "1", "--stop-grace", "2s", "run", "--call", "litter", "--", py, script)
}

// A Python handler leaves a process that calls setsid and ignores SIGTERM and SIGHUP: it
// leaves the worker's process group, but not its cgroup, and is gone when run ends.
func TestRunEscapedProcessGoneAtEnd(t *testing.T) {
	pooltest.NeedCgroups(t)
	py, script := pythonScript(t, "litter_worker.py")
	marker := sleepMarker()
	cmd := exec.Command(binary, "--workers", "1", "--stop-grace", "300ms", "run", "--call", "escape", "--", py, script)
	cmd.Stdin = strings.NewReader(marker + "\n")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "left "+marker) {
		t.Fatalf("run: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("pkill", "-KILL", "-xf", "sleep "+regexp.QuoteMeta(marker)).Run() })
	proctest.AwaitNoProcessWithArg(t, 2*time.Second, marker) // gone by the end; the margin is for /proc
}

// The same, and supervise run is SIGKILLed while its worker is idle: the pool's warden kills
// the escaped process.
func TestRunParentKilledEscapedProcessGone(t *testing.T) {
	pooltest.NeedCgroups(t)
	py, script := pythonScript(t, "litter_worker.py")
	marker := sleepMarker()
	idle := func(stdout io.Reader) {
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err != nil || !strings.Contains(line, marker) {
			t.Fatalf("first line %q, %v", line, err)
		}
	}
	t.Cleanup(func() { _ = exec.Command("pkill", "-KILL", "-xf", "sleep "+regexp.QuoteMeta(marker)).Run() })
	killRunAndAwait(t, script, marker, marker+"\n", idle,
		"--workers", "1", "--stop-grace", "300ms", "run", "--call", "escape", "--", py, script)
}

// sleepMarker is an argument for sleep unique to this run, to find its processes by.
func sleepMarker() string {
	return fmt.Sprintf("%d.%d", 3000+time.Now().Nanosecond()%1000, time.Now().Nanosecond()%997)
}

// killRunAndAwait starts supervise with args, writes lines on its stdin (which stays open: the
// run goes on), waits for a process with marker among its arguments (and for ready, if given,
// to return), SIGKILLs supervise and waits for every process of script and of marker to end.
func killRunAndAwait(t *testing.T, script, marker, lines string, ready func(stdout io.Reader), args ...string) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	stdin, err := cmd.StdinPipe()
	must(t, err)
	stdout, err := cmd.StdoutPipe()
	must(t, err)
	must(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill() }) // if the test fails before it kills it
	fmt.Fprint(stdin, lines)
	if ready != nil {
		ready(stdout)
	}
	proctest.AwaitProcessWithArg(t, 10*time.Second, marker)
	must(t, cmd.Process.Kill())
	_ = cmd.Wait()
	proctest.AwaitNoProcessWithArg(t, 10*time.Second, script)
	proctest.AwaitNoProcessWithArg(t, 10*time.Second, marker)
	stdin.Close()
}

// A line that arrives while the lines before it run is submitted at once: the second line
// here is what the first waits for. run used to wait for the first line's task before it
// read on (6 lines 0.2 s apart, 3 s tasks, -j 4 took 18 s, not 3).
func TestRunSlowLinesRunTogether(t *testing.T) {
	py, script := pythonScript(t, "meet_worker.py")
	path := filepath.Join(t.TempDir(), "met")
	cmd := exec.Command(binary, "--workers", "2", "--in-flight", "1", "run", "--", py, script)
	stdin, err := cmd.StdinPipe()
	must(t, err)
	var out strings.Builder
	cmd.Stdout = &out
	must(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	fmt.Fprintf(stdin, "wait %s\n", path)
	for deadline := time.Now().Add(20 * time.Second); !exists(path + ".started"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the first line never started")
		}
	}
	fmt.Fprintf(stdin, "make %s\n", path)
	stdin.Close()
	must(t, cmd.Wait())
	if got := strings.Fields(out.String()); !slices.Equal(got, []string{"made", "met"}) && !slices.Equal(got, []string{"met", "made"}) {
		t.Errorf("stdout %q, want made and met", got)
	}
	proctest.AwaitNoProcessWithArg(t, 5*time.Second, script)
}

// Input that fails as a whole or at its only line ends the run with the error; run used to
// print it and hang.
func TestRunBadInputDoesNotHang(t *testing.T) {
	py, script := pythonScript(t, "e2e_worker.py")
	_, stderr, code := runStdin(t, "{bad\n", script, "run", "--json", "--", py, script)
	if code != 1 || !strings.Contains(stderr, "line 1: not JSON") {
		t.Errorf("--json with a bad line: exit %d, stderr %q", code, stderr)
	}
	cmd := exec.Command(binary, "run", "--", py, script)
	dir, err := os.Open(t.TempDir())
	must(t, err)
	defer dir.Close()
	var e strings.Builder
	cmd.Stdin, cmd.Stderr = dir, &e
	err = cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(e.String(), "reading stdin at line 1") || !strings.Contains(e.String(), "is a directory") {
		t.Errorf("stdin a directory: %v, stderr %q", err, e.String())
	}
	proctest.AwaitNoProcessWithArg(t, 5*time.Second, script)
}

func exists(path string) bool { _, err := os.Stat(path); return err == nil }

// A whole number beyond 64 bits is refused, naming its line; it used to be rounded to a float
// without a word.
func TestRunJSONIntegerOutOfRange(t *testing.T) {
	py, script := pythonScript(t, "e2e_worker.py")
	_, stderr, code := runStdin(t, "18446744073709551616\n18446744073709551615\n", script, "run", "--json", "--", py, script)
	if code != 1 || !strings.Contains(stderr, "line 1: the integer 18446744073709551616 does not fit in 64 bits") || strings.Contains(stderr, "line 2: the integer") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}

// run --joblog logs a line per input line (failed: Exitval 1); --resume runs none of them
// again, --resume-failed the failed ones; --halt now,fail=1 stops at the first failure.
func TestRunJoblogResumeHalt(t *testing.T) {
	py, script := pythonScript(t, "e2e_worker.py")
	log := filepath.Join(t.TempDir(), "run.log")
	input := "1\n997\n3\nx\n5\n"
	stdout, stderr, code := runCLI(t, input, "run", "--joblog", log, "--call", "work", "--", py, script)
	if code != 1 || len(strings.Fields(stdout)) != 6 {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	past, err := readJobLog(log)
	must(t, err)
	want := map[int]bool{1: false, 2: true, 3: false, 4: true, 5: false}
	if !maps.Equal(past.bySeq, want) {
		t.Fatalf("the job log says %v, want %v", past.bySeq, want)
	}
	if stdout, _, code := runCLI(t, input, "run", "--joblog", log, "--resume", "--call", "work", "--", py, script); code != 0 || stdout != "" {
		t.Errorf("--resume: exit %d, stdout %q; want nothing run", code, stdout)
	}
	stdout, stderr, code = runCLI(t, input+"6\n", "run", "--joblog", log, "--resume-failed", "-k", "--call", "work", "--", py, script)
	if code != 1 || stdout != "ok 6\n" || strings.Count(stderr, "supervise: line") != 2 {
		t.Errorf("--resume-failed: exit %d, stdout %q, stderr %q; want lines 2 and 4 failing again, and 6", code, stdout, stderr)
	}
	// Line 2 fails at once while 1 hangs, and the worker that ran it takes 3, which hangs
	// too: halting now cancels both, and 4, which no worker was free to start.
	stdout, stderr, code = runCLI(t, "2500\n997\n7500\n4\n", "-j", "2", "--in-flight", "1", "run", "--halt", "now,fail=1", "--call", "work", "--", py, script)
	if code != 1 || strings.Contains(stdout, "ok 4") || !strings.Contains(stderr, "line 2:") {
		t.Errorf("--halt now,fail=1: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	proctest.AssertNoProcessRuns(t, binary)
}
