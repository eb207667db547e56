package supervisor

import (
	"context"
	"iter"
	"time"

	"github.com/supervise-dev/supervise/channel"
	"github.com/vmihailenco/msgpack/v5"
)

// Result is one outcome of Map or MapUnordered: the input's position, and the output or error.
type Result[Out any] struct {
	Index int
	Value Out
	Err   error
}

// WithChunk returns f with Map and MapUnordered sending n consecutive inputs per call (a chunk
// call, which the worker runs input by input and answers once, with an outcome for each; at
// most channel.MaxChunk). 1 sends one per call; 0, the default, sizes chunks from the
// handler time and input size measured so far (about 2 ms and 64 KiB a chunk, at most 1,024
// inputs; one per call until the first answers). An input of 64 KiB or more goes alone.
// Workers whose hello does not offer chunk calls get one input per call whatever n is.
//
// Each input still yields its own Result with its own error. When a chunk's worker dies or is
// killed (a time or memory limit, a hang), the inputs it had not answered go again one per
// call: an input that kills its worker fails alone (ErrWorkerDied, in its own call), and
// its chunk-mates succeed. A time limit (Config.TaskTimeout) applies to a chunk as a whole;
// a chunk past it is cancelled, keeps the outcomes it has, and the rest go one per call, each
// with the whole limit.
func (f Func[In, Out]) WithChunk(n int) Func[In, Out] {
	f.chunk = min(max(n, 0), channel.MaxChunk)
	return f
}

// mapper gathers a Map's inputs into calls, chunks or plain ones.
type mapper[In, Out any] struct {
	f     Func[In, Out]
	ctx   context.Context
	o     taskOpts
	sizer chunkSizer
	b     chunkBuilder
	size  int // of the chunk being gathered
}

func (f Func[In, Out]) mapper(ctx context.Context, notify chan<- *task) *mapper[In, Out] {
	m := &mapper[In, Out]{f: f, ctx: ctx, o: taskOpts{notify: notify, retries: f.retries}, sizer: chunkSizer{fixed: f.chunk}}
	if f.pool.noChunks.Load() {
		m.sizer.fixed = 1
	}
	return m
}

// add takes input i; it returns the calls it submitted (zero, one, or two: the chunk it ended
// and a big input that goes alone).
func (m *mapper[In, Out]) add(in In, i int, sent func(*task)) {
	if m.b.n == 0 {
		m.size = m.sizer.next()
	}
	if m.size > 1 || m.b.n > 0 {
		if m.b.add(in, i, &m.sizer) {
			if m.b.full(m.size) {
				sent(m.b.submit(m.ctx, m.f.pool, m.f.name, m.o))
			}
			return
		}
		m.flush(sent)
	}
	o := m.o
	o.index = i
	sent(m.f.pool.submit(m.ctx, m.f.name, in, o))
}

// flush submits the chunk gathered so far, if any.
func (m *mapper[In, Out]) flush(sent func(*task)) {
	if m.b.n > 0 {
		sent(m.b.submit(m.ctx, m.f.pool, m.f.name, m.o))
	}
}

// retries is how many times a call of the Map may go again when its worker dies.
func (m *mapper[In, Out]) retries() int {
	if m.o.retries < 0 {
		return m.f.pool.cfg.Retries
	}
	return m.o.retries
}

