package cgroup

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/fs2"
	"golang.org/x/sys/unix"
)

// Off is the environment variable that turns cgroups off (SUPERVISE_CGROUP=off): the pool then
// contains its workers by process group alone.
const Off = "SUPERVISE_CGROUP"

var pools atomic.Int64

// NewPool makes a cgroup for a pool of this process under the process's own cgroup in the v2
// hierarchy. It fails, saying why, where there is none this process may write to.
func NewPool() (*Pool, error) {
	if os.Getenv(Off) == "off" {
		return nil, fmt.Errorf("turned off (%s=off)", Off)
	}
	layout, mount, err := hierarchy()
	if err != nil {
		return nil, err
	}
	own, err := ownGroup("")
	if err != nil {
		return nil, err
	}
	// Moving a process between cgroups (here: cloning it into a leaf) needs write access to
	// cgroup.procs of the common ancestor, this process's own cgroup.
	if err := unix.Access(filepath.Join(mount, own, "cgroup.procs"), unix.W_OK); err != nil {
		return nil, fmt.Errorf("cannot move processes in this process's cgroup %s: %w", own, err)
	}
	sweep(filepath.Join(mount, own), false)
	for _, c := range []string{"memory", "pids", "cpu"} {
		if v1, err := ownGroup(c); err == nil {
			sweep(filepath.Join(v1Root(c), v1), true)
		}
	}
	var group, dir string
	for {
		group = filepath.Join(own, fmt.Sprintf("supervise-%d-%d", os.Getpid(), pools.Add(1)))
		dir = filepath.Join(mount, group)
		err := os.Mkdir(dir, 0o755)
		if err == nil {
			break
		}
		if !errors.Is(err, os.ErrExist) { // exists: left by a process that had our pid
			return nil, fmt.Errorf("making the pool's cgroup: %w", err)
		}
	}
	return &Pool{mgr: manager(dir), dir: dir, layout: layout}, nil
}

// hierarchy is where the v2 hierarchy is mounted, and the layout that says.
func hierarchy() (layout, mount string, err error) {
	switch {
	case cgroups.IsCgroup2UnifiedMode():
		return "cgroup2", "/sys/fs/cgroup", nil
	case cgroups.IsCgroup2HybridMode():
		return "hybrid", "/sys/fs/cgroup/unified", nil
	}
	return "", "", errors.New("no cgroup v2 hierarchy is mounted (cgroup.kill and clone-time membership need one)")
}

// manager is runc's manager of the v2 cgroup at dir.
func manager(dir string) *fs2.Manager {
	m, _ := fs2.NewManager(&cgroups.Cgroup{Resources: &cgroups.Resources{}}, dir) // fails only without a dir
	return m
}

// sweep clears away the pool cgroups in parent left by processes that are gone without
// removing them, and whose warden did not either (killed with them, say): what still runs in
// them is what the warden would have killed. A dead process's own leaf (leaveOwnGroup) is
// removed if empty: what runs there was started by it, outside its pools, and is not ours
// to kill. A cgroup whose process id is alive is left
// alone, whoever has that id now. v1 says parent is in a v1 hierarchy: the processes of a
// cgroup there were in its v2 twin, killed there.
func sweep(parent string, v1 bool) {
	entries, _ := os.ReadDir(parent)
	for _, e := range entries {
		if pid, ok := strings.CutPrefix(e.Name(), "supervise-parent-"); ok && !v1 {
			if n, err := strconv.Atoi(pid); err == nil && unix.Kill(n, 0) == unix.ESRCH {
				_ = os.Remove(filepath.Join(parent, e.Name())) // fails while anything is in it
			}
			continue
		}
		rest, ok := strings.CutPrefix(e.Name(), "supervise-")
		pid, _, ok2 := strings.Cut(rest, "-")
		n, err := strconv.Atoi(pid)
		if !ok || !ok2 || err != nil || !e.IsDir() || unix.Kill(n, 0) != unix.ESRCH {
			continue
		}
		if dir := filepath.Join(parent, e.Name()); v1 {
			_ = cgroups.RemovePath(dir)
		} else {
			_ = DestroyDir(dir, time.Second)
		}
	}
}

