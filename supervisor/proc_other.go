//go:build unix && !linux

package supervisor

import (
	"os"
	"syscall"
)

// sysProcAttr makes the worker lead its own process group. There is no parent-death signal
// outside Linux; workers still exit when their stdin reaches EOF.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

func growPipe(*os.File, int) {}
