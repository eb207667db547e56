package jetstream_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/supervise-dev/supervise/channel"
	"github.com/supervise-dev/supervise/supervisor/jetstream"
)

// A client holding the server's credentials publishes a result for a task the run has not yet
// submitted. The results stream keeps one message per task, so that result took the place of
// the real one, which the server then refused: the run hung forever. The submitter now removes
// a result for a task it has not submitted, and its task's own result gets through.
func TestResultBeforeItsTaskDoesNotHang(t *testing.T) {
	s := startServer(t)
	startMachines(t, s, 1)
	cfg := testConfig()
	c := newClient(t, s, cfg)
	forger := connect(t, s)
	// A result for task 2, stored before task 1 is even submitted.
	forged := nats.NewMsg(fmt.Sprintf("supervise.%s.results.%s.2", cfg.Queue, c.Run()))
	forged.Data = channel.AppendMessage(nil, channel.Message{Kind: channel.KindResult, ID: 2, Payload: []byte{0xa6, 'f', 'o', 'r', 'g', 'e', 'd'}})
	js, err := forger.JetStream()
	must(t, err)
	_, err = js.PublishMsg(forged)
	must(t, err)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Task 1's result is stored after the forged one, and the client reads results in the
	// order stored: once task 1 is done, the client has seen the forgery, before task 2 exists.
	for i, in := range []string{"one", "two"} {
		got, err := jetstream.Submit[string, string](ctx, c, "echo", in).Get(ctx)
		if err != nil || got != in {
			t.Fatalf("task %d after a forged result for task 2: %q, %v", i+1, got, err)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// A max-deliveries advisory for a live task that is not in its last delivery is not what the
// server would say: the submitter ignores it, and the task ends with its own result. (It used
// to fail the task as lost and delete it. An advisory that claims the last delivery is still
// believed: only separate credentials per role keep clients from forging one.)
func TestForgedAdvisoryIgnored(t *testing.T) {
	s := startServer(t)
	startMachines(t, s, 1)
	cfg := testConfig()
	c := newClient(t, s, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	log := filepath.Join(t.TempDir(), "started")
	f := jetstream.Submit[napInput, int](ctx, c, "nap", napInput{N: 1, Ms: 1500, Log: log})
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if b, _ := os.ReadFile(log); len(b) > 0 {
			break // the task runs: it is the stream's first message
		}
		if time.Now().After(deadline) {
			t.Fatal("the task never started")
		}
	}
	forger := connect(t, s)
	subject := fmt.Sprintf("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.SUPERVISE_%s_TASKS.workers", cfg.Queue)
	must(t, forger.Publish(subject, []byte(`{"stream_seq":1,"deliveries":1}`)))
	must(t, forger.Flush())
	if _, err := f.Get(ctx); err != nil {
		t.Fatalf("the task after a forged advisory: %v", err)
	}
}
