package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/supervise-dev/supervise/internal/proctest"
)

// execCLI runs supervise exec with stdin; no process of supervise may remain afterwards.
func execCLI(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	stdout, stderr, code = runCLI(t, stdin, args...)
	proctest.AssertNoProcessRuns(t, binary)
	return stdout, stderr, code
}

func sortedLines(s string) []string {
	l := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	slices.Sort(l)
	return l
}

// An ordinary command runs once per input, from stdin, -0, -a FILE or :::, with GNU
// parallel's replacement strings, and without a shell: an input is one argument.
func TestExecInputsAndReplacements(t *testing.T) {
	list := filepath.Join(t.TempDir(), "list")
	must(t, os.WriteFile(list, []byte("f1\nf2\n"), 0o644))
	for _, tc := range []struct {
		stdin string
		args  []string
		want  []string
	}{
		{"", []string{"exec", "echo", ":::", "a", "b", "c"}, []string{"a", "b", "c"}},
		{"x y\n'q'\n", []string{"exec", "printf", "[%s]\\n"}, []string{"['q']", "[x y]"}},
		{"a b\x00c\nd\x00", []string{"exec", "-0", "-k", "printf", "[%s]|"}, []string{"[a b]|[c\nd]|"}},
		{"", []string{"exec", "-a", list, "echo", "got"}, []string{"got f1", "got f2"}},
		{"", []string{"exec", "echo", "{}", "{.}", "{/}", "{//}", "{/.}", "{#}", ":::", "dir/file.txt"},
			[]string{"dir/file.txt dir/file file.txt dir file 1"}},
		// With --shell the line is the shell's, and an input is still taken literally.
		{"", []string{"exec", "--shell", "echo {} | tr a-z A-Z", ":::", "$(echo pwned)", "a;b"}, []string{"$(ECHO PWNED)", "A;B"}},
	} {
		stdout, stderr, code := execCLI(t, tc.stdin, tc.args...)
		got := sortedLines(stdout)
		if !strings.HasSuffix(stdout, "\n") {
			got = []string{stdout}
		}
		if code != 0 || !slices.Equal(got, tc.want) {
			t.Errorf("%q: exit %d, stdout %q (stderr %q); want %q", tc.args, code, stdout, stderr, tc.want)
		}
	}
}

// Each job's output is printed whole, its stdout on stdout and its stderr on stderr, never
// mixed with another job's; --keep-order prints in input order; --tag puts the input first.
func TestExecGroupsOutput(t *testing.T) {
	script := `for i in 1 2 3; do echo "$1 out $i"; echo "$1 err $i" >&2; sleep 0.02; done`
	stdout, stderr, code := execCLI(t, "", "-j", "3", "exec", "-k", "--tag", "sh", "-c", script, "_", ":::", "a", "b", "c")
	var want, wantErr strings.Builder
	for _, in := range []string{"a", "b", "c"} {
		for i := 1; i <= 3; i++ {
			fmt.Fprintf(&want, "%s\t%s out %d\n", in, in, i)
		}
	}
	if code != 0 || stdout != want.String() {
		t.Fatalf("exit %d; stdout:\n%s\nwant:\n%s", code, stdout, want.String())
	}
	for _, in := range []string{"a", "b", "c"} { // each job's stderr in one piece
		for i := 1; i <= 3; i++ {
			fmt.Fprintf(&wantErr, "%s\t%s err %d\n", in, in, i)
		}
		if !strings.Contains(stderr, strings.Join([]string{in + "\t" + in + " err 1", in + "\t" + in + " err 2", in + "\t" + in + " err 3"}, "\n")) {
			t.Errorf("job %s's stderr is not whole:\n%s", in, stderr)
		}
	}
}

// A job's output over a megabyte comes back whole (reports, and a temporary file while it
// waits its turn).
func TestExecLargeOutput(t *testing.T) {
	want, err := exec.Command("seq", "300000").Output()
	must(t, err)
	stdout, stderr, code := execCLI(t, "", "exec", "sh", "-c", "seq 300000", ":::", "x")
	if code != 0 || stdout != string(want) {
		t.Fatalf("exit %d, %d bytes of stdout, want %d; stderr %q", code, len(stdout), len(want), stderr)
	}
}

