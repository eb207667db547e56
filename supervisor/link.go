package supervisor

import (
	"github.com/supervise-dev/supervise/channel"
)

// link is how the pool talks to a worker process, kept apart from the process itself (as
// hashicorp/go-plugin keeps a plugin's protocol apart from running it): frames of our protocol
// over the worker's pipes (frameLink), or the connection Config.Plugin made (pluginLink). The
// sender, the reader and the owner use only these methods, never asking which it is.
type link interface {
	// send delivers calls that the ledger now holds: as frames, or each started on the
	// plugin's client. An error means the worker cannot be fed.
	send(tasks []*task) error
	// cancel tells the worker that call id is cancelled. (A plugin call's context is
	// cancelled through task.stopCall instead: nothing to send.)
	cancel(id uint64)
	// shutdown tells the worker it gets no more calls: it is to exit.
	shutdown()
	// serve handles what the worker sends until its stream ends (the owner runs it); a
	// plugin's stream is not ours to read, and it ends when the process is reaped.
	serve() error
	// end, once the process is reaped, joins whatever the link started.
	end()
	// bytes is how many bytes it has read from the worker and written to it (0 for a plugin,
	// whose connection is not ours to count).
	bytes() (in, out uint64)
}

// frameLink speaks our protocol (docs/protocol.md) over the worker's stdin and stdout. Only
// the sender calls send, cancel and shutdown; only the owner calls serve.
type frameLink struct {
	w     *worker
	conn  *channel.Conn
	batch []channel.Message // the sender's, reused
	cuts  []int             // where each frame of batch ends
}

// send writes calls in as few frames as fit: a frame holds calls up to batchBytes of payload,
// and never more than the frame limit or channel.MaxBatch calls; a big call starts a frame of
// its own, so the worker can start on it as soon as it has read it.
func (l *frameLink) send(tasks []*task) error {
	batch, cuts := l.batch[:0], l.cuts[:0]
	room := channel.FrameRoom(l.w.p.cfg.MaxFrame)
	frameBytes, inFrame := 0, 0
	for _, t := range tasks {
		size := channel.CallSize(t.handler, len(t.payload)+len(t.bin), t.bin != nil) + channel.TraceSize(t.trace)
		if inFrame > 0 && (frameBytes+size > batchBytes || frameBytes+size > room || inFrame == channel.MaxBatch) {
			cuts = append(cuts, len(batch))
			frameBytes, inFrame = 0, 0
		}
		frameBytes += size
		inFrame++
		kind := channel.KindCall
		if t.chunk > 0 {
			kind = channel.KindChunk
		}
		batch = append(batch, channel.Message{Kind: kind, ID: t.id, Name: t.handler, Payload: t.payload, Bin: t.bin, Trace: t.trace})
	}
	cuts = append(cuts, len(batch))
	defer func() { clear(batch); l.batch, l.cuts = batch[:0], cuts[:0] }()
	from := 0
	for _, to := range cuts {
		if from == to {
			continue
		}
		if err := l.conn.Send(batch[from:to]...); err != nil {
			return err
		}
		from = to
	}
	return nil
}

func (l *frameLink) bytes() (in, out uint64) { return l.conn.Bytes() }

func (l *frameLink) cancel(id uint64) {
	_ = l.conn.Send(channel.Message{Kind: channel.KindCancel, ID: id})
}

// shutdown sends a shutdown, then EOF: a worker that sees EOF without it takes its parent
// for dead and its group down itself (docs/protocol.md, section 5).
func (l *frameLink) shutdown() {
	_ = l.conn.Send(channel.Message{Kind: channel.KindShutdown})
	l.w.stdin.Close()
}

func (l *frameLink) serve() error { return l.w.read(l.conn) }

func (l *frameLink) end() {}

var (
	_ link = (*frameLink)(nil)
	_ link = (*pluginLink)(nil)
)
