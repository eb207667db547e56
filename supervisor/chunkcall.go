package supervisor

import (
	"context"
	"fmt"

	"github.com/supervise-dev/supervise/channel"
)

// SubmitChunk queues ins as one chunk call (see WithChunk) and returns a future for each: each
// input ends on its own, with its own result or error, exactly as if submitted alone. It is
// for callers that want futures rather than Map's iterator (supervise run does). One input,
// a pool whose workers do not run chunks, or a Config.Plugin pool: each input goes in a call
// of its own. Keep a chunk small (a few milliseconds of work, under the frame limit): its
// inputs wait for one another's answers.
func (f Func[In, Out]) SubmitChunk(ctx context.Context, ins []In) []*Future[Out] {
	out := make([]*Future[Out], len(ins))
	p := f.pool
	if len(ins) == 1 || p.noChunks.Load() {
		for i, in := range ins {
			out[i] = f.Submit(ctx, in)
		}
		return out
	}
	o := taskOpts{retries: f.retries, putTo: f.putTo}
	room := channel.FrameRoom(p.cfg.MaxFrame)
	buf := channel.ChunkHeader(make([]byte, 0, 5+64*len(ins)), 0)
	var parts []*task
	var ends []int
	for i, in := range ins {
		t := p.newTask(ctx, f.name, o)
		out[i] = &Future[Out]{t}
		mark := len(buf)
		b, err := channel.AppendValue(buf, in)
		switch {
		case err != nil:
			t.fail(nil, fmt.Errorf("encoding the input: %w", err))
		case channel.CallSize(f.name, len(b)-mark, false) > room:
			t.fail(nil, fmt.Errorf("%w: %d bytes encoded (Config.MaxFrame)", ErrTooLarge, len(b)-mark))
		default:
			buf = b
			parts = append(parts, t)
			ends = append(ends, len(buf))
			continue
		}
		buf = b[:mark]
	}
	start := 5
	for i, t := range parts {
		t.payload, start = buf[start:ends[i]:ends[i]], ends[i]
	}
	switch {
	case len(parts) == 1:
		p.enqueue(parts[0], o)
	case len(parts) > 1:
		channel.SetChunkCount(buf, len(parts))
		c := p.newTask(ctx, f.name, taskOpts{chunk: len(parts), again: true}) // its inputs were counted
		c.payload, c.parts, c.submitted = buf, parts, parts[0].submitted
		c.resend = func(t *task) { p.enqueue(t, o) }
		p.enqueue(c, taskOpts{})
	}
	return out
}

// settleParts gives each input of chunk c, now settled, its fate (chunkEnd): its outcome, its
// error, or a call of its own where it never started.
func settleParts(c *task) {
	e := c.end
	if e == nil { // a queue's chunk that failed with one item gathered: not a chunk call
		x := endOf(c)
		e = &x
	}
	if c.gather != nil {
		c.gather.ended(c, e)
	}
	took := c.took.Load() / int64(max(1, len(e.outs)))
	for i, t := range c.parts {
		o, err := e.input(i)
		switch {
		case o != nil:
			t.starts.Store(c.starts.Load())
			t.took.Store(took)
			if o.Err != nil {
				t.settle(nil, c.inputError(t, i, o.Err))
			} else {
				t.settle(o.Value, nil)
			}
		case e.retryable(i) && t.retries > 0: // at-least-once: again, a retry spent
			t.retries--
			t.starts.Store(c.starts.Load())
			c.resend(t)
		case err != nil:
			if i < e.ran { // it ran: its error is its chunk's, at its place in it
				t.starts.Store(c.starts.Load())
				t.settle(nil, c.inputError(t, i, err))
			} else {
				t.fail(nil, err)
			}
		default:
			c.resend(t)
		}
	}
}
