package supervisor

import (
	"bufio"
	"bytes"
	"io"
	"log/slog"
	"sync"

	"github.com/supervise-dev/supervise/internal/logline"
)

// stderrTailBytes is how much of a worker's stderr is kept for its error messages.
const stderrTailBytes = 4 << 10

// tail keeps the last stderrTailBytes of a stream.
type tail struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tail) add(line []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, line...)
	t.buf = append(t.buf, '\n')
	if over := len(t.buf) - stderrTailBytes; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// forwardStderr reads the worker's stderr line by line until EOF (or a read error: the owner
// closes the pipe after a delay if a grandchild keeps it open), logging each line and keeping
// the tail. Structured lines (slog's JSON, hclog's JSON and text formats) keep their level and
// fields; any other line is logged at INFO (see logline.Log).
func forwardStderr(r io.Reader, log *slog.Logger, t *tail) {
	br := bufio.NewReaderSize(r, 16<<10)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			line = bytes.TrimRight(line, "\r\n")
			t.add(line)
			logline.Log(log, line)
		}
		if err == bufio.ErrBufferFull {
			continue // a very long line comes in pieces
		}
		if err != nil {
			return
		}
	}
}
