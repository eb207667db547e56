package jetstream

import (
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// The cancels a machine keeps: a running task is cancelled, one cancelled before it came is
// refused when it comes, a whole run likewise; and a flood of cancels keeps at most
// maxCancels of them.
func TestCancelsRecord(t *testing.T) {
	c := newCancels(time.Minute)
	msg := func(run, what string) *nats.Msg {
		return &nats.Msg{Subject: "supervise.q.cancel." + run, Data: []byte(what)}
	}
	var cancelled error
	if !c.start("r1", 1, func(err error) { cancelled = err }) {
		t.Fatal("task 1 refused before any cancel")
	}
	c.cancel(msg("r1", "1"))
	if cancelled != errCancelled {
		t.Fatalf("running task 1: cancelled with %v", cancelled)
	}
	c.end("r1", 1)
	c.cancel(msg("r1", "2"))
	if c.start("r1", 2, func(error) {}) {
		t.Fatal("task 2, cancelled before it came, was started")
	}
	c.cancel(msg("r2", "*"))
	if c.start("r2", 7, func(error) {}) {
		t.Fatal("a task of a cancelled run was started")
	}
	c.cancel(msg("r1", "not a number"))
	for i := range 3 * maxCancels {
		c.cancel(msg("r3", strconv.Itoa(i)))
	}
	if n := len(c.early); n > maxCancels {
		t.Fatalf("%d early cancels kept, want at most %d", n, maxCancels)
	}
}
