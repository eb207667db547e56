package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseHalt(t *testing.T) {
	for spec, want := range map[string]haltRule{
		"never": {}, "1": {when: "soon", on: "fail", count: 1}, "2": {when: "now", on: "fail", count: 1},
		"now,fail=1": {when: "now", on: "fail", count: 1}, "soon,fail=3": {when: "soon", on: "fail", count: 3},
		"now,success=1": {when: "now", on: "success", count: 1}, "soon,fail=10%": {when: "soon", on: "fail", percent: 10},
		"now,done=5": {when: "now", on: "done", count: 5},
	} {
		if got, err := parseHalt(spec); err != nil || got != want {
			t.Errorf("%q: %+v %v, want %+v", spec, got, err, want)
		}
	}
	for _, spec := range []string{"later,fail=1", "now,fail", "now,fail=0", "now,fail=x", "now,fail=101%", "soon,oops=1", "now"} {
		if _, err := parseHalt(spec); err == nil || !strings.Contains(err.Error(), "--halt") {
			t.Errorf("%q: %v, want an error naming --halt", spec, err)
		}
	}
}

func TestHalter(t *testing.T) {
	h := halter{rule: haltRule{when: "soon", on: "fail", count: 2}}
	if h.ended(true) || h.ended(false) || !h.ended(true) {
		t.Error("fail=2 did not halt at the second failure alone")
	}
	p := halter{rule: haltRule{when: "now", on: "fail", percent: 50}, total: 4}
	if p.ended(true) || !p.ended(true) {
		t.Error("fail=50% of 4 did not halt at the second failure alone")
	}
}

// The log is written a line per job and read back: a line cut short (a killed run) is a job
// that did not end; a line that is not a job log's is an error naming the file and line.
func TestJobLogRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	l, err := openJobLog(path, false)
	must(t, err)
	must(t, l.add(jobEntry{Seq: 1, Start: time.Unix(1700000000, 5e8), Runtime: 1500 * time.Millisecond, Command: "echo a\tb\nc"}))
	must(t, l.add(jobEntry{Seq: 2, Exit: 3, Command: "false"}))
	must(t, l.close())
	b, _ := os.ReadFile(path)
	if want := joblogHeader + "1\t:\t1700000000.500\t     1.500\t0\t0\t0\t0\techo a\\tb\\nc\n"; !strings.HasPrefix(string(b), want) {
		t.Fatalf("log:\n%q\nwant it to start with\n%q", b, want)
	}
	must(t, os.WriteFile(path, append(b, "3\t:\t1.0"...), 0o644))
	past, err := readJobLog(path)
	if err != nil || len(past.bySeq) != 2 || past.bySeq[1] || !past.bySeq[2] || !past.skip(0, "echo a\tb\nc", true, false) {
		t.Fatalf("%+v %v", past, err)
	}
	must(t, os.WriteFile(path, []byte(joblogHeader+"x\ty\n"), 0o644))
	if _, err := readJobLog(path); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("a bad line: %v", err)
	}
}
