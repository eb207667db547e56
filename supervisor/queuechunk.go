package supervisor

import (
	"bytes"
	"context"
	"fmt"

	"github.com/supervise-dev/supervise/channel"
	"github.com/supervise-dev/supervise/internal/tracectx"
	"github.com/vmihailenco/msgpack/v5"
	"go.opentelemetry.io/otel/trace"
)

// Queue chunks: a pool's queue gathers the items put while its last chunk call waits in the
// backlog. The chunk goes into the backlog with its first item, and the items put after it
// join it until a worker takes it, or it is full (QueueConfig.Chunk, or the automatic size of
// chunk.go). So no item ever waits for others: while a worker is free, an item goes at once,
// and a chunk of one goes as a plain call. Under load, items that would have waited in the
// backlog anyway go many to a call.
//
// Follow-ups (child.Put) of a chunk's inputs name their input (channel.ChunkPut). The pool
// keeps them until the chunk's answer; then it puts those of the inputs answered, each charged
// to its input, before any of them is done, so Join cannot see the queue empty in between. A
// chunk that ends without its answer (its worker died, a time limit) drops them: its inputs go
// again one per call, and put their follow-ups again themselves.

// chunkPutBytes bounds the follow-ups that the chunks a worker holds may put before their
// answers, each counted as its bytes and putCost more (what keeping it costs). A chunk whose
// put goes past it fails when it ends, and its inputs go again one per call, whose follow-ups
// are put as they come.
const (
	chunkPutBytes = 16 << 20
	putCost       = 64
)

// gathering is a queue's chunk call while it gathers items, and its follow-ups while it runs.
type gathering struct {
	q      *queue
	sc     trace.SpanContext // of its items' contexts: only items of one trace share a chunk
	size   int               // the most items it may hold
	buf    []byte            // its payload: a channel.ChunkHeader, then its items
	ends   []int             // where each item's encoding ends in buf
	parts  []*task           // its items' own tasks
	sealed bool              // a worker took it (or it failed): no more items join

	// Its inputs' follow-ups, kept until its answer (counted in w.chunkPuts); bad: why it
	// must fail instead.
	puts     []chunkFollowUp
	counts   []int // by input: QueueConfig.MaxFollowUps
	putBytes int64
	w        *worker
	bad      error
}

type chunkFollowUp struct {
	k    int // the input that put it
	item msgpack.RawMessage
}

// gather adds item t (input in) to the queue's open chunk, or to a new one it queues. It
// reports false when t must go alone: chunks are off or not yet worth it, or in is big or
// cannot be encoded.
func (q *queue) gather(t *task, in any) bool {
	if b, ok := in.([]byte); ok && len(b) >= bigInput {
		return false
	}
	sc := trace.SpanContextFromContext(t.ctx)
	q.gmu.Lock()
	size := q.sizer.next()
	if size <= 1 {
		q.gmu.Unlock()
		return false
	}
	c := q.open
	if c != nil && !c.gather.sc.Equal(sc) {
		c = nil
	}
	var g *gathering
	if c != nil {
		g = c.gather
	} else {
		g = &gathering{q: q, sc: sc, size: size, buf: channel.ChunkHeader(make([]byte, 0, 1024), 0)}
	}
	mark := len(g.buf)
	buf, err := channel.AppendValue(g.buf, in)
	room := channel.FrameRoom(q.pool.cfg.MaxFrame)
	if err != nil || len(buf)-mark >= bigInput || channel.CallSize(q.handler, len(buf), false)+channel.TraceSize(t.trace) > room {
		g.buf = buf[:mark]
		q.gmu.Unlock()
		return false
	}
	q.sizer.inputs++
	q.sizer.size += int64(len(buf) - mark)
	g.buf, g.ends, g.parts = buf, append(g.ends, len(buf)), append(g.parts, t)
	fresh := c == nil
	if fresh {
		c = &task{id: q.pool.nextTask.Add(1), handler: q.handler, ctx: t.ctx, gather: g, trace: tracectx.Format(sc),
			done: make(chan struct{}), metrics: t.metrics, submitted: t.submitted}
	}
	q.open = c
	if len(g.parts) >= g.size || len(g.buf) >= chunkBytes {
		q.open = nil // full: the next item starts another
	}
	q.gmu.Unlock()
	if fresh {
		q.pool.enqueue(c, taskOpts{})
	}
	return true
}