// Exit status as GNU parallel's: the number of failed jobs, at most 101.
func TestExecExitStatus(t *testing.T) {
	if _, _, code := execCLI(t, "", "exec", "sh", "-c", "exit $1", "_", ":::", "0", "1", "2", "0", "3"); code != 3 {
		t.Errorf("3 failed jobs: exit %d", code)
	}
	if _, _, code := execCLI(t, strings.Repeat("x\n", 120), "exec", "false"); code != 101 {
		t.Errorf("120 failed jobs: exit %d, want 101", code)
	}
	if _, stderr, code := execCLI(t, "", "exec", "--halt", "bogus", "true", ":::", "1"); code != 255 || !strings.Contains(stderr, "--halt") {
		t.Errorf("a bad --halt: exit %d, stderr %q; want 255", code, stderr)
	}
	if _, stderr, code := execCLI(t, "", "exec", "/nonexistent/cmd", ":::", "1"); code != 1 || !strings.Contains(stderr, `job 1 ("1")`) || !strings.Contains(stderr, "no such file") {
		t.Errorf("a command that cannot start: exit %d, stderr %q", code, stderr)
	}
}

// --timeout kills the job's whole group (SIGKILL --stop-grace after SIGTERM, which this one
// ignores), and the job fails with its output so far kept; the other jobs are unharmed.
func TestExecTimeoutKillsTheJob(t *testing.T) {
	script := `trap "" TERM; sleep 300 & echo "$!"; [ "$1" = fast ] && exit 0; wait`
	stdout, stderr, code := execCLI(t, "", "--timeout", "300ms", "--stop-grace", "100ms", "exec", "sh", "-c", script, "_", ":::", "slow", "fast")
	pids := regexp.MustCompile(`\d+`).FindAllString(stdout, -1)
	if code != 1 || len(pids) != 2 || !strings.Contains(stderr, `job 1 ("slow"): `) || !strings.Contains(stderr, "time limit") {
		t.Fatalf("exit %d, stdout %q, stderr %q; want the slow job to fail for its time limit", code, stdout, stderr)
	}
	for _, p := range pids {
		pid, _ := strconv.Atoi(p)
		proctest.KillAtCleanup(t, pid)
		proctest.AwaitGone(t, time.Second, pid) // killed; /proc may show it a moment longer
	}
}

// --joblog writes GNU parallel's format; --resume runs none of the jobs it shows ended,
// --resume-failed runs the failed ones again, and both add to the log.
func TestExecJoblogAndResume(t *testing.T) {
	log := filepath.Join(t.TempDir(), "jobs.log")
	args := func(more ...string) []string {
		return append(append([]string{"exec", "--joblog", log}, more...), "sh", "-c", `echo ran $1; [ $(($1 % 2)) = 0 ] || [ -e "$0" ]`, log+".ok", "{}")
	}
	stdout, _, code := execCLI(t, "1\n2\n3\n4\n5\n", args()...)
	if code != 3 || len(sortedLines(stdout)) != 5 {
		t.Fatalf("exit %d, stdout %q; want 3 failed of 5", code, stdout)
	}
	b, err := os.ReadFile(log)
	must(t, err)
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	line := regexp.MustCompile(`^(\d+)\t:\t\d+\.\d{3}\t +\d+\.\d{3}\t2\t6\t([01])\t0\tsh -c .*$`)
	if len(lines) != 6 || lines[0] != strings.TrimSuffix(joblogHeader, "\n") {
		t.Fatalf("job log:\n%s", b)
	}
	for _, l := range lines[1:] {
		m := line.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("not a job log line: %q", l)
		}
		seq, _ := strconv.Atoi(m[1])
		if (seq%2 == 1) != (m[2] == "1") {
			t.Errorf("job %d's exit value: %q", seq, l)
		}
	}
	if stdout, _, code := execCLI(t, "1\n2\n3\n4\n5\n", args("--resume")...); code != 0 || stdout != "" {
		t.Errorf("--resume: exit %d, stdout %q; want nothing run", code, stdout)
	}
	must(t, os.WriteFile(log+".ok", nil, 0o644)) // the failed ones succeed now
	stdout, _, code = execCLI(t, "1\n2\n3\n4\n5\n6\n", args("--resume-failed")...)
	if got := sortedLines(stdout); code != 0 || !slices.Equal(got, []string{"ran 1", "ran 3", "ran 5", "ran 6"}) {
		t.Errorf("--resume-failed: exit %d, ran %q; want 1, 3, 5 again and 6", code, got)
	}
	b, _ = os.ReadFile(log)
	if n := strings.Count(string(b), "\n"); n != 10 {
		t.Errorf("the log has %d lines after --resume-failed, want 10:\n%s", n, b)
	}
}

