package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
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
	root := sparseTree(t, 1, 1<<30) // a second or so to hash
	jobBar := regexp.MustCompile(`(?m)^digest +\d+/\d+\+? files +\[[=>-]+\] .*/s ETA `)
	coreBar := regexp.MustCompile(`(?m)^cpu0 +\[[=>-]+\] +\d+%$`)

	for _, interrupt := range []bool{false, true} {
		session := fmt.Sprintf("interrupt-%v", interrupt)
		sums := filepath.Join(t.TempDir(), "sums")
		term := startTmux(t, "", 120, fmt.Sprintf("%s -j 2 digest %s > %s; echo EXITED $?; sleep 600", binary, root, sums))
		tmux, screen := term.run, term.screen
		s := screen(func(s string) bool { return jobBar.MatchString(s) && coreBar.MatchString(s) })
		if strings.Contains(s, "EXITED") {
			t.Fatalf("%s: bars drawn after the exit:\n%s", session, s)
		}
		if interrupt {
			tmux("send-keys", "-t", "s", "C-c")
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
	}
	proctest.AssertNoProcessRuns(t, binary)
}

// tmuxTerm is a terminal: a tmux server of its own (one whose last session ends exits, and
// a session started meanwhile failed with "server exited unexpectedly"), with one session.
type tmuxTerm struct {
	t              *testing.T
	socket, config string
}

// startTmux starts command in a terminal of width columns and 20 rows, tmux configured by
// config (if not empty); the server is killed at the end of the test.
func startTmux(t *testing.T, config string, width int, command string) *tmuxTerm {
	t.Helper()
	term := &tmuxTerm{t: t, socket: fmt.Sprintf("supervise-test-%d-%d", os.Getpid(), time.Now().UnixNano())}
	if config != "" {
		term.config = filepath.Join(t.TempDir(), "tmux.conf")
		must(t, os.WriteFile(term.config, []byte(config), 0o644))
	}
	t.Cleanup(func() { _ = exec.Command("tmux", "-L", term.socket, "kill-server").Run() })
	term.run("new-session", "-d", "-s", "s", "-x", strconv.Itoa(width), "-y", "20", command)
	return term
}

func (term *tmuxTerm) run(args ...string) string {
	term.t.Helper()
	pre := []string{"-L", term.socket}
	if term.config != "" {
		pre = append(pre, "-f", term.config)
	}
	out, err := exec.Command("tmux", append(pre, args...)...).CombinedOutput()
	if err != nil {
		term.t.Fatalf("tmux %v: %v: %s", args, err, out)
	}
	return string(out)
}

// screen polls the screen until it shows what until awaits (nothing signals what another
// process drew), and returns it.
func (term *tmuxTerm) screen(until func(string) bool) string {
	term.t.Helper()
	var s string
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if s = term.run("capture-pane", "-p", "-t", "s"); until(s) {
			return s
		}
	}
	term.t.Fatalf("the screen never showed what was awaited:\n%s", s)
	return ""
}

// With stdout the same terminal as stderr, every result line shows, in order, and no bar is
// left, after finishing or after Ctrl-C: the lines go above the bars. Printed past them, run
// lost 3 of 100,000 lines under the bars' redraws and left stale bars in the scrollback.
func TestLiveViewKeepsEveryLine(t *testing.T) {
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("tmux is not installed (.ci/run installs it)")
	}
	// scroll-on-clear off: tmux, unlike a terminal, keeps in its history what an erase of
	// the whole screen clears, as the bars' redraw is while they are alone on it.
	const conf = "set -g history-limit 100000\nset -g scroll-on-clear off\n"
	bars := regexp.MustCompile(`exec +\d+/\d+\+? jobs|cpu0 +\[`)
	const n = 4000
	for _, interrupt := range []bool{false, true} {
		session := fmt.Sprintf("lines-%v", interrupt)
		// stty noflsh: on ^C the tty discards the output the terminal has not read yet
		// (POSIX, unless NOFLSH): on a loaded machine tmux reads late, and 29 lines that exec
		// had written before the interrupt never reached the screen.
		term := startTmux(t, conf, 100, fmt.Sprintf("stty noflsh; seq %d | %s -j 2 exec -k echo line; echo EXITED $?; sleep 600", n, binary))
		tmux, screen := term.run, term.screen
		screen(func(s string) bool { return bars.MatchString(s) || strings.Contains(s, "EXITED") })
		if interrupt {
			tmux("send-keys", "-t", "s", "C-c")
		}
		screen(func(s string) bool { return strings.Contains(s, "EXITED") })
		all := tmux("capture-pane", "-p", "-S", "-", "-E", "-", "-t", "s")
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
	}
	proctest.AssertNoProcessRuns(t, binary)
}

// A second Ctrl-C exits at once, and takes the live bars off the terminal first: they were
// left frozen there. The jobs ignore SIGTERM, so the first Ctrl-C leaves supervise stopping,
// for --stop-grace, when the second comes.
func TestSecondSignalLeavesNoBars(t *testing.T) {
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("tmux is not installed (.ci/run installs it)")
	}
	jobBar := regexp.MustCompile(`(?m)^exec +\d+/\d+\+? jobs`)
	coreBar := regexp.MustCompile(`(?m)^cpu0 +\[`)
	term := startTmux(t, "", 120, fmt.Sprintf(`%s -j 2 --stop-grace 30s exec -u sh -c 'echo job $$; trap "" TERM; sleep 20' _ ::: 1 2; echo EXITED $?; sleep 600`, binary))
	s := term.screen(func(s string) bool { return jobBar.MatchString(s) && strings.Count(s, "job ") == 2 })
	for _, m := range regexp.MustCompile(`job (\d+)`).FindAllStringSubmatch(s, -1) {
		pid, _ := strconv.Atoi(m[1])
		proctest.KillAtCleanup(t, pid) // the jobs outlive the hard exit by their sleep at most
	}
	term.run("send-keys", "-t", "s", "C-c")
	term.screen(func(s string) bool { return strings.Contains(s, "stopping (a second signal exits at once)") })
	term.run("send-keys", "-t", "s", "C-c")
	s = term.screen(func(s string) bool { return strings.Contains(s, "EXITED") })
	if jobBar.MatchString(s) || coreBar.MatchString(s) {
		t.Errorf("bars left on the screen after the second Ctrl-C:\n%s", s)
	}
	if !strings.Contains(s, "EXITED 130") || !strings.Contains(s, "again: exiting now") {
		t.Errorf("want the immediate exit, 130:\n%s", s)
	}
}

// exec's bar shows the total of jobs given after ::: (300, not the few submitted so far:
// "110/112+ jobs"), with no "+": the total is known.
func TestExecBarKnowsItsTotal(t *testing.T) {
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("tmux is not installed (.ci/run installs it)")
	}
	args := strings.TrimSpace(strings.Repeat("x ", 300))
	term := startTmux(t, "", 120, fmt.Sprintf(`%s -j 2 exec sh -c 'sleep 0.05' _ ::: %s; echo EXITED $?; sleep 600`, binary, args))
	term.screen(func(s string) bool { return regexp.MustCompile(`(?m)^exec +\d+/300 jobs +\[.* ETA `).MatchString(s) })
	term.run("send-keys", "-t", "s", "C-c")
	term.screen(func(s string) bool { return strings.Contains(s, "EXITED") })
}
