//go:build !linux

// Package procfs reads the few figures the pool samples from /proc.
package procfs

import "errors"

// TreeRSS is only implemented on Linux.
func TreeRSS(pid int) (uint64, error) { return 0, errors.ErrUnsupported }
