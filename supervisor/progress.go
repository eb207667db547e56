package supervisor

import (
	"github.com/supervise-dev/supervise/channel"
)

// A worker that runs chunk calls records each one's progress in a page of memory it shares
// with the pool (channel/progress.go): which input runs, and each finished input's outcome.
// When a chunk ends without its answer (its worker died or was killed) the pool reads how far
// it got: the inputs that finished keep their outcomes, the one running fails with the cause,
// and only those that never started go again. When a chunk reaches its time limit, the input
// running then fails with the limit at once (expireChunk).

// chunkRecord reads chunk t's record from the worker's page. A chunk the page does not
// record never started. A garbled page (a hostile worker) counts every input as started:
// none may start twice.
func (w *worker) chunkRecord(t *task) *channel.ChunkRecord {
	if w.page == nil {
		return &channel.ChunkRecord{Started: t.chunk}
	}
	rec, ok, err := channel.ReadProgress(w.page, t.id, t.chunk)
	switch {
	case err != nil:
		w.log.Warn("supervise: a chunk's progress cannot be read: its inputs fail", "task", t.id, "err", err)
		return &channel.ChunkRecord{Started: t.chunk}
	case !ok:
		return &channel.ChunkRecord{}
	}
	return &rec
}

// expireChunk is the time limit of chunk t, which its worker runs: the input running now
// fails with the limit, and the chunk's answer (the worker was sent a cancel) or its worker's
// death gives the others their fate. Only the owner calls it.
func (w *worker) expireChunk(t *task) {
	w.mu.Lock()
	if w.ledger.held[t.id] != t || w.page == nil {
		w.mu.Unlock()
		return // answered meanwhile
	}
	rec, ok, err := channel.ReadProgress(w.page, t.id, t.chunk)
	running := len(rec.Outcomes)
	if ok && err == nil && rec.Started > running {
		t.expired, t.limit = running+1, w.p.cfg.TaskTimeout
	}
	w.mu.Unlock()
	if t.expired > 0 && t.parts != nil { // a future of its own: it ends now
		p := t.parts[running]
		p.starts.Store(1)
		te := t.inputError(p, running, &TimeoutError{Limit: t.limit})
		te.WorkerID, te.Pid = w.id, w.pid
		p.settle(nil, te)
	}
}
