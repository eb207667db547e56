//go:build !linux

package main

import "golang.org/x/sys/unix"

func fstat(fd int, st *unix.Stat_t) error { return unix.Fstat(fd, st) }
