package supervisor

import (
	"context"
	"fmt"
	"slices"
)

// WorkerResult is one worker's outcome of a Broadcast.
type WorkerResult[Out any] struct {
	WorkerID, Pid int
	Value         Out
	Err           error
}

// Broadcast runs the handler once on every worker alive now (reload a configuration, warm a
// cache) and returns one result per worker, in no particular order. A call goes to its worker
// after the calls already sent to it, and never to another worker: a worker that dies first
// gives its result as an error wrapping ErrWorkerDied, and is replaced as usual (its
// replacement does not run the broadcast; Config.Init is for what every worker must run).
func (f Func[In, Out]) Broadcast(ctx context.Context, in In) []WorkerResult[Out] {
	p := f.pool
	p.mu.Lock()
	ws := make([]*worker, 0, len(p.workers))
	for w := range p.workers {
		ws = append(ws, w)
	}
	p.mu.Unlock()
	ts := make([]*task, len(ws))
	for i, w := range ws {
		ts[i] = p.submit(ctx, f.name, in, taskOpts{pin: w})
	}
	out := make([]WorkerResult[Out], len(ws))
	for i, t := range ts {
		<-t.done
		v, err := decode[Out](t)
		out[i] = WorkerResult[Out]{WorkerID: ws[i].id, Pid: ws[i].pid, Value: v, Err: err}
	}
	return out
}

// unpin takes back t, pinned to this worker and not sent yet.
func (w *worker) unpin(t *task) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, p := range w.pinned {
		if p == t {
			w.pinned = slices.Delete(w.pinned, i, i+1)
			return true
		}
	}
	return false
}

// pin gives t to this worker alone. It fails if the worker is already on its way out.
func (w *worker) pin(t *task) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.phase != phaseReady {
		return fmt.Errorf("%w: worker %d (pid %d) exited before the broadcast reached it", ErrWorkerDied, w.id, w.pid)
	}
	w.pinned = append(w.pinned, t)
	select {
	case w.room <- struct{}{}: // wake the sender
	default:
	}
	return nil
}
