package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// The JSON report validates against docs/report.schema.json and its figures add up; the text
// report says the same on stderr; stdout is the digest alone.
func TestReport(t *testing.T) {
	root := oddTree(t)
	expected := want(t, root)
	var files, bytes int64
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if info, _ := d.Info(); err == nil && d.Type().IsRegular() {
			files, bytes = files+1, bytes+info.Size()
		}
		return err
	})
	path := filepath.Join(t.TempDir(), "report.json")
	out, errOut, code := run(t, "-j", "2", "digest", "--report", "--report-json", path, root)
	if code != 0 || out != string(expected) {
		t.Fatalf("exit %d, stderr %q; stdout differs from sha512sum's: %v", code, errOut, out != string(expected))
	}

	schema, err := jsonschema.NewCompiler().Compile("../../docs/report.schema.json")
	must(t, err)
	f, err := os.Open(path)
	must(t, err)
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	must(t, err)
	if err := schema.Validate(doc); err != nil {
		t.Fatalf("the report does not match its schema: %v", err)
	}

	var r jobReport
	b, _ := os.ReadFile(path)
	must(t, json.Unmarshal(b, &r))
	tasks := 0
	for _, w := range r.PerWorker {
		tasks += w.Tasks
	}
	switch {
	case r.Command != "digest" || r.Workers != 2 || len(r.PerWorker) != 2 || r.Cores != runtime.NumCPU() || len(r.CoreBusy) != r.Cores:
		t.Errorf("report's shape: %s", b)
	case int64(r.Items) != files || r.Bytes != bytes || r.Failed != 0:
		t.Errorf("report: %d items of %d bytes, %d failed; the tree has %d files of %d bytes", r.Items, r.Bytes, r.Failed, files, bytes)
	case tasks == 0 || len(r.Slowest) == 0 || slices.ContainsFunc(r.Slowest, func(s slowTask) bool { return s.What == "" }):
		t.Errorf("report: %d tasks, slowest %+v (each must say what it was)", tasks, r.Slowest)
	case r.WorkersCPU <= 0 || r.Wall <= 0 || r.Efficiency <= 0 || r.Efficiency > 1.5 || r.CPU < r.WorkersCPU:
		t.Errorf("report: wall %v, cpu %v (workers %v), efficiency %v", r.Wall, r.CPU, r.WorkersCPU, r.Efficiency)
	}
	if strings.Contains(errOut, "\x1b") {
		t.Errorf("stderr, not a terminal, holds escape codes: %q", errOut)
	}
	for _, re := range []string{
		`(?m)^digest: \d+ items, .+, 0 failed$`,
		`(?m)^wall \d+\.\d{3}s  cpu \d+\.\d{3}s \(workers .*\)  parallel efficiency \d+% of \d+ cores$`,
		`(?m)^core busy:(  cpu\d+ \d+%)+$`,
		`(?m)^worker +tasks +failed +cpu +max rss +restarts$`,
		`(?m)^1 +\d+ +0 +\d+\.\d{3}s +\d+(\.\d)? [KM]iB +0$`,
		`(?m)^slowest tasks +worker +took +what$`,
	} {
		if !regexp.MustCompile(re).MatchString(errOut) {
			t.Errorf("no line of the text report matches %s:\n%s", re, errOut)
		}
	}
}

// sparseTree is a directory of n sparse files of size bytes each: quick to make (nothing is
// written to disk), slow to hash. One file is called "sparse", more "sparse0", "sparse1", ...
func sparseTree(t *testing.T, n int, size int64) string {
	t.Helper()
	root := t.TempDir()
	for i := range n {
		name := "sparse"
		if n > 1 {
			name += strconv.Itoa(i)
		}
		f, err := os.Create(filepath.Join(root, name))
		must(t, err)
		must(t, f.Truncate(size))
		must(t, f.Close())
	}
	return root
}

// The live view shows only on a terminal unless --progress forces it; forced into a file it
// does not change stdout; --quiet silences it.
func TestLiveViewOnlyOnTerminal(t *testing.T) {
	root := sparseTree(t, 1, 512<<20)
	plain, errOut, code := run(t, "digest", root) // stderr is a pipe: no view
	if code != 0 || len(plain) != 128+2+len(root)+len("/sparse")+1 || errOut != "" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, plain, errOut)
	}
	out, errOut, code := run(t, "digest", "--progress", root)
	if code != 0 || out != plain || !strings.Contains(errOut, "cpu0") || !strings.Contains(errOut, "1/1 files") {
		t.Fatalf("--progress: exit %d, stdout as without %v, stderr %q", code, out == plain, errOut)
	}
	if _, errOut, _ = run(t, "digest", "--progress", "--quiet", root); errOut != "" {
		t.Fatalf("--quiet beats --progress: stderr %q", errOut)
	}
}

// A job keeps the names of its running tasks and of its slowest ended ones, not one per task.
func TestTaskNamesKeepTheSlowest(t *testing.T) {
	n := newTaskNames()
	const tasks = 10000
	for id := uint64(1); id <= tasks; id++ {
		n.started(id, "task "+strconv.FormatUint(id, 10))
		took := time.Duration(id*7919%tasks) * time.Microsecond // every took from 0 to tasks-1, shuffled
		n.mu.Lock()
		n.end(id, took)
		n.mu.Unlock()
	}
	if len(n.names) != keepNames {
		t.Fatalf("%d names kept after %d tasks, want %d", len(n.names), tasks, keepNames)
	}
	for id := uint64(1); id <= tasks; id++ {
		slow := id*7919%tasks >= tasks-keepNames
		if got := n.name(id); (got != "") != slow {
			t.Errorf("task %d (took %d us): name %q", id, id*7919%tasks, got)
		}
	}
}
