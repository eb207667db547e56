package child

import (
	"bytes"
	"os"
	"strconv"
)

// groupOthers lists the live processes (zombies are dead) of this process's group other than
// itself, from /proc; known is false if /proc cannot be read.
func groupOthers() (pids []int, known bool) {
	d, err := os.Open("/proc")
	if err != nil {
		return nil, false
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, false
	}
	self := os.Getpid()
	pgrp := []byte(strconv.Itoa(self))
	for _, name := range names {
		pid, err := strconv.Atoi(name)
		if err != nil || pid == self {
			continue
		}
		b, err := os.ReadFile("/proc/" + name + "/stat")
		if err != nil {
			continue // gone
		}
		// "pid (comm) state ppid pgrp ...": comm may hold anything, so count from the last ')'.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := bytes.Fields(b[i+1:])
		if len(f) >= 3 && !bytes.Equal(f[0], []byte("Z")) && bytes.Equal(f[2], pgrp) {
			pids = append(pids, pid)
		}
	}
	return pids, true
}
