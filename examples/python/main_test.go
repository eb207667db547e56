package main

import (
	"testing"
	"time"

	"github.com/supervise-dev/supervise/internal/proctest"
)

func TestPythonExample(t *testing.T) {
	py := proctest.Python(t)
	dir := proctest.CopyFiles(t, "worker.py") // a path of its own, to prove its processes gone
	script := dir + "/worker.py"
	out := proctest.RunMain(t, ".", "-python", py, "-worker", script, "-lib", "../../child/python")
	want := `upper: HELLO
upper: WÖRLD
upper: FROM GO
countdown: [0 1 2 3]
steps: 1/3
steps: 2/3
steps: 3/3
steps: 3 steps
slow: ValueError: could not convert string to float: 'not a number' (with its traceback: true)
`
	if out != want {
		t.Errorf("got:\n%s\nwant:\n%s", out, want)
	}
	proctest.AwaitNoProcessWithArg(t, 5*time.Second, script)
}
