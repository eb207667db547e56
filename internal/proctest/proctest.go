// Package proctest holds test helpers that prove processes are gone. Linux only in effect:
// they read /proc, and report nothing where there is none.
package proctest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Build compiles the main package in dir (a path as `go build` takes it) into a temporary
// directory and returns the binary's path. The directory is removed by cleanup.
func Build(dir string) (binary string, cleanup func(), err error) {
	tmp, err := os.MkdirTemp("", "supervise-test")
	if err != nil {
		return "", nil, err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", nil, err
	}
	binary = filepath.Join(tmp, filepath.Base(abs))
	if out, err := exec.Command("go", "build", "-o", binary, dir).CombinedOutput(); err != nil {
		os.RemoveAll(tmp)
		return "", nil, &buildError{err, out}
	}
	return binary, func() { os.RemoveAll(tmp) }, nil
}

type buildError struct {
	err error
	out []byte
}

func (e *buildError) Error() string { return "go build: " + e.err.Error() + "\n" + string(e.out) }

// proc is one live process from /proc.
type proc struct {
	pid, pgrp int
	state     string
	comm      string
	start     uint64 // when it started, in clock ticks since boot: with pid, it names one process
}

// tracked holds the start times of processes a test named while they were alive (Track): a
// live process with one of their pids and another start time is not theirs (the pid was
// reused), and neither is the group it leads.
var tracked sync.Map // pid -> start

// Track notes the start time of process pid, alive now, so that AssertGone and AwaitGone do
// not take a later process that reuses its pid for it.
func Track(pid int) {
	if start, ok := startTime(pid); ok {
		tracked.Store(pid, start)
	}
}

func startTime(pid int) (uint64, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	p, ok := parseStat(pid, b)
	return p.start, ok
}

// reused reports whether the process p has a pid that a test tracked for another process.
func reused(p proc) bool {
	start, ok := tracked.Load(p.pid)
	return ok && start.(uint64) != p.start
}

func procs() []proc {
	var out []proc
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		if p, ok := parseStat(pid, b); ok {
			out = append(out, p)
		}
	}
	return out
}

// parseStat reads /proc/PID/stat: pid (comm) state ppid pgrp ... starttime (the 22nd field).
// comm may hold spaces and parentheses, so the fields are split after the last ')'.
func parseStat(pid int, b []byte) (proc, bool) {
	close := bytes.LastIndexByte(b, ')')
	open := bytes.IndexByte(b, '(')
	if close < 0 || open < 0 || open > close {
		return proc{}, false
	}
	f := strings.Fields(string(b[close+1:]))
	if len(f) < 20 {
		return proc{}, false
	}
	pgrp, _ := strconv.Atoi(f[2])
	start, _ := strconv.ParseUint(f[19], 10, 64)
	return proc{pid: pid, pgrp: pgrp, state: f[0], comm: string(b[open+1 : close]), start: start}, true
}

// AssertGone fails unless no process with one of pids, and no process in a group led by one of
// them (a worker's grandchildren), is alive. Zombies waiting for init to reap them count as gone.
func AssertGone(t testing.TB, pids ...int) {
	t.Helper()
	for _, msg := range alive(pids) {
		t.Error(msg)
	}
}

// AwaitGone is AssertGone for processes that are on their way out (their parent died, say): it
// waits up to within for them to go first.
func AwaitGone(t testing.TB, within time.Duration, pids ...int) {
	t.Helper()
	await(within, func() bool { return len(alive(pids)) == 0 })
	AssertGone(t, pids...)
}

func alive(pids []int) []string {
	var msgs []string
	for _, pid := range pids {
		if pid <= 0 { // group 0 would be every kernel thread
			msgs = append(msgs, fmt.Sprintf("pid %d is no process: the test lost the one it meant", pid))
		}
	}
	live := procs()
	newLeaders := map[int]bool{} // tracked pids reused by another process: its group is not the old one
	for _, p := range live {
		if reused(p) {
			newLeaders[p.pid] = true
		}
	}
	for _, p := range live {
		if p.state == "Z" || reused(p) || newLeaders[p.pgrp] {
			continue
		}
		if slices.Contains(pids, p.pid) {
			msgs = append(msgs, fmt.Sprintf("process %d (%s) is still alive", p.pid, p.comm))
		} else if slices.Contains(pids, p.pgrp) {
			msgs = append(msgs, fmt.Sprintf("process %d (%s) of worker group %d is still alive", p.pid, p.comm, p.pgrp))
		}
	}
	if len(live) > 0 {
		return msgs
	}
	for _, pid := range pids { // where there is no /proc, at least the pids themselves
		if err := syscall.Kill(pid, 0); err == nil {
			msgs = append(msgs, fmt.Sprintf("process %d is still alive", pid))
		}
	}
	return msgs
}