// ownGroup is this process's cgroup in the hierarchy of a v1 controller, or with controller
// "" in the v2 hierarchy ("0::/path" in /proc/self/cgroup).
func ownGroup(controller string) (string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	for line := range strings.Lines(string(b)) {
		f := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(f) == 3 && (controller == "" && f[0] == "0" && f[1] == "" ||
			controller != "" && slices.Contains(strings.Split(f[1], ","), controller)) {
			return f[2], nil
		}
	}
	if controller == "" {
		return "", errors.New("this process is in no cgroup of the v2 hierarchy (/proc/self/cgroup)")
	}
	return "", fmt.Errorf("no v1 %s controller in /proc/self/cgroup", controller)
}

// Pool is a pool's cgroup: a directory holding a leaf per worker.
type Pool struct {
	mgr    *fs2.Manager
	dir    string
	layout string

	limits Limits            // what Enable readied its leaves for
	v1     map[string]string // on the hybrid layout, its cgroups in the v1 hierarchies
}

// Layout is "cgroup2" or "hybrid" (see the package doc).
func (p *Pool) Layout() string { return p.layout }

// Dir is the pool's cgroup directory.
func (p *Pool) Dir() string { return p.dir }

// Leaf makes the cgroup of one worker, with the limits Enable readied.
func (p *Pool) Leaf(name string) (*Leaf, error) {
	dir := filepath.Join(p.dir, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("making a worker's cgroup: %w", err)
	}
	l := &Leaf{mgr: manager(dir), dir: dir}
	if err := l.limit(p.limits, p.v1); err != nil {
		_ = l.Destroy(0)
		return nil, fmt.Errorf("setting the limits of %s: %w", dir, err)
	}
	return l, nil
}

// Destroy kills every process left in the pool's cgroup, waits until it is empty (at most
// timeout) and removes it.
func (p *Pool) Destroy(timeout time.Duration) error {
	return removeV1(destroy(p.mgr, p.dir, timeout, nil), p.v1)
}

// Leaf is one worker's cgroup.
type Leaf struct {
	mgr    *fs2.Manager
	dir    string
	limits Limits            // what the kernel enforces on it
	v1     map[string]string // its cgroups in the v1 hierarchies (hybrid), by controller
}

// Dir is the leaf's directory.
func (l *Leaf) Dir() string { return l.dir }

