// Package logline turns one line a worker wrote on its stderr into a log/slog record, keeping
// the level and fields of the structured formats workers commonly write: slog's JSON handler,
// and hashicorp/go-hclog's JSON format (what go-plugin plugins write) and its "[LEVEL]" text
// prefix.
package logline

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"regexp"
	"strings"
	"sync"
)

// LevelTrace is hclog's TRACE, below slog's DEBUG.
const LevelTrace = slog.LevelDebug - 4

// Log logs line to log:
//   - a JSON object with "level" and "msg" (slog's JSON handler) keeps its level and fields;
//   - a JSON object with "@level" and "@message" (hclog's JSON format) keeps its level and
//     fields, "@module" as the field "module";
//   - a line starting "[TRACE]", "[DEBUG]", "[INFO]", "[WARN]" or "[ERROR]" (hclog's text
//     format, as go-plugin reads it), after the date and time of the standard library's log
//     package if any, gets that level;
//   - any other line is logged at INFO with the field stream=stderr.
func Log(log *slog.Logger, line []byte) {
	ctx := context.Background()
	if len(line) > 0 && line[0] == '{' {
		var rec map[string]any
		if json.Unmarshal(line, &rec) == nil {
			if level, msg, attrs, ok := structured(rec); ok {
				log.LogAttrs(ctx, level, msg, attrs...)
				return
			}
		}
	}
	text := strings.ToValidUTF8(string(line), "\uFFFD")
	body := text
	if len(body) > 0 && body[0] >= '0' && body[0] <= '9' { // the regexp only for a likely date
		body = stdlogTime.ReplaceAllString(body, "")
	}
	for prefix, level := range textLevels {
		if strings.HasPrefix(body, prefix) {
			log.LogAttrs(ctx, level, strings.TrimSpace(strings.TrimPrefix(body, prefix)), slog.String("stream", "stderr"))
			return
		}
	}
	log.LogAttrs(ctx, slog.LevelInfo, text, slog.String("stream", "stderr"))
}

// stdlogTime is the date and time the standard library's log package puts first.
var stdlogTime = regexp.MustCompile(`^\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}(\.\d+)? `)

var textLevels = map[string]slog.Level{"[TRACE]": LevelTrace, "[DEBUG]": slog.LevelDebug,
	"[INFO]": slog.LevelInfo, "[WARN]": slog.LevelWarn, "[ERROR]": slog.LevelError}

// The keys of a record that are not its fields.
var (
	slogKeys  = map[string]bool{"level": true, "msg": true, "time": true}
	hclogKeys = map[string]bool{"@level": true, "@message": true, "@timestamp": true}
)

// structured reads a record of slog's JSON handler or of hclog's JSON format.
func structured(rec map[string]any) (level slog.Level, msg string, attrs []slog.Attr, ok bool) {
	levelKey, msgKey, skip := "level", "msg", slogKeys
	if _, hc := rec["@message"]; hc {
		levelKey, msgKey, skip = "@level", "@message", hclogKeys
	}
	msg, _ = rec[msgKey].(string)
	lvl, _ := rec[levelKey].(string)
	if levelKey == "@level" {
		level, ok = hclogLevel(lvl)
	} else {
		ok = level.UnmarshalText([]byte(lvl)) == nil && msg != ""
	}
	if !ok {
		return 0, "", nil, false
	}
	attrs = make([]slog.Attr, 0, len(rec))
	for k, v := range rec {
		switch {
		case skip[k]:
		case k == "@module":
			attrs = append(attrs, slog.Any("module", v))
		default:
			attrs = append(attrs, slog.Any(k, v))
		}
	}
	return level, msg, attrs, true
}

func hclogLevel(s string) (slog.Level, bool) {
	switch strings.ToLower(s) {
	case "trace":
		return LevelTrace, true
	case "debug":
		return slog.LevelDebug, true
	case "info":
		return slog.LevelInfo, true
	case "warn", "warning":
		return slog.LevelWarn, true
	case "error":
		return slog.LevelError, true
	}
	return 0, false
}

// Writer logs every whole line written to it with Log, after passing it to OnLine if set.
// Writes may come from several goroutines; a last line without a newline waits for the next.
type Writer struct {
	Log    *slog.Logger
	OnLine func(line []byte)

	mu  sync.Mutex
	buf []byte
}

func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	rest := w.buf
	for {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			break
		}
		line := bytes.TrimRight(rest[:i], "\r")
		if w.OnLine != nil {
			w.OnLine(line)
		}
		Log(w.Log, line)
		rest = rest[i+1:]
	}
	w.buf = append(w.buf[:0], rest...)
	return len(p), nil
}
