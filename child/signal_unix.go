//go:build unix

package child

import (
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/supervise-dev/supervise/internal/handshake"
)

// takeGroupDownOnSignals makes the worker end its whole process group, when it leads it (the
// pool starts it so), on two signals:
//
//   - SIGHUP is the parent-death signal: the kernel sends it to the worker alone when the
//     parent dies, even by SIGKILL (Linux). Nobody else will take the worker's children down,
//     so it does the kill ladder itself: SIGTERM to the group, then SIGKILL to the group (itself
//     included) after the stop grace, so that children that ignore SIGTERM die too.
//   - SIGTERM (the pool's kill ladder signals the whole group; another supervisor may signal the
//     worker alone) is passed on to the group, and the worker exits at once: the parent is alive
//     and sends the SIGKILL if it must.
//
// Two signals rather than one because a worker cannot tell who sent a SIGTERM, and must not
// linger for the grace on every kill the pool makes.
func takeGroupDownOnSignals() {
	if syscall.Getpgrp() != os.Getpid() {
		return // not our group to kill
	}
	grace := time.Duration(handshake.IntEnv(handshake.StopGraceKey, 2000)) * time.Millisecond
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		sig := <-sigs
		_ = syscall.Kill(0, syscall.SIGTERM) // the group: children, and this process (ignored now)
		if sig == syscall.SIGHUP {
			time.Sleep(grace)
			_ = syscall.Kill(0, syscall.SIGKILL)
		}
		os.Exit(128 + int(sig.(syscall.Signal)))
	}()
}
