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

// Raw is the message as the handler encoded it (msgpack).
func (r Report) Raw() msgpack.RawMessage { return r.raw }

// NewReport is a report of the msgpack-encoded message raw, for a QueueBackend's futures.
func NewReport(raw msgpack.RawMessage) Report { return Report{raw} }

// Reports yields the messages the task's handler sends with child.Report, in the order sent,
// as they arrive, and ends once the task has ended and every message was yielded (or when ctx
// ends). Each message is yielded once: a second loop over Reports goes on where the first one
// stopped. The pool keeps the messages not yet yielded for the future, so the worker never
// waits for the caller, up to Config.MaxReportBytes: past that the task fails with
// ErrReportOverflow and its worker is killed.
func (f *Future[Out]) Reports(ctx context.Context) iter.Seq[Report] {
	return func(yield func(Report) bool) {
		for {
			m, ok, wait := f.t.reports.next()
			if ok {
				if !yield(Report{m}) {
					return
				}
				continue
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

// reportCost is what one report counts against Config.MaxReportBytes beyond its bytes: the
// memory that keeps it, so that a flood of empty reports is bounded too.
const reportCost = 64

// reports are a task's messages from its handler, kept for its caller until it takes them.
// The worker's reader adds them, settle ends them.
type reports struct {
	mu    sync.Mutex
	msgs  []msgpack.RawMessage // not yet taken, oldest first
	bytes int                  // what msgs count against the limit
	ended bool
	more  chan struct{} // made when someone waits; closed on the next add or end
}

// add keeps m for the caller, unless that would take the messages kept over limit bytes (a
// limit of 0 or less: no limit); it reports whether m was kept.
func (r *reports) add(m msgpack.RawMessage, limit int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	cost := len(m) + reportCost
	if limit > 0 && r.bytes+cost > limit {
		return false
	}
	r.msgs = append(r.msgs, m)
	r.bytes += cost
	r.wake()
	return true
}

// held is how many bytes the messages not yet taken count against the limit.
func (r *reports) held() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.bytes
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

// next takes the oldest message if there is one; otherwise it returns a channel to wait on for
// more, or nil if there will be none.
func (r *reports) next() (msgpack.RawMessage, bool, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.msgs) > 0 {
		m := r.msgs[0]
		r.msgs[0] = nil
		r.msgs = r.msgs[1:]
		r.bytes -= len(m) + reportCost
		if len(r.msgs) == 0 {
			r.msgs = nil // let the array go
		}
		return m, true, nil
	}
	if r.ended {
		return nil, false, nil
	}
	if r.more == nil {
		r.more = make(chan struct{})
	}
	return nil, false, r.more
}
