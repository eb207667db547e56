package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/opencontainers/cgroups"
)

// The kernel's memory limit on a worker: memory.max in the leaf on cgroup2 (the memory
// controller enabled down to the pool's cgroup); on the hybrid layout, the v1 memory
// controller's memory.limit_in_bytes in a v1 cgroup of the worker's own, which the worker
// joins right after it starts (v1 has no clone-time membership: what it allocates before
// that is charged to the parent's cgroup). Over the limit, the kernel reclaims what it can
// (page cache first), then its OOM killer kills a process of that cgroup, and of no other.

// memoryV1Root is where the hybrid layout mounts the v1 memory controller.
const memoryV1Root = "/sys/fs/cgroup/memory"

// enableMemory makes the memory controller available to the pool's leaves, and says where the
// limits will be written: "" and an error where it cannot.
func (p *Pool) enableMemory() (v1 string, err error) {
	if p.layout == "hybrid" {
		own, err := ownV1Group("memory")
		if err != nil {
			return "", err
		}
		dir := filepath.Join(memoryV1Root, own, filepath.Base(p.dir))
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return "", fmt.Errorf("making the pool's v1 memory cgroup: %w", err)
		}
		return dir, nil
	}
	// cgroup2: memory must be in the subtree_control of the pool's parent (this process's own
	// cgroup, which it cannot be while that holds processes, unless it is the root) and of
	// the pool's cgroup.
	for _, dir := range []string{filepath.Dir(p.dir), p.dir} {
		if err := cgroups.WriteFile(dir, "cgroup.subtree_control", "+memory"); err != nil {
			return "", fmt.Errorf("enabling the memory controller in %s: %w (a process in a cgroup of its own, or a delegated subtree, can)", dir, err)
		}
	}
	return "", nil
}

// ownV1Group is this process's cgroup in the v1 hierarchy of controller.
func ownV1Group(controller string) (string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	for line := range strings.Lines(string(b)) {
		f := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(f) == 3 && f[1] == controller {
			return f[2], nil
		}
	}
	return "", fmt.Errorf("no v1 %s controller in /proc/self/cgroup", controller)
}

// limitMemory sets the leaf's memory limit, swap included.
func (l *Leaf) limitMemory(max uint64, v1Pool string) error {
	limit := strconv.FormatUint(max, 10)
	if v1Pool == "" {
		if err := cgroups.WriteFile(l.dir, "memory.max", limit); err != nil {
			return err
		}
		_ = cgroups.WriteFile(l.dir, "memory.swap.max", "0") // absent without swap accounting
		return nil
	}
	l.memV1 = filepath.Join(v1Pool, filepath.Base(l.dir))
	if err := os.Mkdir(l.memV1, 0o755); err != nil {
		l.memV1 = ""
		return err
	}
	if err := cgroups.WriteFile(l.memV1, "memory.limit_in_bytes", limit); err != nil {
		return err
	}
	_ = cgroups.WriteFile(l.memV1, "memory.memsw.limit_in_bytes", limit) // absent without swap accounting
	return nil
}

// Join puts the started worker pid in the leaf's v1 cgroups (the hybrid layout's memory
// limit); on cgroup2 it is there since its clone.
func (l *Leaf) Join(pid int) error {
	if l == nil || l.memV1 == "" {
		return nil
	}
	return cgroups.WriteCgroupProc(l.memV1, pid)
}

// Memory is the leaf's peak memory use and how many times the kernel's OOM killer killed a
// process in it. Where the kernel enforces no limit for the leaf, both are zero.
func (l *Leaf) Memory() (peak uint64, oomKills int, err error) {
	dir, peakFile, eventsFile := l.dir, "memory.peak", "memory.events"
	switch {
	case l.memV1 != "":
		dir, peakFile, eventsFile = l.memV1, "memory.max_usage_in_bytes", "memory.oom_control"
	case !l.memory:
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
func (l *Leaf) MemoryLimited() bool { return l.memory || l.memV1 != "" }
