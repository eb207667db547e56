package supervisor

import (
	"fmt"
	"sync"
	"time"

	"github.com/supervise-dev/supervise/internal/cgroup"
)

// Containment names how a pool keeps each worker's processes together, so that a kill reaches
// all of them (Stats.Containment):
//   - "cgroup2", "hybrid": each worker is cloned into a cgroup of its own in the kernel's v2
//     hierarchy (at /sys/fs/cgroup, or at /sys/fs/cgroup/unified beside v1 controllers), which
//     nothing it starts can leave, setsid'd and double-forked processes included. A kill ends
//     with cgroup.kill, and a worker is reported dead only once its cgroup is empty. A warden
//     process clears the pool's cgroups if the pool's process dies, even of SIGKILL.
//   - "process-group": no cgroup this process may write to (not Linux, no delegated
//     subtree, only cgroup v1, or SUPERVISE_CGROUP=off). Each worker leads a process group,
//     which the kill ladder signals; a process that calls setsid leaves it and escapes.
const (
	ContainCgroup2      = "cgroup2"
	ContainHybrid       = "hybrid"
	ContainProcessGroup = "process-group"
)

// containment is the pool's cgroup and its warden, if it has them.
type containment struct {
	kind   string
	cg     *cgroup.Pool
	limits cgroup.Limits // what the kernel enforces on each worker
	warden *cgroup.Warden
	once   sync.Once
}

// contain makes the pool's cgroup, readies the kernel's limits and starts its warden; where
// it cannot, the pool contains its workers by process group, and says so once. It fails only
// for limits that need cgroups (MaxProcs, CPULimit), naming what is missing.
func (p *Pool) contain() error {
	cfg := &p.cfg
	needed := cfg.MaxProcs > 0 || cfg.CPULimit > 0
	cg, err := cgroup.NewPool()
	if err != nil {
		p.containment.kind = ContainProcessGroup
		if needed {
			return fmt.Errorf("supervise: Config.MaxProcs and Config.CPULimit need cgroups, and this pool has none: %w", err)
		}
		p.log.Info("supervise: workers contained by process group only; a process that calls setsid escapes it",
			"why not cgroups", err.Error())
		return nil
	}
	p.containment.kind, p.containment.cg = cg.Layout(), cg
	lim := cgroup.Limits{Memory: cfg.MemoryHardLimit, Procs: cfg.MaxProcs, CPU: cfg.CPULimit}
	if err := cg.Enable(lim); err != nil && needed {
		return fmt.Errorf("supervise: Config.MaxProcs and Config.CPULimit need the kernel's pids and cpu controllers: %w", err)
	} else if err != nil { // the memory limit alone: sampled instead
		p.log.Info("supervise: MemoryHardLimit is enforced by sampling, not by the kernel", "why not", err.Error())
	} else {
		p.containment.limits = lim
	}
	var v1 []string
	for _, dir := range cg.V1() {
		v1 = append(v1, dir)
	}
	if w, err := cgroup.StartWarden(cg.Dir(), v1...); err != nil {
		p.log.Warn("supervise: no warden for the pool's cgroup: if this process is killed, what its workers started may outlive it",
			"cgroup", cg.Dir(), "err", err)
	} else {
		p.containment.warden = w
	}
	return nil
}

// leaf makes a worker's cgroup, or returns nil where the pool has none.
func (c *containment) leaf(id int) (*cgroup.Leaf, error) {
	if c.cg == nil {
		return nil, nil
	}
	return c.cg.Leaf(fmt.Sprintf("worker-%d", id))
}

// end removes the pool's cgroup, killing what is left in it, and stops the warden. Called once
// no worker is left.
func (p *Pool) endContainment() {
	c := &p.containment
	c.once.Do(func() {
		if c.cg != nil {
			if err := c.cg.Destroy(5 * time.Second); err != nil {
				p.log.Error("supervise: removing the pool's cgroup", "err", err)
			}
		}
		if c.warden != nil {
			if err := c.warden.Stop(); err != nil {
				p.log.Error("supervise: stopping the pool's cgroup warden", "err", err)
			}
		}
	})
}
