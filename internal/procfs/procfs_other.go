//go:build !linux

// Package procfs reads the few figures the pool samples from /proc.
package procfs

import (
	"errors"
	"time"
)

// TreeRSS is only implemented on Linux.
func TreeRSS(pid int) (uint64, error) { return 0, errors.ErrUnsupported }

// RSS is one process's resident memory: only known on Linux.
func RSS(int) (uint64, error) { return 0, errors.ErrUnsupported }

// Tree returns pid alone: descendants are only found on Linux.
func Tree(pid int) []int { return []int{pid} }

// CPU is only implemented on Linux.
func CPU(pid int) (own, reaped time.Duration, err error) { return 0, 0, errors.ErrUnsupported }

// Group is only implemented on Linux.
func Group(pgrp int) ([]int, error) { return nil, errors.ErrUnsupported }