// Open opens the leaf's directory, for SysProcAttr.CgroupFD: the worker is cloned into it.
// The caller closes the file once the worker is started.
func (l *Leaf) Open() (*os.File, error) {
	return os.OpenFile(l.dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
}

// Kill kills every process in the leaf at once (cgroup.kill). A leaf already removed has
// nothing to kill.
func (l *Leaf) Kill() error { return kill(l.mgr, l.dir) }

// kill writes cgroup.kill, or on kernels before 5.14, which lack it, freezes the cgroup,
// signals each member and thaws it (runc's way).
func kill(mgr *fs2.Manager, dir string) error {
	err := cgroups.WriteFile(dir, "cgroup.kill", "1")
	switch {
	case err == nil, errors.Is(err, unix.ENODEV): // ENODEV: being removed
		return nil
	case errors.Is(err, os.ErrNotExist):
		if _, statErr := os.Stat(dir); statErr != nil {
			return nil // removed
		}
		return killFrozen(mgr)
	}
	return fmt.Errorf("killing cgroup %s: %w", dir, err)
}

func killFrozen(mgr *fs2.Manager) error {
	if err := mgr.Freeze(cgroups.Frozen); err != nil {
		return err
	}
	defer func() { _ = mgr.Freeze(cgroups.Thawed) }()
	pids, err := mgr.GetAllPids()
	for _, pid := range pids {
		_ = unix.Kill(pid, unix.SIGKILL)
	}
	return err
}

// Destroy kills every process in the leaf, waits until it is empty (at most timeout) and
// removes it. The error names what is left if the kill did not reach everything in time.
func (l *Leaf) Destroy(timeout time.Duration) error { return l.retire(timeout, nil) }

// Usage is what a leaf's processes used in all.
type Usage struct {
	CPU      time.Duration
	Peak     uint64 // memory, where the kernel limits it (Leaf.Memory)
	OOMKills int    // processes the kernel's OOM killer killed for the leaf's memory limit
}

// Retire is Destroy, and reports what the leaf's processes used, read once the last one is
// gone.
func (l *Leaf) Retire(timeout time.Duration) (u Usage, err error) {
	err = l.retire(timeout, func() {
		u.CPU, _ = l.CPU()
		u.Peak, u.OOMKills, _ = l.Memory()
	})
	return u, err
}

func (l *Leaf) retire(timeout time.Duration, emptied func()) error {
	return removeV1(destroy(l.mgr, l.dir, timeout, emptied), l.v1)
}

// removeV1 removes the v1 twins of a v2 cgroup that destroy emptied (err nil): their
// processes were those of the v2 cgroup, gone.
func removeV1(err error, dirs map[string]string) error {
	for _, dir := range dirs {
		if err == nil {
			err = cgroups.RemovePath(dir)
		}
	}
	return err
}

// Procs lists the processes in the leaf.
func (l *Leaf) Procs() ([]int, error) {
	return l.mgr.GetAllPids()
}

// CPU is the CPU time used by every process that ever ran in the leaf (cpu.stat's usage_usec,
// kept by the kernel without any controller).
func (l *Leaf) CPU() (time.Duration, error) {
	b, err := cgroups.ReadFile(l.dir, "cpu.stat")
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(b) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "usage_usec "); ok {
			us, err := strconv.ParseInt(v, 10, 64)
			return time.Duration(us) * time.Microsecond, err
		}
	}
	return 0, errors.New("no usage_usec in cpu.stat")
}

// destroy kills what is in the cgroup dir, waits until it is empty, calls emptied (if not nil)
// and removes it.
func destroy(mgr *fs2.Manager, dir string, timeout time.Duration, emptied func()) error {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	killErr := kill(mgr, dir)
	deadline := time.Now().Add(timeout)
	for wait := time.Millisecond; populated(dir); wait = min(2*wait, 20*time.Millisecond) {
		if time.Now().After(deadline) {
			procs, _ := mgr.GetAllPids()
			return fmt.Errorf("cgroup %s still holds processes %v %v after cgroup.kill (%v)", dir, procs, timeout, killErr)
		}
		time.Sleep(wait)
	}
	if emptied != nil {
		emptied()
	}
	// RemovePath removes child cgroups first, and retries while the kernel is still tearing
	// a dying process down (EBUSY).
	return cgroups.RemovePath(dir)
}

// populated reads cgroup.events: whether any process is in dir or below.
func populated(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.events"))
	if err != nil {
		return false // gone
	}
	return bytes.Contains(b, []byte("populated 1"))
}

// DestroyDir is Pool.Destroy for a pool cgroup known by its directory (the warden's).
func DestroyDir(dir string, timeout time.Duration) error {
	_, mount, err := hierarchy()
	if err != nil {
		return err
	}
	if !strings.HasPrefix(dir, mount+"/") {
		return fmt.Errorf("%s is not in the cgroup v2 hierarchy at %s", dir, mount)
	}
	return destroy(manager(dir), dir, timeout, nil)
}

// Usable says why this process cannot contain workers in cgroups (nil: it can), by making a
// pool cgroup and removing it.
func Usable() error {
	p, err := NewPool()
	if err != nil {
		return err
	}
	return p.Destroy(time.Second)
}
