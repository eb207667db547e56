package main

import (
	"testing"

	"github.com/supervise-dev/supervise/internal/proctest"
)

func TestCounter(t *testing.T) {
	out := proctest.RunMain(t, ".")
	if want := "16 senders x 500 increments: counter = 8000\n"; out != want {
		t.Fatalf("output %q, want %q", out, want)
	}
}