// seal ends chunk c's gathering and returns what to send: c, or its one item as a plain call.
// The sender calls it when it takes c, settle when c fails first.
func (g *gathering) seal(c *task) *task {
	q := g.q
	q.gmu.Lock()
	defer q.gmu.Unlock()
	if g.sealed {
		return c
	}
	g.sealed = true
	if q.open == c {
		q.open = nil
	}
	start := 5
	for i, t := range g.parts {
		t.payload, start = g.buf[start:g.ends[i]:g.ends[i]], g.ends[i]
	}
	c.parts = g.parts
	c.resend = func(t *task) { q.pool.enqueue(t, taskOpts{}) }
	if len(g.parts) == 1 {
		return g.parts[0]
	}
	channel.SetChunkCount(g.buf, len(g.parts))
	c.payload, c.chunk = g.buf, len(g.parts)
	return c
}

// put keeps a follow-up that an input of chunk c put (its reader calls it), or says why c
// must fail.
func (g *gathering) put(w *worker, c *task, payload msgpack.RawMessage) {
	g.q.gmu.Lock()
	defer g.q.gmu.Unlock()
	if g.bad != nil {
		return
	}
	k, item, err := channel.ParseChunkPut(payload, c.chunk)
	cost := int64(len(item) + putCost)
	switch {
	case err != nil:
		g.bad = fmt.Errorf("a follow-up put during chunk call %d: %w", c.id, err)
	case w.chunkPuts.Load()+cost > chunkPutBytes:
		g.bad = fmt.Errorf("chunk call %d: its worker's chunks put more than %d bytes of follow-ups before their answers", c.id, chunkPutBytes)
	case g.q.cfg.MaxFollowUps > 0 && g.count(k, c.chunk) > g.q.cfg.MaxFollowUps:
		g.bad = fmt.Errorf("chunk call %d: its input %d put more than %d follow-ups (QueueConfig.MaxFollowUps)", c.id, k, g.q.cfg.MaxFollowUps)
	default:
		g.w = w
		g.putBytes += cost
		w.chunkPuts.Add(cost)
		g.puts = append(g.puts, chunkFollowUp{k, bytes.Clone(item)})
		return
	}
	w.log.Warn("supervise: failing a chunk call; its inputs go again one per call", "err", g.bad)
	g.drop()
}

// count counts a follow-up of input k of a chunk of n, and returns how many it has put.
func (g *gathering) count(k, n int) int {
	if g.counts == nil {
		g.counts = make([]int, n)
	}
	g.counts[k]++
	return g.counts[k]
}

// drop forgets the follow-ups kept. Called with gmu held.
func (g *gathering) drop() {
	if g.w != nil {
		g.w.chunkPuts.Add(-g.putBytes)
	}
	g.puts, g.putBytes = nil, 0
}

// ended puts the follow-ups of the inputs of chunk c that have outcomes, now that c is
// settled, before any of its items is done; and tells the queue's sizer how c went.
func (g *gathering) ended(c *task, e *chunkEnd) {
	q := g.q
	q.gmu.Lock()
	puts := g.puts
	g.drop()
	if c.chunk > 0 && (c.err == nil || e.rest == nil) { // not the pool's end
		q.sizer.ended(c.chunk, c.err == nil && e.whole(c.chunk))
	}
	q.gmu.Unlock()
	for _, f := range puts {
		if o, _ := e.input(f.k); o != nil {
			q.followUp(c.parts[f.k], f.item)
		}
	}
}

// submit sends queue item t, with input in: in a chunk, or alone.
func (q *queue) submit(t *task, in any, o taskOpts) {
	if q.cfg.Chunk != 1 && !q.pool.noChunks.Load() && q.gather(t, in) {
		return
	}
	q.pool.load(t, in, o)
}

// item makes the task of queue item index, put by parent (nil: by the caller).
func (q *queue) item(ctx context.Context, index int, parent *task) (*task, taskOpts) {
	o := taskOpts{index: index, retries: q.retries, queue: q, putBy: parent}
	return q.pool.newTask(context.WithoutCancel(ctx), q.handler, o), o
}

// failing is why the chunk must fail rather than be answered, or nil.
func (g *gathering) failing() error {
	g.q.gmu.Lock()
	defer g.q.gmu.Unlock()
	return g.bad
}
