package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/opencontainers/cgroups"
	"golang.org/x/sys/unix"
)

// Limits the kernel enforces on a worker, written to its leaf (cgroup2, with the controllers
// enabled down to the pool's cgroup), or on the hybrid layout to v1 cgroups of the worker's
// own, one per controller, which the worker joins right after it starts (v1 has no clone-time
// membership: what it does before that is charged to the parent's cgroups).
type Limits struct {
	Memory uint64  // bytes: over it the OOM killer kills a process of this cgroup (memory.max)
	Procs  int     // processes and threads at most: fork fails past it (pids.max)
	CPU    float64 // cores' worth of CPU time per period (cpu.max): 0.5 is half a core
}

// controllers are the controllers the limits need.
func (l Limits) controllers() []string {
	var c []string
	if l.Memory > 0 {
		c = append(c, "memory")
	}
	if l.Procs > 0 {
		c = append(c, "pids")
	}
	if l.CPU > 0 {
		c = append(c, "cpu")
	}
	return c
}

// v1Root is where the hybrid layout mounts a v1 controller's hierarchy.
func v1Root(controller string) string { return filepath.Join("/sys/fs/cgroup", controller) }

// Enable readies the pool for lim on its leaves (Leaf), and says what is missing where it
// cannot be. Call it once, before the first leaf.
func (p *Pool) Enable(lim Limits) error {
	ctrls := lim.controllers()
	if p.layout == "hybrid" {
		v1 := map[string]string{}
		for _, c := range ctrls {
			own, err := ownGroup(c)
			if err != nil {
				return err
			}
			dir := filepath.Join(v1Root(c), own, filepath.Base(p.dir))
			if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
				return fmt.Errorf("making the pool's v1 %s cgroup: %w", c, err)
			}
			v1[c] = dir
		}
		p.limits, p.v1 = lim, v1
		return nil
	}
	if err := p.enableV2(ctrls); err != nil {
		return err
	}
	p.limits = lim
	return nil
}

// enableV2 enables the controllers in the subtree_control of the pool's parent (this
// process's own cgroup) and of the pool's cgroup.
func (p *Pool) enableV2(ctrls []string) error {
	for _, c := range ctrls {
		for _, dir := range []string{filepath.Dir(p.dir), p.dir} {
			err := enableController(dir, c)
			if errors.Is(err, unix.EBUSY) && dir != p.dir {
				err = p.leaveOwnGroup(c)
			}
			if err != nil {
				return fmt.Errorf("enabling the %s controller in %s: %w", c, dir, err)
			}
		}
	}
	return nil
}

func enableController(dir, c string) error {
	return cgroups.WriteFile(dir, "cgroup.subtree_control", "+"+c)
}

