package supervisor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/supervise-dev/supervise/channel"
	"github.com/vmihailenco/msgpack/v5"
)

// Chunks: Map and MapUnordered send consecutive inputs as one chunk call (docs/protocol.md,
// section 3), which the worker runs one by one and answers once, with each input's outcome.
// A task then costs a Map what a chunk's share of one call costs, not a call of its own.
//
// A chunk that ends without its outcomes (its worker died or was killed: a time or memory
// limit, a hang; or it was answered short, cancelled at its time limit) keeps the outcomes it
// has, and its other inputs go again, one per call: so an input that kills its worker fails
// alone, with the error of its own call, and its chunk-mates succeed.

// errNoChunks fails a chunk given to a worker that does not run chunk calls: its Map sends
// the inputs again, one per call.
var errNoChunks = errors.New("the worker does not run chunk calls")

// Auto chunk sizing (Func.WithChunk(0)): a chunk holds about chunkTime of handler time, as
// measured so far, and about chunkBytes of input; the first calls, before anything is
// measured, hold one input each. An input of bigInput bytes or more always goes alone, as a
// plain call (sent without a copy).
const (
	chunkTime    = 2 * time.Millisecond
	chunkBytes   = 64 << 10
	maxAutoChunk = 1024
	bigInput     = 64 << 10
)

// chunkSizer decides how many inputs the next chunk of a Map holds. Only the Map's goroutine
// uses it.
type chunkSizer struct {
	fixed        int   // Func.WithChunk: this many; 0: auto
	items, took  int64 // inputs answered so far, and the handler time they took (ns)
	inputs, size int64 // inputs encoded so far, and their bytes
	// limit caps auto sizes after a chunk lost its worker: a quarter of that chunk's size,
	// doubling with each chunk answered whole. Where inputs that kill their worker are
	// common, chunks stay small, and few inputs run twice. 0: no cap.
	limit int
}

// next is the size of the next chunk: 1 means a plain call.
func (s *chunkSizer) next() int {
	if s.fixed > 0 {
		return s.fixed
	}
	if s.items == 0 {
		return 1
	}
	per := max(s.took/s.items, 100) // ns of handler time per input; a floor for what is too quick to measure
	n := int64(chunkTime) / per
	if s.inputs > 0 {
		n = min(n, chunkBytes*s.inputs/max(s.size, 1))
	}
	if s.limit > 0 {
		n = min(n, int64(s.limit))
	}
	return int(min(max(n, 1), maxAutoChunk))
}

// ended records that a chunk of n inputs was answered whole, or not.
func (s *chunkSizer) ended(n int, whole bool) {
	switch {
	case !whole:
		s.limit = max(1, n/4)
	case s.limit > 0:
		if s.limit *= 2; s.limit >= maxAutoChunk {
			s.limit = 0
		}
	}
}

// answered records n inputs answered in took.
func (s *chunkSizer) answered(n int, took time.Duration) {
	if n > 0 && took > 0 {
		s.items += int64(n)
		s.took += int64(took)
	}
}

// chunkBuilder gathers the encoded inputs of the chunk being made.
type chunkBuilder struct {
	buf   []byte // a chunk payload: ChunkHeader, then the inputs
	n     int
	first int // index of its first input
}

// add appends in, encoded, as input index; ok false: in could not be encoded, or is big, and
// goes in a plain call of its own instead.
func (b *chunkBuilder) add(in any, index int, s *chunkSizer) (ok bool) {
	if x, isBytes := in.([]byte); isBytes && len(x) >= bigInput {
		return false
	}
	if b.n == 0 {
		b.buf, b.first = channel.ChunkHeader(make([]byte, 0, 1024), 0), index
	}
	mark := len(b.buf)
	buf, err := channel.AppendValue(b.buf, in)
	if err != nil || len(buf)-mark >= bigInput {
		b.buf = buf[:mark]
		return false
	}
	b.buf = buf
	b.n++
	s.inputs++
	s.size += int64(len(buf) - mark)
	return true
}

// full reports whether the chunk has size inputs, or its bytes.
func (b *chunkBuilder) full(size int) bool { return b.n >= size || len(b.buf) >= chunkBytes }

// submit sends the chunk gathered (a chunk of one as a plain call) and starts another.
func (b *chunkBuilder) submit(ctx context.Context, p *Pool, handler string, o taskOpts) *task {
	o.index, o.chunk = b.first, b.n
	var in any
	if b.n == 1 {
		in, o.chunk = msgpack.RawMessage(b.buf[5:]), 0
	} else {
		channel.SetChunkCount(b.buf, b.n)
		in, o.retries = msgpack.RawMessage(b.buf), 0 // a chunk whose worker dies goes again input by input
	}
	b.buf, b.n = nil, 0
	return p.submit(ctx, handler, in, o)
}

