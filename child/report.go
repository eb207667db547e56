package child

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/supervise-dev/supervise/channel"
)

// ErrNotInHandler: Put or Report was given a context that is not a handler's.
var ErrNotInHandler = errors.New("child: not called with a handler's context")

// running is what a handler's context knows of its call.
type running struct {
	w     *worker
	id    uint64
	chunk bool         // the call is a chunk; input is the position of the input running
	input atomic.Int32 // (a handler's goroutine may put while the next input starts)
}

type runningKey struct{}

// Put puts item on the queue the running task came from, as a follow-up for the same handler
// (a directory walker puts the subdirectories it finds). The queue's Join waits for it too.
// ctx must be the handler's context. Put does not wait for the parent: it blocks only while the
// pipe to the parent is full. If the task did not come from a queue, the task fails.
func Put(ctx context.Context, item any) error {
	return send(ctx, channel.KindPut, item)
}

// Report sends msg to the caller of the running task, which receives the messages of a task in
// the order sent, before its result: progress ({"done": 3, "total": 10}), a log record, a
// partial result. ctx must be the handler's context. Like Put, it does not wait for the parent.
func Report(ctx context.Context, msg any) error {
	return send(ctx, channel.KindReport, msg)
}

func send(ctx context.Context, kind channel.Kind, v any) error {
	r, ok := ctx.Value(runningKey{}).(*running)
	if !ok {
		return ErrNotInHandler
	}
	payload, err := channel.Marshal(v)
	if err != nil {
		return err
	}
	if r.chunk && kind == channel.KindPut { // says which input put it (docs/protocol.md, section 3)
		payload = channel.ChunkPut(int(r.input.Load()), payload)
	}
	return r.w.send(channel.Message{Kind: kind, ID: r.id, Payload: payload})
}
