package child

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/supervise-dev/supervise/channel"
	"github.com/supervise-dev/supervise/internal/handshake"
	"github.com/supervise-dev/supervise/internal/keeper"
	"github.com/supervise-dev/supervise/internal/tracectx"
	"github.com/vmihailenco/msgpack/v5"
)

// ErrNotWorker is returned by [Serve] when the process was not started by a supervise pool.
var ErrNotWorker = errors.New(handshake.NotWorkerMessage)

// Main serves the registered handlers and exits the process if it was started by a supervise
// pool; otherwise it returns at once. Call it first thing in main, after registering handlers.
// It is also where a pool's re-executed binary becomes the keeper of a plugin worker
// (supervisor.Plugin): a program that calls Main gets keepers for its plugins.
func Main() {
	keeper.MarkAvailable()
	if keeper.Requested() {
		os.Exit(keeper.Run(os.Args[1:]))
	}
	if os.Getenv(handshake.CookieKey) == "" {
		return
	}
	if err := Serve(); err != nil {
		fmt.Fprintln(os.Stderr, "supervise worker:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// Serve runs the worker side of the protocol on stdin and stdout until stdin reaches EOF or
// the parent sends a shutdown, then answers every call it received and returns nil. It is for
// programs that are only a worker; most programs call [Main]. Without the magic cookie in the
// environment it returns ErrNotWorker.
func Serve() error {
	if os.Getenv(handshake.CookieKey) != handshake.CookieValue {
		return ErrNotWorker
	}
	calls, frames, err := redirectStdio()
	if err != nil {
		return fmt.Errorf("moving the frame streams off stdin and stdout: %w", err)
	}
	defer calls.Close()
	defer frames.Close()
	slog.SetDefault(slog.New(slog.NewJSONHandler(os.Stderr, nil)))
	grace := takeGroupDownOnSignals()
	orderly, err := serve(calls, frames)
	if !orderly {
		// Stdin ended without a shutdown message: the parent died (or broke the stream) and
		// will not take this worker's group down (docs/protocol.md, section 5). The
		// parent-death signal says the same, but may come after EOF, too late for a worker
		// that has already exited.
		takeGroupDown(grace)
	}
	return err
}

// call is one task received from the parent.
type call struct {
	id      uint64
	running *running // what its handler's context knows of it; running.chunk: payload is an array of inputs
	handler string
	payload msgpack.RawMessage
	ctx     context.Context
	cancel  context.CancelFunc
}

// worker is the state of one serve loop. Ownership: the reader (serve's own goroutine) owns
// conn's read side and the calls map's inserts; run owns handler execution; write owns conn's
// write side and is the only goroutine that writes frames; beat only queues heartbeats.
type worker struct {
	conn     *channel.Conn
	handlers map[string]rawHandler

	mu      sync.Mutex
	running map[uint64]context.CancelFunc // calls received and not yet answered
	queue   []*call
	wake    chan struct{} // signalled when queue grows or reading ends
	eof     bool          // no more calls will come

	page *channel.ProgressPage // where run records its chunks' progress, or nil

	wmu      sync.Mutex // one frame at a time on stdout: answers and heartbeats
	writeErr error      // guarded by wmu: the first failed write; later writes are skipped
}

// progressPage is this process's progress page, mapped once.
var progressPage = sync.OnceValue(openProgress)

// lastConn keeps the last serve's Conn, and so the memory of answers the parent may not have
// read yet, for the life of the process.
var lastConn atomic.Pointer[channel.Conn]

// serve runs the protocol until stdin ends; orderly reports that the parent asked for the end
// with a shutdown message.
func serve(in io.Reader, out io.Writer) (orderly bool, err error) {
	maxFrame := handshake.IntEnv(handshake.MaxFrameKey, channel.DefaultMaxFrame)
	w := &worker{
		conn:     channel.NewConn(in, out, channel.Options{MaxFrame: maxFrame, Peer: "parent"}),
		handlers: map[string]rawHandler{},
		running:  map[uint64]context.CancelFunc{},
		wake:     make(chan struct{}, 1),
	}
	registry.Lock()
	for n, h := range registry.m {
		w.handlers[n] = h
	}
	registry.Unlock()

	w.page = progressPage()
	hello, err := channel.Marshal(channel.Hello{Protocol: channel.ProtocolVersion, Pid: os.Getpid(), Language: "go",
		Handlers: handlerNames(), Chunks: true, Progress: w.page != nil})
	if err != nil {
		return false, err
	}
	if err := w.conn.Send(channel.Message{Kind: channel.KindHello, Payload: hello}); err != nil {
		return false, err
	}

	base, stop := context.WithCancel(context.Background())
	defer stop()
	ran := make(chan struct{})
	go func() { defer close(ran); w.run() }()
	beatDone := make(chan struct{})
	go func() { defer close(beatDone); w.beat(base) }()

	readErr := w.read(base)

	// Answer what was received, then stop the heartbeat and flush.
	w.mu.Lock()
	w.eof = true
	w.mu.Unlock()
	w.signal()
	<-ran
	stop()
	<-beatDone
	w.wmu.Lock()
	defer w.wmu.Unlock()
	// The last answers may still be in the pipe, to be read from this process's memory
	// (channel.Conn.Send): the Conn keeps that memory from being reused, so it must outlive
	// serve, in a program that goes on after Serve returns.
	lastConn.Store(w.conn)
	orderly = readErr == nil
	if w.writeErr != nil {
		return orderly, w.writeErr
	}
	if readErr != nil && !errors.Is(readErr, io.EOF) {
		return orderly, readErr
	}
	return orderly, nil
}

// read receives frames until EOF (io.EOF), shutdown (nil) or a broken stream. Calls go on the
// queue; cancels cancel the call's context, which also keeps a queued call from running.
func (w *worker) read(base context.Context) error {
	for {
		msgs, err := w.conn.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return err
			}
			// The parent is gone or broke the protocol: stop every handler.
			w.mu.Lock()
			for _, cancel := range w.running {
				cancel()
			}
			w.mu.Unlock()
			return err
		}
		for i := range msgs {
			m := &msgs[i]
			switch m.Kind {
			case channel.KindCall, channel.KindChunk:
				r := &running{w: w, id: m.ID, chunk: m.Kind == channel.KindChunk}
				ctx, cancel := context.WithCancel(context.WithValue(tracectx.Into(base, m.Trace), runningKey{}, r))
				c := &call{id: m.ID, running: r, handler: m.Name, payload: m.Payload, ctx: ctx, cancel: cancel}
				w.mu.Lock()
				w.running[m.ID] = cancel
				w.queue = append(w.queue, c)
				w.mu.Unlock()
				w.signal()
			case channel.KindCancel:
				w.mu.Lock()
				if cancel, ok := w.running[m.ID]; ok {
					cancel()
				}
				w.mu.Unlock()
			case channel.KindShutdown:
				return nil
			}
		}
	}
}

func (w *worker) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// run executes queued calls one at a time until the queue is empty and reading has ended.
func (w *worker) run() {
	for {
		w.mu.Lock()
		for len(w.queue) == 0 && !w.eof {
			w.mu.Unlock()
			<-w.wake
			w.mu.Lock()
		}
		if len(w.queue) == 0 {
			w.mu.Unlock()
			return
		}
		c := w.queue[0]
		w.queue[0] = nil
		w.queue = w.queue[1:]
		w.mu.Unlock()

		// The answer is written before the next call starts: if the worker then dies, the
		// parent knows that its first unanswered call is the one that was running, and that
		// the calls after it never started (docs/protocol.md, hello's concurrency).
		if err := w.send(w.execute(c)); errors.Is(err, channel.ErrFrameTooLarge) {
			w.send(channel.Message{Kind: channel.KindError, ID: c.id, Err: &channel.RemoteError{Type: "encode",
				Message: fmt.Sprintf("the result of %q does not fit in a frame: %v", c.handler, err)}})
		}

		w.mu.Lock()
		delete(w.running, c.id)
		w.mu.Unlock()
		c.cancel()
	}
}

// execute runs one call, or each input of a chunk, and returns its answer.
func (w *worker) execute(c *call) (answer channel.Message) {
	answer = channel.Message{Kind: channel.KindResult, ID: c.id}
	fail := func(e *channel.RemoteError) {
		answer.Kind, answer.Payload, answer.Err = channel.KindError, nil, e
	}
	if err := c.ctx.Err(); err != nil {
		fail(&channel.RemoteError{Type: "Canceled", Message: "task cancelled before it started"})
		return answer
	}
	h, ok := w.handlers[c.handler]
	if !ok {
		fail(&channel.RemoteError{Type: "unknown_handler",
			Message: fmt.Sprintf("no handler %q in this worker (it serves %v)", c.handler, handlerNames())})
		return answer
	}
	if c.running.chunk {
		return w.executeChunk(c, h)
	}
	out, re := invoke(c.ctx, h, c.payload)
	if re != nil {
		fail(re)
		return answer
	}
	answer.Payload, answer.Bin = out.Payload, out.Bin
	return answer
}

// executeChunk runs a chunk's inputs one by one, and answers with their outcomes; once the
// chunk is cancelled, the inputs left do not run, and the answer stops short of them. It
// records its progress in the page as it goes (the input running, each outcome), so that the
// parent knows which inputs ran if this process dies; an outcome that does not fit in the page
// ends the chunk after its input.
func (w *worker) executeChunk(c *call, h rawHandler) channel.Message {
	items, err := channel.ParseChunk(c.payload)
	if err != nil {
		return channel.Message{Kind: channel.KindError, ID: c.id, Err: &channel.RemoteError{Type: "decode", Message: err.Error()}}
	}
	if w.page != nil {
		w.page.Begin(c.id)
	}
	b := channel.ChunkHeader(nil, 0)
	done := 0
	for i, item := range items {
		if c.ctx.Err() != nil {
			break
		}
		c.running.input.Store(int32(i)) // for its puts
		if w.page != nil {
			w.page.Starting(i)
		}
		out, re := invoke(c.ctx, h, item)
		o := channel.ChunkOutcome{Err: re, Value: out.Payload}
		if re == nil && out.Bin != nil {
			o.Value, _ = channel.AppendValue(nil, out.Bin)
		}
		b = channel.AppendChunkOutcome(b, o)
		done++
		if w.page != nil && !w.page.Finished(o) {
			break
		}
	}
	channel.SetChunkCount(b, done)
	return channel.Message{Kind: channel.KindResult, ID: c.id, Payload: b}
}

// invoke runs h on one input; a panic becomes an error with the stack.
func invoke(ctx context.Context, h rawHandler, payload msgpack.RawMessage) (out channel.Message, re *channel.RemoteError) {
	defer func() {
		if r := recover(); r != nil {
			re = &channel.RemoteError{Type: "panic", Message: fmt.Sprint(r), Traceback: string(debug.Stack())}
		}
	}()
	out, err := h(ctx, payload)
	if err == nil {
		return out, nil
	}
	if !errors.As(err, &re) {
		re = &channel.RemoteError{Type: "error", Message: err.Error()}
		if errors.Is(err, context.Canceled) {
			re.Type = "Canceled"
		}
	}
	return out, re
}

// send writes one frame and returns the first write error so far. After a failed write (the
// parent is gone) it writes nothing. A message too big for a frame is not written, and is
// not a failed write: that error is returned, and the stream goes on.
func (w *worker) send(m channel.Message) error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	if w.writeErr != nil {
		return w.writeErr
	}
	err := w.conn.Send(m)
	if errors.Is(err, channel.ErrFrameTooLarge) {
		return err
	}
	w.writeErr = err
	return err
}

// beat sends a heartbeat every period until ctx ends, from a goroutine of its own so that a
// busy handler does not stop it.
func (w *worker) beat(ctx context.Context) {
	period := time.Duration(handshake.IntEnv(handshake.HeartbeatKey, int(handshake.DefaultHeartbeat/time.Millisecond))) * time.Millisecond
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.send(channel.Message{Kind: channel.KindHeartbeat})
		}
	}
}
