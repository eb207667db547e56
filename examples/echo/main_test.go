package main

import (
	"os/exec"
	"testing"

	"github.com/supervise-dev/supervise/internal/proctest"
)

func TestEchoExample(t *testing.T) {
	bin, cleanup, err := proctest.Build(".")
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	out, err := exec.Command(bin).CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	want := "child Hello World\nchild 42\nchild [1 2 3 4]\nchild map[host:python.org port:80]\n"
	if string(out) != want {
		t.Fatalf("got:\n%s\nwant:\n%s", out, want)
	}
	proctest.AssertNoProcessRuns(t, bin)
}
