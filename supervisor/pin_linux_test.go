package supervisor_test

import "golang.org/x/sys/unix"

// pinToCPU keeps the calling OS thread on one CPU.
func pinToCPU(cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	return unix.SchedSetaffinity(0, &set)
}
