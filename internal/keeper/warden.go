//go:build unix

package keeper

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/supervise-dev/supervise/internal/cgroup"
)

// WardenKey is the environment variable that makes child.Main the warden of the pool cgroup
// it names.
//
// A pool whose workers are in cgroups starts one warden: the pool's own executable
// re-executed, outside the pool's cgroup, reading a pipe from the pool that nothing is ever
// written to. When the pipe ends, because the pool was closed or because its process died
// (even of SIGKILL, when nothing of the pool's own code runs), the warden kills whatever is
// left in the pool's cgroup (cgroup.kill, which reaches setsid'd and double-forked processes
// too), waits until it is empty and removes it. It ignores the signals a terminal or a dying
// parent sends (SIGINT, SIGTERM, SIGHUP, SIGQUIT): it ends when its work is done.
const WardenKey = "SUPERVISE_WARDEN"

// WardenRequested reports whether this process was started to be a warden.
func WardenRequested() bool { return os.Getenv(WardenKey) != "" }

// Ward is the warden's work; it returns the exit status.
func Ward() int {
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	dir := os.Getenv(WardenKey)
	_, _ = io.Copy(io.Discard, os.Stdin) // until the pool closes it, or dies
	if err := cgroup.DestroyDir(dir, 10*time.Second); err != nil {
		fmt.Fprintln(os.Stderr, "supervise warden:", err)
		return 1
	}
	return 0
}

// Warden is a started warden.
type Warden struct {
	cmd  *exec.Cmd
	pipe *os.File
}

// StartWarden starts a warden for the pool cgroup dir. It needs this program to call
// child.Main (Available).
func StartWarden(dir string) (*Warden, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), WardenKey+"="+dir)
	cmd.Stdin, cmd.Stderr = r, os.Stderr
	if err := cmd.Start(); err != nil {
		w.Close()
		return nil, err
	}
	return &Warden{cmd: cmd, pipe: w}, nil
}

// Stop tells the warden the pool is done and waits for it to clean up and exit.
func (w *Warden) Stop() error {
	w.pipe.Close()
	if err := w.cmd.Wait(); err != nil {
		return fmt.Errorf("the pool's cgroup warden (pid %d): %w", w.cmd.Process.Pid, err)
	}
	return nil
}
