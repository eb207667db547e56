package supervisor

import (
	"context"
	"iter"

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
			m, ok, wait := f.t.reports.Next()
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
