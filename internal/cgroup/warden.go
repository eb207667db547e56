package cgroup

import (
	"fmt"
	"os"
	"os/exec"
)

// wardenScript is the warden: a shell, so that it costs a millisecond to start (the pool's own
// binary, re-executed, cost 20 ms here) and needs nothing of the program. It ignores the
// signals a terminal or a dying parent sends, reads its stdin, a pipe from the pool that
// nothing is written to, until it ends (the pool closed it, or its process died, even of
// SIGKILL), then kills whatever is left in the pool's cgroup (cgroup.kill is recursive),
// waits up to 10 s for it to empty, and removes it. $0 is the pool's cgroup directory; the
// other arguments its cgroups in v1 hierarchies (hybrid layout), removed too.
const wardenScript = `trap '' INT TERM HUP QUIT
cat >/dev/null
[ -d "$0" ] || exit 0
echo 1 >"$0/cgroup.kill" 2>/dev/null
i=0
while grep -q 'populated 1' "$0/cgroup.events" 2>/dev/null; do
  i=$((i + 1))
  if [ $i -gt 1000 ]; then echo "supervise warden: cgroup $0 still holds processes after cgroup.kill" >&2; exit 1; fi
  sleep 0.01
done
for leaf in "$0"/*/; do [ -d "$leaf" ] && rmdir "$leaf" 2>/dev/null; done
rmdir "$0" 2>/dev/null
for d in "$@"; do
  for leaf in "$d"/*/; do [ -d "$leaf" ] && rmdir "$leaf" 2>/dev/null; done
  rmdir "$d" 2>/dev/null
done
# (another pool's sweep may have removed them first: only what is left is an error)
if [ -d "$0" ]; then echo "supervise warden: cannot remove cgroup $0" >&2; exit 1; fi
`

// Warden is a started warden of a pool's cgroup.
type Warden struct {
	cmd  *exec.Cmd
	pipe *os.File
}

// StartWarden starts the warden of the pool cgroup dir (and of its cgroups in v1 hierarchies):
// a process, outside the cgroup, that kills and removes it once the pool stops it or the
// pool's process dies.
func StartWarden(dir string, v1 ...string) (*Warden, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	cmd := exec.Command("/bin/sh", append([]string{"-c", wardenScript, dir}, v1...)...)
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
