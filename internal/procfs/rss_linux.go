// Package procfs reads the few figures the pool samples from /proc.
package procfs

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
)

var pageSize = uint64(os.Getpagesize())

// TreeRSS returns the resident memory, in bytes, of process pid and all its descendants (the
// children listed in /proc/PID/task/*/children, recursively). A process that vanishes while
// being read counts as zero; an error is returned only if pid itself cannot be read.
func TreeRSS(pid int) (uint64, error) {
	rss, err := rssOf(pid)
	if err != nil {
		return 0, err
	}
	stack := children(pid)
	for len(stack) > 0 {
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if r, err := rssOf(p); err == nil {
			rss += r
		}
		stack = append(stack, children(p)...)
	}
	return rss, nil
}

// rssOf reads the resident pages of one process from /proc/PID/statm ("size resident ...").
func rssOf(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return 0, err
	}
	f := bytes.Fields(b)
	if len(f) < 2 {
		return 0, os.ErrInvalid
	}
	pages, err := strconv.ParseUint(string(f[1]), 10, 64)
	return pages * pageSize, err
}

// children lists the children of every thread of pid.
func children(pid int) []int {
	files, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/children")
	var out []int
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			continue
		}
		for _, f := range bytes.Fields(b) {
			if c, err := strconv.Atoi(string(f)); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}
