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
	socket := fmt.Sprintf("supervise-test-%d", os.Getpid()) // a tmux server of this test's own
	tmux := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("tmux", append([]string{"-L", socket}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %v: %v: %s", args, err, out)
		}
		return string(out)
	}
	t.Cleanup(func() { _ = exec.Command("tmux", "-L", socket, "kill-server").Run() })
	root := sparseTree(t, 1, 1<<30) // a second or so to hash
	jobBar := regexp.MustCompile(`(?m)^digest +\d+/\d+\+? files +\[[=>-]+\] .*/s ETA `)
	coreBar := regexp.MustCompile(`(?m)^cpu0 +\[[=>-]+\] +\d+%$`)

	for _, interrupt := range []bool{false, true} {
		session := fmt.Sprintf("interrupt-%v", interrupt)
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
