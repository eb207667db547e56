package supervisor

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/supervise-dev/supervise/channel"
	"github.com/supervise-dev/supervise/internal/handshake"
)

// startFrames starts a worker that speaks our protocol: it waits for its hello, then runs
// Config.Init on it.
func (w *worker) startFrames() error {
	cfg := &w.p.cfg
	if err := w.spawn(handshake.Env(channel.ProtocolVersion, w.id, cfg.MaxFrame, cfg.Heartbeat, cfg.StopGrace), true); err != nil {
		return w.startError(err)
	}
	rec := &recorder{r: w.stdout, on: true}
	conn := channel.NewConn(rec, w.stdin, channel.Options{MaxFrame: cfg.MaxFrame,
		Peer: fmt.Sprintf("worker %d (pid %d)", w.id, w.pid)})
	w.link = &frameLink{w: w, conn: conn}
	_ = w.stdout.SetReadDeadline(time.Now().Add(cfg.StartTimeout))
	err := w.handshake(conn)
	if err == nil && cfg.Init.Handler != "" {
		rec.on = false
		err = w.initialize(conn)
	}
	if err != nil {
		e := w.startError(err)
		if rec.on {
			e.Received = rec.quote(w.stdout)
		}
		return w.abort(e)
	}
	_ = w.stdout.SetReadDeadline(time.Time{})
	rec.on = false
	return nil
}

// handshake reads the first frame and checks that it is a hello of our protocol version.
func (w *worker) handshake(conn *channel.Conn) error {
	msgs, err := conn.Recv()
	switch {
	case errors.Is(err, io.EOF):
		return fmt.Errorf("%w: stdout closed before a hello (did the worker exit?)", ErrBadHello)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("%w: no hello within %v (Config.StartTimeout)", ErrBadHello, w.p.cfg.StartTimeout)
	case err != nil:
		return fmt.Errorf("%w: %v", ErrBadHello, err)
	}
	h, err := parseHello(msgs)
	if err != nil {
		return err
	}
	w.handlers = h.Handlers
	w.concurrency = max(1, h.Concurrency)
	// Chunks only where the worker keeps their record: the pool must know which of a chunk's
	// inputs ran if the worker dies (at-most-once).
	w.chunks = h.Chunks && h.Progress && w.page != nil
	if !w.chunks {
		w.p.noChunks.Store(true)
	}
	return nil
}

// parseHello checks that a worker's first frame is one hello of our protocol version.
func parseHello(msgs []channel.Message) (channel.Hello, error) {
	var h channel.Hello
	if len(msgs) != 1 || msgs[0].Kind != channel.KindHello {
		return h, fmt.Errorf("%w: the first frame holds %d message(s), the first a %s, not one hello", ErrBadHello, len(msgs), msgs[0].Kind)
	}
	if err := channel.Unmarshal(msgs[0].Payload, &h); err != nil {
		return h, fmt.Errorf("%w: the hello's payload: %v", ErrBadHello, err)
	}
	if h.Protocol != channel.ProtocolVersion {
		return h, fmt.Errorf("%w: %w: the worker speaks protocol version %d, this parent speaks %d", ErrBadHello, ErrProtocolVersion, h.Protocol, channel.ProtocolVersion)
	}
	if h.Concurrency < 0 {
		return h, fmt.Errorf("%w: concurrency %d", ErrBadHello, h.Concurrency)
	}
	return h, nil
}

// initialize runs Config.Init on the worker before it takes tasks: one call, whose answer must
// be a result, within what is left of Config.StartTimeout.
func (w *worker) initialize(conn *channel.Conn) error {
	init := w.p.cfg.Init
	payload, err := channel.Marshal(init.Input)
	if err != nil {
		return fmt.Errorf("encoding the input of Config.Init: %w", err)
	}
	id := w.p.nextTask.Add(1)
	if err := conn.Send(channel.Message{Kind: channel.KindCall, ID: id, Name: init.Handler, Payload: payload}); err != nil {
		return fmt.Errorf("sending Config.Init: %w", err)
	}
	for {
		msgs, err := conn.Recv()
		if err != nil {
			return fmt.Errorf("waiting for Config.Init (%s): %w", init.Handler, err)
		}
		w.lastSeen.Store(w.p.clock.now().UnixNano())
		for _, m := range msgs {
			switch {
			case m.ID != id:
			case m.Kind == channel.KindResult:
				return nil
			case m.Kind == channel.KindError:
				return fmt.Errorf("Config.Init (%s) failed: %w", init.Handler, m.Err)
			}
		}
	}
}

// recorder keeps the first bytes read from a worker's stdout, to quote them in a start-up error.
type recorder struct {
	r   io.Reader
	on  bool // only touched by the goroutine reading frames
	buf []byte
}

const quoteBytes = 200

func (r *recorder) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if r.on && len(r.buf) < quoteBytes {
		r.buf = append(r.buf, p[:min(n, quoteBytes-len(r.buf))]...)
	}
	return n, err
}

// quote returns the recorded bytes, topped up with whatever f still has within a short wait.
func (r *recorder) quote(f *os.File) []byte {
	if len(r.buf) < quoteBytes {
		_ = f.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		more := make([]byte, quoteBytes-len(r.buf))
		n, _ := io.ReadFull(f, more)
		r.buf = append(r.buf, more[:n]...)
	}
	return r.buf
}
