package supervisor

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"sync"
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
// the tail. A line that is a JSON object with "level" and "msg" (slog's JSON handler) keeps its
// level and fields; any other line is logged at INFO.
func forwardStderr(r io.Reader, log *slog.Logger, t *tail) {
	br := bufio.NewReaderSize(r, 16<<10)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			line = bytes.TrimRight(line, "\r\n")
			t.add(line)
			logLine(log, line)
		}
		if err == bufio.ErrBufferFull {
			continue // a very long line comes in pieces
		}
		if err != nil {
			return
		}
	}
}

func logLine(log *slog.Logger, line []byte) {
	ctx := context.Background()
	if len(line) > 0 && line[0] == '{' {
		var rec map[string]any
		if json.Unmarshal(line, &rec) == nil {
			msg, _ := rec["msg"].(string)
			lvl, _ := rec["level"].(string)
			var level slog.Level
			if level.UnmarshalText([]byte(lvl)) == nil && msg != "" {
				attrs := make([]slog.Attr, 0, len(rec))
				for k, v := range rec {
					if k != "msg" && k != "level" && k != "time" {
						attrs = append(attrs, slog.Any(k, v))
					}
				}
				log.LogAttrs(ctx, level, msg, attrs...)
				return
			}
		}
	}
	log.LogAttrs(ctx, slog.LevelInfo, strings.ToValidUTF8(string(line), "\uFFFD"), slog.String("stream", "stderr"))
}
