// Package cgroup contains a pool's workers in cgroups of the kernel's v2 hierarchy: one cgroup
// per pool under the parent's own, a leaf per worker, into which the worker is cloned
// (CLONE_INTO_CGROUP), so that nothing it forks, setsid'd or double-forked, can start
// outside; killing a leaf (cgroup.kill) kills every member, and is checked to have emptied it.
//
// The cgroup file system is handled by github.com/opencontainers/cgroups, runc's own (split
// out of libcontainer, kept by the runc maintainers): it detects the layouts,
// opens cgroup files safely (openat2, no crossing of mounts), removes a cgroup tree with the
// retries the kernel needs, and reads and sets the controllers' files. containerd's
// cgroups/v3 does the same and has cgroup.kill built in, but its v2 package links eBPF,
// D-Bus and systemd clients: the supervise binary grew from 27.97 MB to 31.70 MB with it, and
// to 28.36 MB with runc's, for one file write (cgroup.kill) that we do ourselves.
//
// Layouts (NewPool):
//   - "cgroup2": the v2 hierarchy at /sys/fs/cgroup (most current distributions);
//   - "hybrid": v1 controllers at /sys/fs/cgroup/*, and a v2 hierarchy with no controllers at
//     /sys/fs/cgroup/unified: membership and kill work as on cgroup2;
//   - "process-group": no writable v2 hierarchy (not Linux, no permission, no delegation,
//     a v1-only system, or SUPERVISE_CGROUP=off): the pool contains workers by process
//     group, as before.
package cgroup
