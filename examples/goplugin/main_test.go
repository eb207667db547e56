package main

import (
	"os"
	"os/exec"
	"regexp"
	"testing"
	"time"

	"github.com/supervise-dev/supervise/internal/proctest"
)

// The example runs as its doc comment says: for each protocol, a stuck call fails at its time
// limit, its plugin is killed and replaced, and the new one answers; no process is left.
func TestExample(t *testing.T) {
	host, cleanHost, err := proctest.Build(".")
	if err != nil {
		t.Fatal(err)
	}
	defer cleanHost()
	plugin, cleanPlugin, err := proctest.Build("./plugin")
	if err != nil {
		t.Fatal(err)
	}
	defer cleanPlugin()
	cmd := exec.Command(host, plugin)
	cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	const protocol = `hello worker \d, from plugin pid \d+
hello worker \d, from plugin pid \d+
stuck call: task \d+ \(greeter\) on worker \d \(pid \d+\): time limit exceeded \(500ms\)
killed: worker \d \(task \d+ still running 200ms after its cancel\)
restarted: worker 3 in its place
hello the new worker, from plugin pid \d+
(slot \d: worker \d, 2 processes \(keeper and plugin\), RSS [\d.]+ MiB, \d calls, \d failed
){2}`
	want := regexp.MustCompile(`^== netrpc
` + protocol + `== grpc
` + protocol + `$`)
	if !want.Match(out) {
		t.Errorf("output:\n%s", out)
	}
	proctest.AwaitNoProcessRuns(t, 5*time.Second, plugin)
	proctest.AwaitNoProcessRuns(t, 5*time.Second, host)
}
