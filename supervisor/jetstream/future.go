package jetstream

import (
	"context"

	"github.com/supervise-dev/supervise/channel"
	"github.com/supervise-dev/supervise/internal/notify"
	"github.com/vmihailenco/msgpack/v5"
)

// Future is the pending outcome of one task submitted with Submit.
type Future[Out any] struct {
	id      uint64
	done    chan struct{}
	result  msgpack.RawMessage
	err     error
	onDone  notify.Once
	reports *taskReports
}

// Submit sends a task for handler with input in to the queue's machines.
func Submit[In, Out any](ctx context.Context, c *Client, handler string, in In) *Future[Out] {
	f := &Future[Out]{done: make(chan struct{}), reports: &taskReports{keep: true}}
	f.id = c.submit(ctx, handler, in, func(result msgpack.RawMessage, err error) {
		f.result, f.err = result, err
		close(f.done)
		f.onDone.Fire()
	}, f.reports, nil)
	return f
}

// ID is the task's id in its run.
func (f *Future[Out]) ID() uint64 { return f.id }

// Done is closed once the outcome is known.
func (f *Future[Out]) Done() <-chan struct{} { return f.done }

// OnDone has fn called once, when the outcome is known (at once if it is), from the goroutine
// that learnt it: fn must not block. Call it once per future.
func (f *Future[Out]) OnDone(fn func()) { f.onDone.Set(fn) }

// Get waits for the outcome, or for ctx to end.
func (f *Future[Out]) Get(ctx context.Context) (Out, error) {
	var out Out
	select {
	case <-f.done:
	case <-ctx.Done():
		return out, ctx.Err()
	}
	if f.err != nil {
		return out, f.err
	}
	if err := channel.Unmarshal(f.result, &out); err != nil {
		return out, err
	}
	return out, nil
}
