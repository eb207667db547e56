package supervisor

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/supervise-dev/supervise/internal/logline"
	"golang.org/x/time/rate"
)

// stderrTailBytes is how much of a worker's stderr is kept for its error messages.
const stderrTailBytes = 4 << 10

// tail keeps the last stderrTailBytes of a stream. It keeps up to twice that and moves the
// bytes back only when it is full, so that a flood of short lines costs a copy of each byte,
// not of the whole tail per line.
type tail struct {
	mu  sync.Mutex
	buf []byte
}

// write keeps p, raw bytes of the stream.
func (t *tail) write(p []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(p) >= stderrTailBytes {
		t.buf = append(t.buf[:0], p[len(p)-stderrTailBytes:]...)
		return
	}
	if len(t.buf)+len(p) > 2*stderrTailBytes {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-(stderrTailBytes-len(p)):]...)
	}
	t.buf = append(t.buf, p...)
}

// add keeps one line (without its newline).
func (t *tail) add(line []byte) {
	t.write(line)
	t.write([]byte{'\n'})
}

// String is the last stderrTailBytes at most, from the start of a line when it can be.
func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.buf
	if over := len(b) - stderrTailBytes; over > 0 {
		b = b[over:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 && i < len(b)-1 {
			b = b[i+1:]
		}
	}
	return string(bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n")))
}

// Workers' stderr lines are logged at most this fast, per worker, beyond a burst: a worker
// flooding its stderr must not make the parent spend its CPU logging (nor wait on a slow
// log sink). The lines past the rate are counted, and the count logged; the tail keeps them.
const (
	stderrLinesPerSecond = 2000
	stderrLineBurst      = 20000
	stderrMaxLine        = 16 << 10 // a longer line is logged in pieces of this size
)

// forwardStderr reads the worker's stderr until EOF (or a read error: the owner closes the
// pipe after a delay if a grandchild keeps it open), keeping the tail and logging each line,
// up to stderrLinesPerSecond. Structured lines (slog's JSON, hclog's JSON and text formats)
// keep their level and fields; any other line is logged at INFO (see logline.Log).
func forwardStderr(r io.Reader, log *slog.Logger, t *tail) {
	f := newStderrLines(log, time.Now)
	buf := make([]byte, 64<<10)
	for {
		n, err := r.Read(buf)
		t.write(buf[:n])
		f.feed(buf[:n])
		if err != nil {
			f.end()
			return
		}
	}
}

// stderrLines cuts a stream into lines and logs them, within a rate.
type stderrLines struct {
	log     *slog.Logger
	limit   *rate.Limiter
	now     func() time.Time
	partial []byte // the start of a line not yet ended
	dropped int    // lines not logged since the last report of it
}

func newStderrLines(log *slog.Logger, now func() time.Time) *stderrLines {
	return &stderrLines{log: log, limit: rate.NewLimiter(stderrLinesPerSecond, stderrLineBurst), now: now}
}

// feed takes the next bytes of the stream. Lines past the rate are only counted: once the
// limiter refuses one, the rest of p is counted with one pass of bytes.Count.
func (s *stderrLines) feed(p []byte) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			s.partial = append(s.partial, p...)
			for len(s.partial) >= stderrMaxLine { // a very long line goes in pieces
				s.line(s.partial[:stderrMaxLine])
				s.partial = append(s.partial[:0], s.partial[stderrMaxLine:]...)
			}
			return
		}
		line := p[:i]
		if len(s.partial) > 0 {
			line = append(s.partial, line...)
		}
		p = p[i+1:]
		if !s.line(line) {
			s.dropped += bytes.Count(p, []byte{'\n'})
			p = p[bytes.LastIndexByte(p, '\n')+1:]
		}
		s.partial = s.partial[:0]
	}
}

// line logs one line if the rate allows, and reports whether it did.
func (s *stderrLines) line(line []byte) bool {
	if !s.limit.AllowN(s.now(), 1) {
		s.dropped++
		return false
	}
	s.reportDropped()
	logline.Log(s.log, bytes.TrimRight(line, "\r"))
	return true
}

func (s *stderrLines) reportDropped() {
	if s.dropped > 0 {
		s.log.Warn(fmt.Sprintf("supervise: %d stderr lines not logged: the worker wrote them faster than %d a second", s.dropped, stderrLinesPerSecond))
		s.dropped = 0
	}
}

// end logs a last line without a newline, and the count of lines not logged.
func (s *stderrLines) end() {
	if len(s.partial) > 0 {
		s.line(s.partial)
		s.partial = nil
	}
	s.reportDropped()
}
