package execjob

import (
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"
)

// waitAndKillGroup waits for the job's command to exit, kills what it left in its process
// group, then reaps it. Until reaped, the command is a zombie that keeps its pid, and with it
// the group's id, from being handed to another process: the kill cannot reach a stranger.
func waitAndKillGroup(cmd *exec.Cmd) error {
	pid := cmd.Process.Pid
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			break
		}
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	return cmd.Wait()
}
