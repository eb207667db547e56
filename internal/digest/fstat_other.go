//go:build !linux

package digest

import "golang.org/x/sys/unix"

func fstat(fd int, st *unix.Stat_t) error { return unix.Fstat(fd, st) }
