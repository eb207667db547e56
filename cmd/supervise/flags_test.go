package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Flags out of range are refused before anything starts, naming the flag: --workers -3 and
// --in-flight -1 panicked (a channel of negative size), --workers 0 waited forever, --workers
// 100000 forked until it ran out of file descriptors, --timeout -1s was taken.
func TestFlagsOutOfRange(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	must(t, os.WriteFile(file, nil, 0o644))
	busy, err := net.Listen("tcp", "127.0.0.1:0") // serve on a port in use failed after 30 s
	must(t, err)
	defer busy.Close()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--workers", "-3", "digest", dir}, "--workers -3: at least 1"},
		{[]string{"--workers", "0", "digest", dir}, "--workers 0: at least 1"},
		{[]string{"--workers", "100000", "digest", dir}, "limit of open files"},
		{[]string{"--in-flight", "-1", "run", "--", "cat"}, "--in-flight -1: at least 1"},
		{[]string{"--timeout", "-1s", "digest", dir}, "--timeout -1s"},
		{[]string{"--cancel-grace", "0s", "digest", dir}, "--cancel-grace 0s: above 0"},
		{[]string{"--retries", "-1", "digest", dir}, "--retries -1"},
		{[]string{"serve", "--nkey", "NOTAKEY"}, `--nkey "NOTAKEY": not an nkey`},
		{[]string{"serve", "--store", file, "--listen", "127.0.0.1:0"}, "not a directory"},
		{[]string{"serve", "--store", filepath.Join(dir, "store"), "--listen", busy.Addr().String()}, "address already in use"},
	} {
		_, stderr, code := run(t, tc.args...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want exit 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
}

// The default worker count is the CPUs the process may use (runtime.GOMAXPROCS, which a cgroup
// CPU quota and an affinity mask lower, and GOMAXPROCS sets), not the machine's core count:
// here GOMAXPROCS=1 stands in for a quota of one CPU.
func TestDefaultWorkersFollowGOMAXPROCS(t *testing.T) {
	cmd := exec.Command(binary, "--report", "digest", t.TempDir())
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !regexp.MustCompile(`(?m)^worker +tasks`).Match(out) {
		t.Fatalf("no per-worker table in the report:\n%s", out)
	}
	rows := regexp.MustCompile(`(?m)^\d+ +\d+ +\d+ `).FindAll(out, -1)
	if len(rows) != 1 {
		t.Fatalf("%d workers with GOMAXPROCS=1, want 1:\n%s", len(rows), out)
	}
}
