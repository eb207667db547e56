//go:build unix

package supervisor

import (
	"fmt"
	"os"
	"syscall"
)

// killGroup signals the worker's whole process group (the worker leads it), so grandchildren
// get the signal too. A group that is already gone is not an error.
func killGroup(pid int, sig syscall.Signal) {
	if pid > 0 {
		_ = syscall.Kill(-pid, sig)
	}
}

func exitDescription(s *os.ProcessState) string {
	if ws, ok := s.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return fmt.Sprintf("killed by signal %d (%s)", int(ws.Signal()), ws.Signal())
	}
	return fmt.Sprintf("exit status %d", s.ExitCode())
}
