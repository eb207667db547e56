package main

import (
	"testing"

	"github.com/supervise-dev/supervise/internal/proctest"
)

func TestProducerConsumer(t *testing.T) {
	out := proctest.RunMain(t, ".")
	if want := "joined: 100 items consumed, sum of squares 328350\n"; out != want {
		t.Fatalf("output %q, want %q", out, want)
	}
}