// AssertNoProcessRuns fails if a live process runs the executable at path.
func AssertNoProcessRuns(t testing.TB, path string) {
	t.Helper()
	for _, msg := range running(path) {
		t.Error(msg)
	}
}

// AwaitNoProcessRuns is AssertNoProcessRuns after waiting up to within for them to go.
func AwaitNoProcessRuns(t testing.TB, within time.Duration, path string) {
	t.Helper()
	await(within, func() bool { return len(running(path)) == 0 })
	AssertNoProcessRuns(t, path)
}

func running(path string) []string {
	var msgs []string
	for _, p := range procs() {
		if exe, err := os.Readlink("/proc/" + strconv.Itoa(p.pid) + "/exe"); err == nil && exe == path && p.state != "Z" {
			msgs = append(msgs, fmt.Sprintf("process %d (%s) still runs %s", p.pid, p.comm, path))
		}
	}
	return msgs
}

// await polls done until it holds or within has passed: nothing signals this process when a
// process that is not its child exits.
func await(within time.Duration, done func() bool) {
	deadline := time.Now().Add(within)
	for !done() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
}

// RunMain builds the main package in dir, runs it with args and returns what it wrote to
// stdout. The test fails, quoting its stderr, if it does not exit 0 or leaves a process running
// it (its workers) behind.
func RunMain(t testing.TB, dir string, args ...string) string {
	t.Helper()
	bin, cleanup, err := Build(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	var stderr strings.Builder
	cmd := exec.Command(bin, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", dir, strings.Join(args, " "), err, out, stderr.String())
	}
	AssertNoProcessRuns(t, bin)
	return string(out)
}

// AwaitNoProcessWithArg waits up to within for every process that has arg among its
// arguments to go, then fails for each that remains. For workers run by an interpreter
// (python3 worker.py), whose executable says nothing about them: give the script a path of
// its own, such as a copy in a temporary directory.
func AwaitNoProcessWithArg(t testing.TB, within time.Duration, arg string) {
	t.Helper()
	await(within, func() bool { return len(withArg(arg)) == 0 })
	for _, msg := range withArg(arg) {
		t.Error(msg)
	}
}

func withArg(arg string) []string {
	var msgs []string
	for _, p := range procs() {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(p.pid) + "/cmdline")
		if err == nil && p.state != "Z" && slices.Contains(strings.Split(string(b), "\x00"), arg) {
			msgs = append(msgs, fmt.Sprintf("process %d (%s) still runs with argument %s", p.pid, p.comm, arg))
		}
	}
	return msgs
}

// Python returns a python3 that can import msgpack, for tests of Python workers: $SUPERVISE_PYTHON,
// else python3 on PATH, else /usr/bin/python3 (where Debian's python3-msgpack installs). With
// none, the test is skipped, or fails if SUPERVISE_REQUIRE_PYTHON is set (as CI sets it).
func Python(t testing.TB) string {
	t.Helper()
	candidates := []string{os.Getenv("SUPERVISE_PYTHON"), "python3", "/usr/bin/python3"}
	for _, c := range candidates {
		if c == "" {
			continue
		}
		if path, err := exec.LookPath(c); err == nil && exec.Command(path, "-c", "import msgpack").Run() == nil {
			return path
		}
	}
	msg := "no python3 with msgpack (apt-get install python3-msgpack, or set SUPERVISE_PYTHON)"
	if os.Getenv("SUPERVISE_REQUIRE_PYTHON") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// CopyFiles copies the named files into a new temporary directory of the test, and returns it.
func CopyFiles(t testing.TB, files ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// AwaitProcessWithArg waits up to within for a process that has arg among its arguments to
// run, and fails the test if none does.
func AwaitProcessWithArg(t testing.TB, within time.Duration, arg string) {
	t.Helper()
	await(within, func() bool { return len(withArg(arg)) > 0 })
	if len(withArg(arg)) == 0 {
		t.Fatalf("no process with argument %s within %v", arg, within)
	}
}
