package supervisor

import (
	"context"
	"iter"
	"sync"

	"github.com/supervise-dev/supervise/channel"
	"github.com/vmihailenco/msgpack/v5"
)

// Report is one message a handler sent its caller with child.Report while the task ran:
// progress, a log record, a partial result.
type Report struct{ raw msgpack.RawMessage }

// Decode decodes the message into v (a pointer), as msgpack.
func (r Report) Decode(v any) error { return channel.Unmarshal(r.raw, v) }

// Reports yields the messages the task's handler sends with child.Report, in the order sent,
// as they arrive, and ends once the task has ended and every message was yielded (or when ctx
// ends). The pool keeps them for the future, so the worker never waits for the caller.
func (f *Future[Out]) Reports(ctx context.Context) iter.Seq[Report] {
	return func(yield func(Report) bool) {
		for i := 0; ; i++ {
			for {
				m, ok, wait := f.t.reports.get(i)
				if ok {
					if !yield(Report{m}) {
						return
					}
					break
				}
				if wait == nil { // ended, and nothing more
					return
				}
				select {
				case <-wait:
				case <-ctx.Done():
					return
				}
			}
		}
	}
}

// reports are a task's messages from its handler, kept for its caller. The worker's reader adds
// them, settle ends them.
type reports struct {
	mu    sync.Mutex
	msgs  []msgpack.RawMessage
	ended bool
	more  chan struct{} // made when someone waits; closed on the next add or end
}

func (r *reports) add(m msgpack.RawMessage) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, m)
	r.wake()
}

func (r *reports) end() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ended = true
	r.wake()
}

func (r *reports) wake() {
	if r.more != nil {
		close(r.more)
		r.more = nil
	}
}

// get returns message i if there is one; otherwise a channel to wait on for more, or nil if
// there will be none.
func (r *reports) get(i int) (msgpack.RawMessage, bool, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if i < len(r.msgs) {
		return r.msgs[i], true, nil
	}
	if r.ended {
		return nil, false, nil
	}
	if r.more == nil {
		r.more = make(chan struct{})
	}
	return nil, false, r.more
}