// --halt now,fail=1 kills the running jobs at the first failure and exits with its status;
// soon,fail=1 lets them finish; no job starts after either.
func TestExecHalt(t *testing.T) {
	script := `echo "started $1"; [ "$1" = 3 ] && exit 7; sleep "$0"`
	for _, tc := range []struct {
		halt, sleep string
		finished    bool
	}{{"now,fail=1", "300", false}, {"soon,fail=1", "0.5", true}} {
		stdout, stderr, code := execCLI(t, "", "-j", "3", "exec", "--halt", tc.halt, "sh", "-c", script, tc.sleep, ":::", "1", "2", "3", "4", "5", "6")
		got := sortedLines(stdout)
		want := []string{"started 3"}
		if tc.finished {
			want = []string{"started 1", "started 2", "started 3"}
		}
		if code != 7 || !slices.Equal(got, want) {
			t.Errorf("--halt %s: exit %d, stdout %q (stderr %q); want exit 7 and %q", tc.halt, code, got, stderr, want)
		}
	}
}

// --retries N runs a failed job up to N more times; only its last run is printed and logged.
func TestExecRetries(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "jobs.log")
	script := `n=$(cat "$0" 2>/dev/null || echo 0); echo $((n+1)) > "$0"; echo "run $n"; [ "$n" -ge 2 ]`
	stdout, stderr, code := execCLI(t, "", "--retries", "2", "exec", "--joblog", log, "sh", "-c", script, filepath.Join(dir, "count"), ":::", "x")
	b, _ := os.ReadFile(log)
	if code != 0 || stdout != "run 2\n" || strings.Count(string(b), "\n") != 2 {
		t.Fatalf("exit %d, stdout %q, stderr %q, log:\n%s", code, stdout, stderr, b)
	}
}

// A job that goes over --memory-limit is killed, and the next job runs.
func TestExecMemoryLimit(t *testing.T) {
	py := "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		t.Skip("needs /usr/bin/python3")
	}
	start := time.Now()
	stdout, stderr, code := execCLI(t, "", "-j", "1", "--memory-limit", "64MiB", "exec", "-k", py, "-c",
		"import sys; x = bytearray(int(sys.argv[1]) << 20); print('held', sys.argv[1])", ":::", "400", "1")
	if code != 1 || stdout != "held 1\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q (%v); want the 400 MiB job to fail and the next to run", code, stdout, stderr, time.Since(start))
	}
}

// Input is bounded: a record over 1 MiB is a failed job, named on stderr, and the others
// run; a line printed without its end by a job on a terminal is bounded too (lineWriter).
func TestExecRecordTooLong(t *testing.T) {
	stdout, stderr, code := execCLI(t, "a\n"+strings.Repeat("x", 3<<20)+"\nb\n", "exec", "-k", "echo")
	if code != 1 || stdout != "a\nb\n" || !strings.Contains(stderr, "job 2: its input is longer than 1048576 bytes") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	var got bytes.Buffer
	lw := &lineWriter{w: &got}
	lw.Write(bytes.Repeat([]byte("y"), maxPartial))
	lw.Write([]byte("yy"))
	if len(lw.partial) != 0 || got.Len() != maxPartial+2 {
		t.Fatalf("a line past maxPartial: %d bytes kept, %d passed on", len(lw.partial), got.Len())
	}
}

// A job that exits non-zero or is killed by a signal is a failure for the pool
// too, not only for exec's exit status: its worker's figures (the report's per-worker
// "failed", as Stats, the metrics and the web view count) say so. They counted such jobs as
// successes.
func TestExecFailedJobsCountAsFailures(t *testing.T) {
	report := filepath.Join(t.TempDir(), "report.json")
	_, stderr, code := execCLI(t, "", "--workers", "2", "--report-json", report, "exec", "sh", "-c", `case $1 in kill) kill -9 $$ ;; *) exit $1 ;; esac`, "_", ":::", "0", "1", "2", "kill", "0", "3")
	if code != 4 {
		t.Fatalf("exit %d, stderr %q; want 4 failed jobs", code, stderr)
	}
	b, err := os.ReadFile(report)
	must(t, err)
	var rep struct {
		Failed    int `json:"failed"`
		PerWorker []struct {
			Tasks, Failed int
		} `json:"per_worker"`
	}
	must(t, json.Unmarshal(b, &rep))
	failed, tasks := 0, 0
	for _, w := range rep.PerWorker {
		failed += w.Failed
		tasks += w.Tasks
	}
	if rep.Failed != 4 || failed != 4 || tasks != 2 { // Tasks: answered with a result
		t.Errorf("report: %d failed; the workers' tasks with a result %d, failed %d; want 2 and 4", rep.Failed, tasks, failed)
	}
}