// results gives t's Results to yield, in input order; the inputs of a chunk it has no
// outcome for go again, one per call, through again (which must send each to settle).
func (m *mapper[In, Out]) results(t *task, yield func(Result[Out]) bool, again func(i int, in msgpack.RawMessage, spent int)) bool {
	if t.chunk == 0 {
		if t.err == nil {
			m.sizer.answered(1, time.Duration(t.took.Load()))
		}
		v, err := decode[Out](t)
		return yield(Result[Out]{Index: t.index, Value: v, Err: err})
	}
	e := t.end
	m.sizer.answered(len(e.outs), time.Duration(t.took.Load()))
	if t.err == nil || e.rest == nil { // not the caller's cancel, nor the pool's end
		m.sizer.ended(t.chunk, e.whole(t.chunk))
	}
	var inputs []msgpack.RawMessage
	for i := range t.chunk {
		o, err := e.input(i)
		var r Result[Out]
		switch {
		case o != nil:
			r = itemResult[Out](t, i, *o)
		case e.retryable(i) && m.retries() > 0: // at-least-once: again, a retry spent
			if inputs == nil {
				inputs = chunkInputs(t)
			}
			again(t.index+i, inputs[i], 1)
			continue
		case err != nil:
			r = Result[Out]{Index: t.index + i, Err: t.inputError(t, i, err)}
		default: // it never started: it goes again, alone
			if inputs == nil {
				inputs = chunkInputs(t)
			}
			again(t.index+i, inputs[i], 0)
			continue
		}
		m.f.pool.inputEnded(t.handler, r.Err)
		if !yield(r) {
			return false
		}
	}
	return true
}

// Map calls the handler on every input and yields the results in input order. Inputs are read
// lazily and at most a window of calls (a few per worker slot) is outstanding; consecutive
// inputs go in chunks (WithChunk). Stopping the loop early cancels the calls still
// outstanding.
func (f Func[In, Out]) Map(ctx context.Context, inputs iter.Seq[In]) iter.Seq[Result[Out]] {
	return func(yield func(Result[Out]) bool) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		m := f.mapper(ctx, nil)
		var pending []*task // calls in input order; pending[0] is the oldest
		sent := func(t *task) { pending = append(pending, t) }
		window := f.pool.window()
		next := func() bool {
			t := pending[0]
			pending[0] = nil
			pending = pending[1:]
			<-t.done
			var singles []*task // the inputs of a chunk sent again, in order
			ok := m.results(t, yield, func(i int, in msgpack.RawMessage, spent int) {
				o := m.o
				o.index, o.again, o.retries = i, true, m.retries()-spent
				singles = append(singles, f.pool.submit(ctx, f.name, in, o))
			})
			for _, s := range singles {
				if !ok {
					break
				}
				<-s.done
				ok = m.results(s, yield, nil)
			}
			return ok
		}
		i := 0
		for in := range inputs {
			m.add(in, i, sent)
			i++
			for len(pending) >= window {
				if !next() {
					return
				}
			}
		}
		m.flush(sent)
		for len(pending) > 0 {
			if !next() {
				return
			}
		}
	}
}

// MapUnordered is Map with results yielded as they complete.
func (f Func[In, Out]) MapUnordered(ctx context.Context, inputs iter.Seq[In]) iter.Seq[Result[Out]] {
	return func(yield func(Result[Out]) bool) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		window := f.pool.window()
		finished := make(chan *task, window) // never blocks: at most window calls are outstanding
		m := f.mapper(ctx, finished)
		calls := 0
		sent := func(*task) { calls++ }
		type again struct {
			i, spent int
			in       msgpack.RawMessage
		}
		var retry []again // inputs of chunks to send again one per call, when there is room
		next := func() bool {
			t := <-finished
			calls--
			ok := m.results(t, yield, func(i int, in msgpack.RawMessage, spent int) { retry = append(retry, again{i, spent, in}) })
			for ok && len(retry) > 0 && calls < window {
				o := m.o
				o.index, o.again, o.retries = retry[0].i, true, m.retries()-retry[0].spent
				f.pool.submit(ctx, f.name, retry[0].in, o)
				calls++
				retry = retry[1:]
			}
			return ok
		}
		i := 0
		for in := range inputs {
			m.add(in, i, sent)
			i++
			for calls >= window {
				if !next() {
					return
				}
			}
		}
		m.flush(sent)
		for calls > 0 || len(retry) > 0 {
			if !next() {
				return
			}
		}
	}
}
