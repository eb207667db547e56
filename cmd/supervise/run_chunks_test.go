package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// supervise run sends lines in chunks (--chunk 32) to Python workers: every line starts once
// and ends once (at-most-once, the default: the lines of the crashing line's chunk that ran
// before it are not run again); the line that kills its worker fails alone, as a dead worker;
// the lines that raise fail with their error; the rest succeed; and the worker did run chunk
// calls.
func TestRunChunksIsolatePoison(t *testing.T) {
	const n = 5000
	py, script := pythonScript(t, "chunk_worker.py")
	log := filepath.Join(t.TempDir(), "chunks")
	t.Setenv("CHUNK_LOG", log)
	startLog := filepath.Join(t.TempDir(), "starts")
	t.Setenv("START_LOG", startLog)
	stdout, stderr, code := runStdin(t, numbered(n), script, "--workers", "2", "--log-level", "error",
		"run", "--chunk", "32", "--call", "work", "--", py, script)
	if code != 1 {
		t.Errorf("exit status %d, want 1 (some lines failed)", code)
	}
	ended := map[int]string{}
	for _, l := range strings.Split(strings.TrimSuffix(stdout, "\n"), "\n") {
		v, _ := strings.CutPrefix(l, "ok ")
		line, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("stdout line %q", l)
		}
		if prev, dup := ended[line]; dup {
			t.Errorf("line %d ended twice: %q, %q", line, prev, l)
		}
		ended[line] = l
	}
	for _, l := range strings.Split(strings.TrimSuffix(stderr, "\n"), "\n") {
		if strings.HasPrefix(l, "time=") { // the pool's log: a worker died
			continue
		}
		m := errorLine.FindStringSubmatch(l)
		if m == nil {
			t.Errorf("stderr line %q is not an error line", l)
			continue
		}
		line, _ := strconv.Atoi(m[1])
		if prev, dup := ended[line]; dup {
			t.Errorf("line %d ended twice: %q, %q", line, prev, l)
		}
		ended[line] = m[2]
		switch {
		case line == 3333:
			if !strings.Contains(m[2], "worker died") {
				t.Errorf("the crashing line: %q; want a dead worker", m[2])
			}
		case line%997 == 0:
			if !strings.Contains(m[2], "ValueError") {
				t.Errorf("line %d: %q; want its ValueError", line, m[2])
			}
		default:
			t.Errorf("line %d failed: %q", line, m[2])
		}
	}
	if len(ended) != n {
		t.Errorf("%d lines ended, want %d", len(ended), n)
	}
	starts, err := os.ReadFile(startLog)
	if err != nil {
		t.Fatal(err)
	}
	started := map[string]int{}
	for _, l := range strings.Fields(string(starts)) {
		if started[l]++; started[l] == 2 {
			t.Errorf("line %s started twice", l)
		}
	}
	if len(started) != n {
		t.Errorf("%d lines started, want %d", len(started), n)
	}
	chunks, err := os.ReadFile(log)
	if err != nil || strings.Count(string(chunks), "\n") < n/32/2 {
		t.Errorf("the workers ran %d chunk calls (%v), want most of the lines in chunks", strings.Count(string(chunks), "\n"), err)
	}
}