// chunkEnd is what a settled chunk call means for each of its inputs, from its answer or,
// when it ended without one, from its worker's progress page: under at-most-once an input
// that may have started never starts again.
type chunkEnd struct {
	outs    []channel.ChunkOutcome // the first len(outs) inputs have these outcomes
	ran     int                    // inputs [len(outs), ran) started and have none: they fail with failed
	failed  error
	expired int   // input expired-1 ran past the chunk's time limit: it fails with timeout, whatever came after
	timeout error //
	rest    error // the inputs from ran on never started: nil, they go again; else they fail with it (the caller's cancel, the pool's end)
	badPuts []int // inputs that put a follow-up from no queue: they fail with errNotInQueue
}

// endOf is what chunk t, settled, means for its inputs.
func endOf(t *task) chunkEnd {
	e := chunkEnd{expired: t.expired, badPuts: t.badPuts}
	cause := t.err
	if te, ok := cause.(*TaskError); ok { // the chunk's own: each input gets its own TaskError
		cause = te.Err
	}
	if e.expired > 0 {
		e.timeout = &TimeoutError{Limit: t.limit}
	}
	switch {
	case t.record != nil: // it ended without its answer, or its answer could not count
		e.outs, e.ran, e.failed = t.record.Outcomes, t.record.Started, cause
	case t.err != nil: // it failed before it ran (never sent, cancelled while queued), or the worker refused it whole (an unknown handler, a payload it could not decode)
	default:
		outs, err := channel.ParseChunkOutcomes(t.result, t.chunk)
		if err != nil { // its inputs ran, but their outcomes are lost
			e.ran, e.failed = t.chunk, fmt.Errorf("the answer to chunk call %d cannot be read: %w", t.id, err)
			break
		}
		e.outs, e.ran = outs, len(outs)
	}
	e.ran = max(e.ran, len(e.outs), e.expired)
	if e.failed == nil && e.ran > len(e.outs) { // a worker's answer that its page contradicts
		e.failed = cause
		if e.failed == nil {
			e.failed = fmt.Errorf("chunk call %d: the worker recorded %d inputs started, and answered %d", t.id, e.ran, len(e.outs))
		}
	}
	if cause != nil {
		e.rest = restError(cause)
	}
	return e
}

// input is the fate of input i: its outcome (o), its error (err), or, both nil, it goes again.
func (e *chunkEnd) input(i int) (o *channel.ChunkOutcome, err error) {
	switch {
	case i == e.expired-1:
		return nil, e.timeout
	case i < len(e.outs) && slices.Contains(e.badPuts, i):
		return nil, errNotInQueue
	case i < len(e.outs):
		return &e.outs[i], nil
	case i < e.ran:
		return nil, e.failed
	default:
		return nil, e.rest
	}
}

// retryable reports whether input i is the one its chunk's worker died under (not for a
// time limit): like a call whose worker died, it may go again if its caller gave it retries.
func (e *chunkEnd) retryable(i int) bool {
	return i == len(e.outs) && i < e.ran && i != e.expired-1 && errors.Is(e.failed, ErrWorkerDied)
}

// whole reports whether every input of a chunk of n has its outcome.
func (e *chunkEnd) whole(n int) bool { return len(e.outs) == n && e.expired == 0 }

// restError is what a chunk's failure makes of its inputs that never started: the caller's
// cancel and the pool's end are theirs too; after any other failure (its worker died, a time
// limit, a chunk the worker would not run) they go again, one per call.
func restError(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, ErrPoolClosed) || errors.Is(err, ErrPoolBroken) {
		return err
	}
	return nil
}

// itemResult is the Result of input i (counted from 0) of chunk t, from its outcome.
func itemResult[Out any](t *task, i int, o channel.ChunkOutcome) Result[Out] {
	r := Result[Out]{Index: t.index + i}
	if o.Err != nil {
		r.Err = t.inputError(t, i, o.Err)
		return r
	}
	if err := channel.Unmarshal(o.Value, &r.Value); err != nil {
		r.Err = t.inputError(t, i, fmt.Errorf("%w: decoding the result as %T: %w", ErrResultType, r.Value, err))
	}
	return r
}

// chunkInputs are the encoded inputs of chunk t, from its payload.
func chunkInputs(t *task) []msgpack.RawMessage {
	items, _ := channel.ParseChunk(t.payload) // ours: it parses
	return items
}

// chunkEnded counts the inputs of chunk t that started, once its end e is known: in the
// metrics, and in its worker's figures (Stats: inputs, not chunk calls), before they are
// given their outcomes.
func chunkEnded(t *task, e *chunkEnd) {
	if t.metrics != nil && e.ran > 0 {
		t.metrics.inputsStarted(t.handler, e.ran)
	}
	w := t.answerer
	if w == nil {
		return
	}
	var done, failed int64
	for i := range e.ran {
		if o, _ := e.input(i); o != nil && o.Err == nil {
			done++
		} else {
			failed++
		}
	}
	w.tasksDone.Add(done)
	w.tasksFailed.Add(failed)
}

// inputEnded counts the outcome of an input of a chunk call, as settle counts a call's: in
// Stats.Failures and in the metrics.
func (p *Pool) inputEnded(handler string, err error) {
	var kind string
	if err != nil {
		kind = p.failures.count(err)
	}
	if p.metrics != nil {
		p.metrics.input(handler, err, kind)
	}
}
