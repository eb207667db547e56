package supervisor

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// countingHandler counts the records logged and keeps the warnings.
type countingHandler struct {
	mu    sync.Mutex
	n     int
	warns []string
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.n++
	if r.Level == slog.LevelWarn {
		h.warns = append(h.warns, r.Message)
	}
	return nil
}
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countingHandler) WithGroup(string) slog.Handler      { return h }

// A worker writing a million 2-byte lines gets a burst of them logged, the rest counted and
// the count logged, and the tail keeps its last lines. Logging each line (and copying the
// whole tail for each) cost the parent 16 times the CPU per byte of 100-byte lines.
func TestStderrFloodIsCountedNotLogged(t *testing.T) {
	h := &countingHandler{}
	now := time.Unix(1000, 0) // the clock stands still: the limiter allows the burst only
	s := newStderrLines(slog.New(h), func() time.Time { return now })
	var tl tail
	stream := bytes.Repeat([]byte("a\n"), 1_000_000)
	stream = append(stream, "last line\n"...)
	for len(stream) > 0 {
		n := min(len(stream), 65536-7) // chunks that cut lines anywhere
		tl.write(stream[:n])
		s.feed(stream[:n])
		stream = stream[n:]
	}
	s.end()
	logged := h.n - len(h.warns)
	if logged != stderrLineBurst {
		t.Errorf("%d lines logged, want the burst, %d", logged, stderrLineBurst)
	}
	want := fmt.Sprintf("supervise: %d stderr lines not logged", 1_000_001-stderrLineBurst)
	if len(h.warns) != 1 || !strings.HasPrefix(h.warns[0], want) {
		t.Errorf("warnings %q, want one starting %q", h.warns, want)
	}
	got := tl.String()
	if len(got) > stderrTailBytes || !strings.HasSuffix(got, "a\na\nlast line\n") || !strings.HasPrefix(got, "a\n") {
		t.Errorf("tail of %d bytes: ...%q", len(got), got[max(0, len(got)-40):])
	}

	// Once the clock moves on, lines are logged again, and the count of those not logged first.
	now = now.Add(time.Second)
	s.feed([]byte("b\n"))
	if h.n != logged+2 {
		t.Errorf("after a second: %d records, want %d", h.n, logged+2)
	}
}

// Lines longer than stderrMaxLine are logged in pieces; a last line without a newline is
// logged at the end.
func TestStderrLongAndUnendedLines(t *testing.T) {
	var buf bytes.Buffer
	s := newStderrLines(slog.New(slog.NewTextHandler(&buf, nil)), time.Now)
	s.feed(bytes.Repeat([]byte("x"), stderrMaxLine+10))
	s.feed([]byte("\nno newline"))
	s.end()
	out := buf.String()
	if n := strings.Count(out, "\n"); n != 3 || !strings.Contains(out, "no newline") {
		t.Errorf("%d records:\n%.300s", n, out)
	}
}

// BenchmarkForwardStderr is the parent's CPU per byte of a worker's stderr, for short and
// ordinary lines: the two should be within a small factor.
func BenchmarkForwardStderr(b *testing.B) {
	for _, size := range []int{2, 100} {
		b.Run(fmt.Sprintf("%dB-lines", size), func(b *testing.B) {
			stream := bytes.Repeat(append(bytes.Repeat([]byte("x"), size-1), '\n'), (8<<20)/size)
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			b.SetBytes(int64(len(stream)))
			for b.Loop() {
				var tl tail
				forwardStderr(bytes.NewReader(stream), log, &tl)
			}
		})
	}
}
