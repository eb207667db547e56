package main

import (
	"testing"

	"github.com/supervise-dev/supervise/internal/proctest"
)

func TestEchoExample(t *testing.T) {
	out := proctest.RunMain(t, ".")
	want := "child Hello World\nchild 42\nchild [1 2 3 4]\nchild map[host:python.org port:80]\n"
	if out != want {
		t.Fatalf("got:\n%s\nwant:\n%s", out, want)
	}
}
