//go:build unix

// Package keeper is the small process a pool puts between itself and a plugin worker that
// does not take its process group down when the parent dies (a go-plugin plugin dies of the
// parent-death signal, but what it started lives on).
//
// The keeper is the pool's own executable re-executed: child.Main runs it when the
// environment says so (Key=1), and marks it available when called at all, so a pool knows
// that re-executing itself leads here and not into the program's main. The keeper leads the
// process group, as the pool starts it, and runs the plugin as its child in that group, with
// the same stdin, stdout and stderr. It exits as the plugin exits (the same status, or killed
// by the same signal), and the pool then kills what is left of the group, as for any worker.
// On SIGHUP, the parent-death signal, it does what the parent can no longer do: SIGTERM to
// the group, then SIGKILL to the group, itself included, after the stop grace.
package keeper

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/supervise-dev/supervise/internal/handshake"
)

// Key is the environment variable that makes child.Main a keeper for os.Args[1:].
const Key = "SUPERVISE_KEEPER"

var available atomic.Bool

// MarkAvailable records that this program calls child.Main, so it can be re-executed as a
// keeper.
func MarkAvailable() { available.Store(true) }

// Available reports whether this program can be re-executed as a keeper.
func Available() bool { return available.Load() }

// Requested reports whether this process was started to be a keeper.
func Requested() bool { return os.Getenv(Key) == "1" }

// Run runs argv under the keeper and returns the exit status to exit with (when the plugin
// was killed by a signal, Run kills the keeper with the same signal first).
func Run(argv []string) int {
	if len(argv) == 0 {
		fmt.Fprintln(os.Stderr, "supervise keeper: no command to run")
		return 2
	}
	grace := time.Duration(handshake.IntEnv(handshake.StopGraceKey, 2000)) * time.Millisecond
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)

	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, Key+"=") { // the plugin may call child.Main too
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "supervise keeper: starting %q: %v\n", argv, err)
		return 127
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	for {
		select {
		case <-exited:
			ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
			if ws.Signaled() { // die of the same signal, so the pool reports it as such
				signal.Reset(ws.Signal())
				_ = syscall.Kill(os.Getpid(), ws.Signal())
				time.Sleep(time.Second) // delivery is asynchronous; a signal that does not kill
				return 128 + int(ws.Signal())
			}
			return cmd.ProcessState.ExitCode()
		case sig := <-sigs:
			if sig == syscall.SIGHUP { // the parent is gone: the kill ladder is ours to do
				_ = syscall.Kill(0, syscall.SIGTERM)
				time.Sleep(grace)
				_ = syscall.Kill(0, syscall.SIGKILL)
			}
			_ = cmd.Process.Signal(sig) // signalled alone (the pool signals the whole group)
		}
	}
}
