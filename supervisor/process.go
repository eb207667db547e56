package supervisor

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/supervise-dev/supervise/channel"
	"github.com/supervise-dev/supervise/internal/handshake"
	"github.com/supervise-dev/supervise/internal/keeper"
)

// spawn starts the worker's process, Config.Command with env added to the pool's environment,
// with pipes for stdout and stderr (and stdin, if withStdin; else it reads /dev/null), as the
// leader of its own process group. It starts wait and the stderr forwarder.
func (w *worker) spawn(env []string, withStdin bool) error {
	var child [3]*os.File // the worker's ends: stdin, stdout, stderr
	for i, parent := range []**os.File{&w.stdin, &w.stdout, &w.stderr} {
		if i == 0 && !withStdin {
			continue
		}
		r, wr, err := os.Pipe()
		if err != nil {
			closeAll(child[:]...)
			closeAll(w.stdin, w.stdout, w.stderr)
			return err
		}
		if i == 0 {
			child[i], *parent = r, wr
		} else {
			child[i], *parent = wr, r
		}
	}
	if withStdin {
		growPipe(w.stdin, 1<<20)
	}
	growPipe(w.stdout, 1<<20)

	cfg := &w.p.cfg
	argv := cfg.Command
	if cfg.Plugin != nil && keeper.Available() {
		// A plugin does not take its group down when we die: a keeper between us does.
		if self, err := os.Executable(); err == nil {
			argv = append([]string{self}, cfg.Command...)
			env = append(env, keeper.Key+"=1", fmt.Sprintf("%s=%d", handshake.StopGraceKey, cfg.StopGrace.Milliseconds()))
		}
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	var pageFile *os.File
	if withStdin { // a nil *os.File in an io.Reader is not a nil Reader
		cmd.Stdin = child[0]
		if channel.LittleEndian { // a frames worker that runs chunks records them there
			var pageEnv []string
			var err error
			if pageFile, w.page, pageEnv, err = newProgressPage(channel.DefaultProgressSize); err == nil {
				cmd.ExtraFiles = []*os.File{pageFile}
				env = append(env, pageEnv...)
			} else {
				w.p.log.Warn("supervise: no progress page for a worker: it gets no chunk calls", "err", err)
			}
		}
	}
	cmd.Stdout, cmd.Stderr = child[1], child[2]
	cmd.Dir = cfg.Dir
	cmd.Env = append(append(os.Environ(), cfg.Env...), env...)
	cmd.SysProcAttr = sysProcAttr()
	leafDir, err := w.cloneIntoLeaf(cmd.SysProcAttr)
	if err == nil {
		err = w.p.spawner.start(cmd)
	}
	closeAll(child[:]...)
	closeAll(leafDir, pageFile)
	if err != nil {
		closeAll(w.stdin, w.stdout, w.stderr)
		unmapProgressPage(w.page)
		w.page = nil
		if w.leaf != nil {
			_ = w.leaf.Destroy(time.Second)
		}
		return err
	}
	w.cmd, w.pid, w.started = cmd, cmd.Process.Pid, w.p.clock.now()
	if err := w.leaf.Join(w.pid); err != nil { // nil leaf: nothing to join
		// The hybrid layout's memory limit is a v1 cgroup's, joined now, not at the clone.
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		closeAll(w.stdin, w.stdout, w.stderr)
		unmapProgressPage(w.page)
		w.page = nil
		_ = w.leaf.Destroy(time.Second)
		return fmt.Errorf("putting the worker in its memory cgroup: %w", err)
	}
	w.log = w.p.log.With("worker", w.id, "pid", w.pid)
	go w.wait()
	go func() {
		defer close(w.stderrDone)
		forwardStderr(w.stderr, w.log, &w.tail)
	}()
	return nil
}

// abort kills a worker that failed to start and waits until it is reaped; e gets its exit
// status and the tail of its stderr.
func (w *worker) abort(e *StartError) *StartError {
	w.kill(syscall.SIGKILL)
	<-w.waited
	<-w.stderrDone
	closeAll(w.stdin, w.stdout, w.stderr)
	unmapProgressPage(w.page)
	w.page = nil
	e.State, e.Stderr = w.state, w.tail.String()
	return e
}

func closeAll(files ...*os.File) {
	for _, f := range files {
		if f != nil {
			f.Close()
		}
	}
}

// kill sends sig to the worker's process group, and to the worker itself through its pidfd
// (os.Process uses one on Linux, so a reused pid is never hit): a worker that left its group
// (setpgid) is still reached.
func (w *worker) kill(sig syscall.Signal) {
	killGroup(w.pid, sig)
	if sig == syscall.SIGKILL && w.leaf != nil {
		_ = w.leaf.Kill() // everything in its cgroup, setsid'd processes included
	}
	if w.cmd != nil && w.cmd.Process != nil {
		_ = w.cmd.Process.Signal(sig) // "process already finished" once reaped
	}
}

// wait reaps the process (the only cmd.Wait), then clears away the rest of its group and
// bounds how long the pipe readers may still block.
func (w *worker) wait() {
	_ = w.cmd.Wait()
	w.state = w.cmd.ProcessState
	killGroup(w.pid, syscall.SIGKILL) // nothing of the group outlives its leader (reaped: no pid to signal)
	if w.leaf != nil {                // nor of its cgroup: killed, checked empty, removed
		use, err := w.leaf.Retire(5 * time.Second)
		if err != nil {
			w.log.Error("supervise: clearing a worker's cgroup", "err", err)
		}
		w.leafUse = use // every process it held, escaped ones included (read by run, workerExited)
	}
	deadline := time.Now().Add(time.Second)
	_ = w.stdout.SetReadDeadline(deadline)
	_ = w.stderr.SetReadDeadline(deadline)
	close(w.waited)
}

// cloneIntoLeaf makes the worker's cgroup, if the pool has cgroups, and sets attr so that the
// worker is cloned into it: it runs no code outside. The caller closes the directory returned
// once the worker is started.
func (w *worker) cloneIntoLeaf(attr *syscall.SysProcAttr) (*os.File, error) {
	leaf, err := w.p.containment.leaf(w.id)
	if leaf == nil || err != nil {
		return nil, err
	}
	dir, err := leaf.Open()
	if err != nil {
		_ = leaf.Destroy(time.Second)
		return nil, fmt.Errorf("opening the worker's cgroup: %w", err)
	}
	w.leaf = leaf
	cloneInto(attr, int(dir.Fd()))
	return dir, nil
}
