package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/supervise-dev/supervise/internal/proctest"
)

// The live view in a real terminal (tmux): the job's bar and one bar per core appear while
// digest runs, and are gone once it exits, after finishing or after Ctrl-C.
func TestLiveViewInTerminal(t *testing.T) {
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("tmux is not installed (.ci/run installs it)")
	}
	var socket string // a tmux server per session (see TestLiveViewKeepsEveryLine)
	tmux := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("tmux", append([]string{"-L", socket}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %v: %v: %s", args, err, out)
		}
		return string(out)
	}
	root := sparseTree(t, 1, 1<<30) // a second or so to hash
	jobBar := regexp.MustCompile(`(?m)^digest +\d+/\d+\+? files +\[[=>-]+\] .*/s ETA `)
	coreBar := regexp.MustCompile(`(?m)^cpu0 +\[[=>-]+\] +\d+%$`)

	for _, interrupt := range []bool{false, true} {
		session := fmt.Sprintf("interrupt-%v", interrupt)
		socket = fmt.Sprintf("supervise-test-%d-%d", os.Getpid(), time.Now().UnixNano())
		server := socket
		t.Cleanup(func() { _ = exec.Command("tmux", "-L", server, "kill-server").Run() })
		sums := filepath.Join(t.TempDir(), "sums")
		tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "20",
			fmt.Sprintf("%s -j 2 digest %s > %s; echo EXITED $?; sleep 600", binary, root, sums))
		// Nothing signals what another process drew: poll the screen.
		screen := func(until func(string) bool) string {
			t.Helper()
			var s string
			for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
				if s = tmux("capture-pane", "-p", "-t", session); until(s) {
					return s
				}
			}
			t.Fatalf("%s: the screen never showed what was awaited:\n%s", session, s)
			return ""
		}
		s := screen(func(s string) bool { return jobBar.MatchString(s) && coreBar.MatchString(s) })
		if strings.Contains(s, "EXITED") {
			t.Fatalf("%s: bars drawn after the exit:\n%s", session, s)
		}
		if interrupt {
			tmux("send-keys", "-t", session, "C-c")
		}
		s = screen(func(s string) bool { return strings.Contains(s, "EXITED") })
		if jobBar.MatchString(s) || coreBar.MatchString(s) || strings.Contains(s, "files [") {
			t.Errorf("%s: bars left on the screen after the exit:\n%s", session, s)
		}
		status := "EXITED 0"
		if interrupt {
			status = "EXITED 130"
			for _, line := range []string{"supervise: interrupt: stopping (a second signal exits at once)", "supervise: interrupted: 1 of 1 files not hashed"} {
				if !strings.Contains(s, line+"\n") {
					t.Errorf("%s: no line %q on the screen:\n%s", session, line, s)
				}
			}
		}
		if !strings.Contains(s, status) {
			t.Errorf("%s: want %s:\n%s", session, status, s)
		}
		if b, err := os.ReadFile(sums); err != nil || strings.Contains(string(b), "\x1b") || !interrupt && !strings.HasSuffix(string(b), "/sparse\n") {
			t.Errorf("%s: stdout %q, %v", session, b, err)
		}
		tmux("kill-session", "-t", session)
	}
	proctest.AssertNoProcessRuns(t, binary)
}

// With stdout the same terminal as stderr, every result line shows, in order, and no bar is
// left, after finishing or after Ctrl-C: the lines go above the bars. Printed past them, run
// lost 3 of 100,000 lines under the bars' redraws and left stale bars in the scrollback.
func TestLiveViewKeepsEveryLine(t *testing.T) {
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("tmux is not installed (.ci/run installs it)")
	}
	var socket string // a tmux server per session: one whose last session ends exits, and a
	// session started meanwhile failed with "server exited unexpectedly"
	conf := filepath.Join(t.TempDir(), "tmux.conf")
	// scroll-on-clear off: tmux, unlike a terminal, keeps in its history what an erase of
	// the whole screen clears, as the bars' redraw is while they are alone on it.
	must(t, os.WriteFile(conf, []byte("set -g history-limit 100000\nset -g scroll-on-clear off\n"), 0o644))
	tmux := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("tmux", append([]string{"-L", socket, "-f", conf}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %v: %v: %s", args, err, out)
		}
		return string(out)
	}
	bars := regexp.MustCompile(`exec +\d+/\d+\+? jobs|cpu0 +\[`)
	const n = 4000
	for _, interrupt := range []bool{false, true} {
		session := fmt.Sprintf("lines-%v", interrupt)
		socket = fmt.Sprintf("supervise-lines-%d-%d", os.Getpid(), time.Now().UnixNano())
		server := socket
		t.Cleanup(func() { _ = exec.Command("tmux", "-L", server, "kill-server").Run() })
		tmux("new-session", "-d", "-s", session, "-x", "100", "-y", "20",
			fmt.Sprintf("seq %d | %s -j 2 exec -k echo line; echo EXITED $?; sleep 600", n, binary))
		screen := func(until func(string) bool) string {
			t.Helper()
			var s string
			for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				if s = tmux("capture-pane", "-p", "-t", session); until(s) {
					return s
				}
			}
			t.Fatalf("%s: the screen never showed what was awaited:\n%s", session, s)
			return ""
		}
		screen(func(s string) bool { return bars.MatchString(s) || strings.Contains(s, "EXITED") })
		if interrupt {
			tmux("send-keys", "-t", session, "C-c")
		}
		screen(func(s string) bool { return strings.Contains(s, "EXITED") })
		all := tmux("capture-pane", "-p", "-S", "-", "-E", "-", "-t", session)
		before, _, _ := strings.Cut(all, "EXITED")
		// Every line, in order; interrupted, those of the jobs that ended (a job cut short
		// leaves a gap), as many as the count of jobs not done says.
		last, shown, notDone, total := 0, 0, 0, n
		for _, line := range strings.Split(strings.TrimRight(before, "\n"), "\n") {
			var k int
			switch _, err := fmt.Sscanf(line, "line %d", &k); {
			case err == nil && k > last && (interrupt || k == last+1):
				last, shown = k, shown+1
			case interrupt && strings.HasPrefix(line, "supervise: interrupted: "):
				fmt.Sscanf(line, "supervise: interrupted: %d of %d jobs not done", &notDone, &total)
			case interrupt && strings.HasPrefix(line, "supervise: interrupt: stopping"):
			default:
				t.Errorf("%s: line %q after line %d", session, line, last)
			}
		}
		if shown != total-notDone || interrupt && (notDone == 0 || !strings.Contains(all, "EXITED 130")) {
			t.Errorf("%s: %d lines on the terminal, of %d jobs of which %d not done:\n%s", session, shown, total, notDone, all[max(0, len(all)-2000):])
		}
		if bars.MatchString(all) {
			t.Errorf("%s: a bar is left in the scrollback", session)
		}
		tmux("kill-session", "-t", session)
	}
	proctest.AssertNoProcessRuns(t, binary)
}
