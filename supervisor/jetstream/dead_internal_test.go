package jetstream

import (
	"context"
	"testing"

	natsjs "github.com/nats-io/nats.go/jetstream"
)

// A task's dead letter written again by a later delivery of it is kept once: under load a
// task whose first delivery outran its ack wait was run again, and its dead letter doubled
// (TestFailuresAndDeadLetters saw 4 where 3 were due).
func TestDeadLetterOncePerTask(t *testing.T) {
	srv, err := StartServer(ServerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	nc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx := context.Background()
	cfg, err := Config{Queue: "dedupe"}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	s, err := openStreams(ctx, nc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.deadLetter(ctx, []byte("x"), "supervise.dedupe.tasks #3 (delivery 1)", "result too large")
	s.deadLetter(ctx, []byte("x"), "supervise.dedupe.tasks #3 (delivery 2)", "result too large")
	s.deadLetter(ctx, []byte("y"), "supervise.dedupe.tasks #4 (delivery 1)", "result too large")
	js, _ := natsjs.New(nc)
	dead, err := js.Stream(ctx, cfg.deadStream())
	if err != nil {
		t.Fatal(err)
	}
	info, err := dead.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 2 {
		t.Fatalf("%d dead letters, want 2 (task 3's once, task 4's)", info.State.Msgs)
	}
}
