package logline

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestLog(t *testing.T) {
	for _, c := range []struct{ line, want string }{
		{`{"time":"x","level":"WARN","msg":"slog record","n":3}`, `level=WARN msg="slog record" n=3`},
		{`{"@level":"error","@message":"hclog record","@module":"kv","@timestamp":"2026-01-01T00:00:00.000000Z","key":"v"}`, `level=ERROR msg="hclog record"`},
		{`{"@level":"trace","@message":"fine"}`, `level=DEBUG-4 msg=fine`},
		{`[WARN] hclog text`, `level=WARN msg="hclog text" stream=stderr`},
		{`2026/11/23 08:20:51 [DEBUG] plugin: accept`, `level=DEBUG msg="plugin: accept" stream=stderr`},
		{`plain text`, `level=INFO msg="plain text" stream=stderr`},
		{`{"not":"a record"}`, `level=INFO msg="{\"not\":\"a record\"}" stream=stderr`},
	} {
		var out bytes.Buffer
		log := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: LevelTrace,
			ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
				if a.Key == slog.TimeKey {
					return slog.Attr{}
				}
				return a
			}}))
		Log(log, []byte(c.line))
		if got := strings.TrimSpace(out.String()); !strings.HasPrefix(got, c.want) {
			t.Errorf("%s\n logged %s\n want   %s", c.line, got, c.want)
		}
		if strings.Contains(c.line, "@module") && !strings.Contains(out.String(), "module=kv") || strings.Contains(out.String(), "@timestamp") {
			t.Errorf("%s: fields: %s", c.line, out.String())
		}
	}
}

func TestWriterSplitsLines(t *testing.T) {
	var out bytes.Buffer
	var lines []string
	w := &Writer{Log: slog.New(slog.NewTextHandler(&out, nil)), OnLine: func(l []byte) { lines = append(lines, string(l)) }}
	w.Write([]byte("one\ntw"))
	w.Write([]byte("o\r\nthree"))
	if len(lines) != 2 || lines[0] != "one" || lines[1] != "two" {
		t.Errorf("lines %q, want one and two (three waits for its newline)", lines)
	}
}
