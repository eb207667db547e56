//go:build !linux

package execjob

import (
	"os/exec"
	"syscall"
)

// waitAndKillGroup waits for the job's command to exit, then kills what it left in its
// process group. Without waitid's WNOWAIT the command is reaped first, so the group's id
// may, in a rare race, have been handed on meanwhile.
func waitAndKillGroup(cmd *exec.Cmd) error {
	err := cmd.Wait()
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	return err
}