// leaveOwnGroup enables controller c in this process's own cgroup, which the kernel refuses
// (EBUSY) while processes are in it, the root cgroup apart: cgroup v2 lets a cgroup with
// controllers for its children hold no processes. So this process moves into a leaf of its
// own, supervise-parent-PID, a sibling of its pools, as systemd's Delegate= asks of a
// process that manages its subtree. Where other processes share the cgroup (a shell started
// in the same scope), it moves back and says so.
func (p *Pool) leaveOwnGroup(c string) error {
	own := filepath.Dir(p.dir)
	leaf := filepath.Join(own, fmt.Sprintf("supervise-parent-%d", os.Getpid()))
	if err := os.Mkdir(leaf, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	if err := cgroups.WriteCgroupProc(leaf, os.Getpid()); err != nil {
		return fmt.Errorf("moving this process into %s: %w", leaf, err)
	}
	err := enableController(own, c)
	if errors.Is(err, unix.EBUSY) {
		_ = cgroups.WriteCgroupProc(own, os.Getpid())
		_ = os.Remove(leaf)
		procs, _ := cgroups.GetPids(own)
		others := slices.DeleteFunc(procs, func(pid int) bool { return pid == os.Getpid() })
		return fmt.Errorf("%w: other processes share this process's cgroup (%d of them); "+
			"start the command in a cgroup of its own, e.g. systemd-run --user --scope -p Delegate=yes", err, len(others))
	}
	return err
}

// V1 is the pool's cgroups in the v1 hierarchies (hybrid layout), by controller.
func (p *Pool) V1() map[string]string { return p.v1 }

// cpuPeriod is the period of a CPU limit, in microseconds (the kernel's default).
const cpuPeriod = 100000

// limit writes the pool's limits for the leaf.
func (l *Leaf) limit(lim Limits, v1Pool map[string]string) error {
	type setting struct{ controller, v2, v1, value string }
	var set []setting
	if lim.Memory > 0 {
		m := strconv.FormatUint(lim.Memory, 10)
		set = append(set, setting{"memory", "memory.max", "memory.limit_in_bytes", m},
			// No swap to evade it: none on v2; on v1, memory and swap together (memsw).
			setting{"memory", "memory.swap.max", "", "0"}, setting{"memory", "", "memory.memsw.limit_in_bytes", m})
	}
	if lim.Procs > 0 {
		set = append(set, setting{"pids", "pids.max", "pids.max", strconv.Itoa(lim.Procs)})
	}
	if lim.CPU > 0 {
		quota := strconv.Itoa(max(1000, int(lim.CPU*cpuPeriod)))
		set = append(set, setting{"cpu", "cpu.max", "cpu.cfs_period_us", quota + " " + strconv.Itoa(cpuPeriod)},
			setting{"cpu", "", "cpu.cfs_quota_us", quota})
	}
	for _, s := range set {
		dir, file, value := l.dir, s.v2, s.value
		if v1Pool != nil {
			dir, file = l.v1Dir(s.controller, v1Pool), s.v1
			if s.v1 == "cpu.cfs_period_us" {
				value = strconv.Itoa(cpuPeriod)
			}
		}
		if dir == "" || file == "" {
			continue
		}
		if err := cgroups.WriteFile(dir, file, value); err != nil {
			if strings.Contains(file, "sw") { // swap accounting is off: nothing to evade with
				continue
			}
			return fmt.Errorf("%s: %w", file, err)
		}
	}
	l.limits = lim
	return nil
}

// v1Dir makes (once) and returns the leaf's v1 cgroup of controller.
func (l *Leaf) v1Dir(controller string, v1Pool map[string]string) string {
	if l.v1 == nil {
		l.v1 = map[string]string{}
	}
	if d, ok := l.v1[controller]; ok {
		return d
	}
	d := filepath.Join(v1Pool[controller], filepath.Base(l.dir))
	if err := os.Mkdir(d, 0o755); err != nil {
		return ""
	}
	l.v1[controller] = d
	return d
}

// Join puts the started worker pid in the leaf's v1 cgroups (the hybrid layout's limits); on
// cgroup2 it is in its leaf since its clone.
func (l *Leaf) Join(pid int) error {
	if l == nil {
		return nil
	}
	for c, dir := range l.v1 {
		if err := cgroups.WriteCgroupProc(dir, pid); err != nil {
			return fmt.Errorf("joining its v1 %s cgroup: %w", c, err)
		}
	}
	return nil
}

// Memory is the leaf's peak memory use and how many times the kernel's OOM killer killed a
// process in it. Where the kernel enforces no memory limit on the leaf, both are zero.
func (l *Leaf) Memory() (peak uint64, oomKills int, err error) {
	dir, peakFile, eventsFile := l.dir, "memory.peak", "memory.events"
	switch {
	case l.v1["memory"] != "":
		dir, peakFile, eventsFile = l.v1["memory"], "memory.max_usage_in_bytes", "memory.oom_control"
	case l.limits.Memory == 0:
		return 0, 0, nil
	}
	s, err := cgroups.ReadFile(dir, peakFile)
	if err != nil {
		return 0, 0, err
	}
	if peak, err = strconv.ParseUint(strings.TrimSpace(s), 10, 64); err != nil {
		return 0, 0, err
	}
	if s, err = cgroups.ReadFile(dir, eventsFile); err != nil {
		return peak, 0, err
	}
	for line := range strings.Lines(s) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "oom_kill "); ok {
			oomKills, err = strconv.Atoi(v)
		}
	}
	return peak, oomKills, err
}

// MemoryLimited reports whether the kernel enforces a memory limit on the leaf.
func (l *Leaf) MemoryLimited() bool { return l.limits.Memory > 0 }
