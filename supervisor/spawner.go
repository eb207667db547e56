package supervisor

import (
	"os/exec"
	"runtime"
	"sync"
)

// spawner starts a pool's worker processes from one goroutine locked to its own OS thread.
//
// On Linux a worker gets a parent-death signal (Pdeathsig), which the kernel sends when the
// *thread* that forked it exits, not the process (golang/go#27505): a worker started from an
// ordinary goroutine's thread could be signalled the day the Go runtime retires that thread.
// The spawner's thread lives as long as the pool: its goroutine ends, and the runtime ends the
// locked thread with it, only after every worker of the pool has been reaped.
type spawner struct {
	reqs chan spawnRequest
	done chan struct{}
	once sync.Once
}

type spawnRequest struct {
	cmd *exec.Cmd
	err chan error
}

func newSpawner() *spawner {
	s := &spawner{reqs: make(chan spawnRequest), done: make(chan struct{})}
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		defer close(s.done)
		for r := range s.reqs {
			r.err <- r.cmd.Start()
		}
	}()
	return s
}

// start runs cmd.Start on the spawner's thread.
func (s *spawner) start(cmd *exec.Cmd) error {
	r := spawnRequest{cmd: cmd, err: make(chan error, 1)}
	s.reqs <- r
	return <-r.err
}

// stop ends the spawner once no worker can be started any more. Safe to call repeatedly.
func (s *spawner) stop() {
	s.once.Do(func() { close(s.reqs) })
	<-s.done
}
