//go:build unix

package child

import (
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/supervise-dev/supervise/internal/handshake"
)

// takeGroupDownOnSIGTERM makes a SIGTERM end the worker's whole process group, when the worker
// leads it (the pool starts it so): the worker passes the SIGTERM on to the group and exits.
//
// The pool's kill ladder signals the group itself; this is for the parent-death signal (a
// SIGTERM the kernel sends to the worker alone when the parent dies, even by SIGKILL), so that
// the worker's own children do not outlive it. If the parent is gone, nobody else will finish
// the ladder: the worker waits the stop grace and sends SIGKILL to the group, itself included.
func takeGroupDownOnSIGTERM() {
	if syscall.Getpgrp() != os.Getpid() {
		return // not our group to kill
	}
	parent := os.Getppid()
	grace := time.Duration(handshake.IntEnv(handshake.StopGraceKey, 2000)) * time.Millisecond
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	go func() {
		<-sigs
		_ = syscall.Kill(0, syscall.SIGTERM) // the group: grandchildren, and this process (caught)
		if os.Getppid() != parent {
			time.Sleep(grace)
			_ = syscall.Kill(0, syscall.SIGKILL)
		}
		os.Exit(128 + int(syscall.SIGTERM))
	}()
}
