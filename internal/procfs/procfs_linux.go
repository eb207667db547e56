// Package procfs reads the few figures the pool samples from /proc.
package procfs

import (
	"bytes"
	"os"
	"strconv"
	"time"
)

var pageSize = uint64(os.Getpagesize())

// TreeRSS returns the resident memory, in bytes, of process pid and all its descendants (see
// Tree). A process that vanishes while being read counts as zero; an error is returned only if
// pid itself cannot be read.
func TreeRSS(pid int) (uint64, error) {
	rss, err := rssOf(pid)
	if err != nil {
		return 0, err
	}
	for _, p := range Tree(pid)[1:] {
		if r, err := rssOf(p); err == nil {
			rss += r
		}
	}
	return rss, nil
}

// Tree returns pid followed by its descendants: the children listed in
// /proc/PID/task/*/children, recursively. A process that left its parent (reparented to init)
// is no longer among them.
func Tree(pid int) []int {
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, children(out[i])...)
	}
	return out
}

// clockTick is the unit of /proc's CPU times (USER_HZ, 100 on every Linux architecture).
const clockTick = 10 * time.Millisecond

// CPU returns the CPU time, user and system, that process pid has used itself, and that the
// children it has waited for used (and theirs: cutime and cstime in /proc/PID/stat).
func CPU(pid int) (own, reaped time.Duration, err error) {
	// utime, stime, cutime, cstime are fields 14 to 17, the 12th to the 15th after comm.
	f, err := stat(strconv.Itoa(pid))
	if err != nil {
		return 0, 0, err
	}
	if len(f) < 15 {
		return 0, 0, os.ErrInvalid
	}
	var ticks [4]uint64
	for j := range ticks {
		if ticks[j], err = strconv.ParseUint(string(f[11+j]), 10, 64); err != nil {
			return 0, 0, err
		}
	}
	return time.Duration(ticks[0]+ticks[1]) * clockTick, time.Duration(ticks[2]+ticks[3]) * clockTick, nil
}

// stat returns the fields of /proc/PID/stat after the command name: "pid (comm) state ppid
// pgrp ...", where comm may hold spaces and parentheses, so fields count from the last ')'.
func stat(pid string) ([][]byte, error) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, os.ErrInvalid
	}
	return bytes.Fields(b[i+1:]), nil
}

// Group lists the live processes (zombies are dead) of process group pgrp, leaving out the
// process whose pid is pgrp, its leader.
func Group(pgrp int) ([]int, error) {
	d, err := os.Open("/proc")
	if err != nil {
		return nil, err
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, err
	}
	want := []byte(strconv.Itoa(pgrp))
	var out []int
	for _, name := range names {
		pid, err := strconv.Atoi(name)
		if err != nil || pid == pgrp {
			continue
		}
		if f, err := stat(name); err == nil && len(f) >= 3 && string(f[0]) != "Z" && bytes.Equal(f[2], want) {
			out = append(out, pid)
		}
	}
	return out, nil
}

// rssOf reads the resident pages of one process from /proc/PID/statm ("size resident ...").
// RSS is one process's resident memory, in bytes.
func RSS(pid int) (uint64, error) { return rssOf(pid) }

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
	dir := "/proc/" + strconv.Itoa(pid) + "/task/"
	threads, _ := os.ReadDir(dir)
	var out []int
	for _, t := range threads {
		b, err := os.ReadFile(dir + t.Name() + "/children")
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
