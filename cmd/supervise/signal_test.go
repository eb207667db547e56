package main

import (
	"bufio"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/supervise-dev/supervise/internal/proctest"
)

// bigSparseTree holds files that take a while to hash (sparse: nothing is written to disk).
func bigSparseTree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for i := range 8 {
		f, err := os.Create(filepath.Join(dir, "f"+strconv.Itoa(i)))
		must(t, err)
		must(t, f.Truncate(1<<30))
		f.Close()
	}
	return dir
}

// A first SIGINT or SIGTERM stops digest cleanly: it says what was left undone, exits with
// 128+signal, and leaves no worker behind.
func TestInterruptStopsCleanly(t *testing.T) {
	dir := bigSparseTree(t)
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
