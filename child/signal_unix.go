//go:build unix

package child

import (
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/supervise-dev/supervise/internal/handshake"
	"github.com/supervise-dev/supervise/internal/procfs"
)

// takeGroupDownOnSignals makes the worker end its whole process group, when it leads it (the
// pool starts it so), on two signals, and returns the stop grace:
//
//   - SIGHUP is the parent-death signal: the kernel sends it to the worker alone when the
//     parent dies, even by SIGKILL (Linux). Nobody else will take the worker's children down,
//     so it does the kill ladder itself (takeGroupDown), then exits.
//   - SIGTERM (the pool's kill ladder signals the whole group; another supervisor may signal the
//     worker alone) is passed on to the group, and the worker exits at once: the parent is alive
//     and sends the SIGKILL if it must.
//
// Two signals rather than one because a worker cannot tell who sent a SIGTERM, and must not
// linger for the grace on every kill the pool makes.
func takeGroupDownOnSignals() time.Duration {
	grace := time.Duration(handshake.IntEnv(handshake.StopGraceKey, 2000)) * time.Millisecond
	if syscall.Getpgrp() != os.Getpid() {
		return grace // not our group to kill
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		sig := <-sigs
		if sig == syscall.SIGHUP {
			takeGroupDown(grace)
		} else {
			_ = syscall.Kill(0, syscall.SIGTERM) // the group: children, and this process (handled)
		}
		os.Exit(128 + int(sig.(syscall.Signal)))
	}()
	return grace
}

// takeGroupDown is the kill ladder a worker runs on its own group when its parent is gone:
// SIGTERM to the group (this process ignores it from now on), then, once grace has passed with
// a member still there, SIGKILL to the group, this process included. Where the members can be
// listed (Linux), a group that holds only this process is left at once, and the wait ends as
// soon as the others are gone.
func takeGroupDown(grace time.Duration) {
	if syscall.Getpgrp() != os.Getpid() {
		return
	}
	alone := func() bool { others, err := procfs.Group(os.Getpid()); return err == nil && len(others) == 0 }
	if alone() {
		return
	}
	signal.Ignore(syscall.SIGTERM)
	_ = syscall.Kill(0, syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if alone() {
			return
		}
		time.Sleep(10 * time.Millisecond) // no signal tells a group leader its group emptied
	}
	_ = syscall.Kill(0, syscall.SIGKILL)
}
