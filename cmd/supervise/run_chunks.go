package main

import (
	"context"
	"time"

	"github.com/supervise-dev/supervise/supervisor"
	"github.com/vmihailenco/msgpack/v5"
)

// lineChunks sizes the chunks of consecutive lines run sends as one call (--chunk): N fixed,
// or, at 0, about lineChunkTime of handler time and lineChunkBytes of input a chunk, from the
// lines answered and read so far; one line a call until the first is answered.
type lineChunks struct {
	fixed        int
	lines, nanos int64 // lines answered in a measured time, and that time
	read, bytes  int64 // lines read, and their bytes
}

const (
	lineChunkTime  = 2 * time.Millisecond
	lineChunkBytes = 64 << 10
	maxLineChunk   = 256
)

// next is how many lines the next call takes: 1 without a local pool (a queue batches on its
// own), or where nothing is measured yet; never more than a quarter of window, the lines that
// may be out at once, so that several calls are (and a chunk always fits in it).
func (c *lineChunks) next(local bool, window int) int {
	limit := max(1, window/4)
	switch {
	case !local:
		return 1
	case c.fixed > 0:
		return min(c.fixed, limit)
	case c.lines == 0:
		return 1
	}
	n := int64(lineChunkTime) / max(c.nanos/c.lines, 100)
	if c.read > 0 {
		n = min(n, lineChunkBytes*c.read/max(c.bytes, 1))
	}
	return int(min(max(n, 1), maxLineChunk, int64(limit)))
}

// line records a line read, of size bytes.
func (c *lineChunks) line(size int) {
	c.read++
	c.bytes += int64(size)
}

// took records the time a line's handler took, where its future knows it.
func (c *lineChunks) took(f pendingTask[msgpack.RawMessage]) {
	if t, ok := f.(interface{ Took() time.Duration }); ok && t.Took() > 0 {
		c.lines++
		c.nanos += int64(t.Took())
	}
}

// submitLines submits the payloads of consecutive lines: several to a local pool as one chunk
// call, each alone otherwise.
func submitLines(ctx context.Context, j *job, handler string, payloads []msgpack.RawMessage) []pendingTask[msgpack.RawMessage] {
	out := make([]pendingTask[msgpack.RawMessage], len(payloads))
	if j.pool != nil && len(payloads) > 1 {
		for i, f := range supervisor.Bind[msgpack.RawMessage, msgpack.RawMessage](j.pool, handler).SubmitChunk(ctx, payloads) {
			out[i] = f
		}
		return out
	}
	for i, p := range payloads {
		out[i] = submitTo[msgpack.RawMessage, msgpack.RawMessage](ctx, j, handler, p)
	}
	return out
}
