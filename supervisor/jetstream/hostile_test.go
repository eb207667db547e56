package jetstream_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/supervise-dev/supervise/channel"
	"github.com/supervise-dev/supervise/supervisor"
	"github.com/supervise-dev/supervise/supervisor/jetstream"
)

// A client holding the server's credentials publishes a result for a batch the run has not yet
// sent. The results stream keeps one message per subject, so that result took the place of
// the real one, which the server then refused: the run hung forever. The submitter now removes
// a result for a batch it has not sent, and its tasks' own result gets through.
func TestResultBeforeItsTaskDoesNotHang(t *testing.T) {
	s := startServer(t)
	startMachines(t, s, 1)
	cfg := testConfig()
	c := newClient(t, s, cfg)
	forger := connect(t, s)
	// A result for the first delivery of batch 2 (task 2), stored before task 1 is even
	// submitted.
	forged := nats.NewMsg(fmt.Sprintf("supervise.%s.results.%s.2.1.0", cfg.Queue, c.Run()))
	forged.Data = channel.AppendBatch(nil, []channel.Message{{Kind: channel.KindResult, ID: 2, Payload: []byte{0xa6, 'f', 'o', 'r', 'g', 'e', 'd'}}})
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
	forgeMaxDeliveries(t, s, cfg, 1, 1)
	if _, err := f.Get(ctx); err != nil {
		t.Fatalf("the task after a forged advisory: %v", err)
	}
}

// Another submitter of the queue may read the results stream (NATS permissions name streams,
// not runs), but what it reads of another run's results is sealed: neither the result nor the
// envelope around it is there in the clear. It used to be the result as the machine sent it.
func TestOtherRunsReadNoResult(t *testing.T) {
	s := startServer(t)
	startMachines(t, s, 1)
	cfg := testConfig()
	c := newClient(t, s, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const secret = "a secret only this run may read"
	if got, err := jetstream.Submit[string, string](ctx, c, "echo", secret).Get(ctx); err != nil || got != secret {
		t.Fatalf("echo: %q, %v", got, err)
	}
	js, err := connect(t, s).JetStream()
	must(t, err)
	raw, err := js.GetLastMsg("SUPERVISE_"+cfg.Queue+"_RESULTS", fmt.Sprintf("supervise.%s.results.%s.1.1.0", cfg.Queue, c.Run()))
	must(t, err)
	if bytes.Contains(raw.Data, []byte(secret)) {
		t.Fatalf("another client reads the result in the clear: %q", raw.Data)
	}
	if env, err := channel.ParseBatch(raw.Data); err == nil {
		t.Fatalf("another client reads the result's envelope: %+v", env)
	}
}

// A client that may publish tasks publishes one under another run's name, batch and task id,
// ahead of that run's own result. The results stream keeps the first result per task, so the
// impostor's result used to be taken as the task's own. The run now sees that the result was
// not sealed to it, or was sealed for other bytes than its task's, and fails the task with
// ErrForged: the impostor's value never reaches the caller.
func TestTaskInAnotherRunsNameFails(t *testing.T) {
	for _, copyKey := range []bool{true, false} {
		t.Run(fmt.Sprintf("copies the run's key: %v", copyKey), func(t *testing.T) {
			s := startServer(t)
			startMachines(t, s, 1)
			cfg := testConfig()
			c := newClient(t, s, cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			// The run's own task is slow, so the impostor's is answered first.
			f := jetstream.Submit[napInput, any](ctx, c, "nap", napInput{N: 1, Ms: 5000})
			js, err := connect(t, s).JetStream()
			must(t, err)
			var task *nats.RawStreamMsg
			for task == nil {
				if task, _ = js.GetMsg("SUPERVISE_"+cfg.Queue+"_TASKS", 1); ctx.Err() != nil {
					t.Fatal("the run's task never reached the stream")
				}
			}
			impostor := nats.NewMsg(task.Subject)
			impostor.Header.Set("Supervise-Run", c.Run())
			impostor.Header.Set("Supervise-Batch", task.Header.Get("Supervise-Batch"))
			if copyKey {
				impostor.Header.Set("Supervise-Seal", task.Header.Get("Supervise-Seal"))
			}
			payload, err := channel.Marshal("forged")
			must(t, err)
			impostor.Data = channel.AppendBatch(nil, []channel.Message{{Kind: channel.KindCall, ID: 1, Name: "echo", Payload: payload}})
			_, err = js.PublishMsg(impostor)
			must(t, err)

			got, err := f.Get(ctx)
			switch {
			case errors.Is(err, jetstream.ErrForged):
				t.Log(err)
			case err == nil && got == "forged":
				t.Fatal("the impostor's result was taken as the run's own")
			default:
				t.Fatalf("want ErrForged (or, had the run's own answer come first, its pid): %v, %v", got, err)
			}
		})
	}
}

// A machine takes a delivery for the last by the server's count, which nats-server 2.9.10
// was seen to set back to 1 after a failed delivery: the last delivery of a task whose worker
// died was then handed back too, and the server's max-deliveries advisory ended the task as
// lost ("each time to a machine that was lost"), though no machine was. The machine's note of
// the death now reaches the submitter first, and the task fails with that worker's death.
// The advisory is published here as the server would: its count runs out while the machine
// holds the task's second delivery.
func TestTaskOutOfDeliveriesFailsWithItsWorkersDeath(t *testing.T) {
	s := startServer(t)
	startMachines(t, s, 1)
	cfg := testConfig()
	c := newClient(t, s, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	log := napLog(t)
	f := jetstream.Submit[napInput, int](ctx, c, "crashonce", napInput{N: 1, Ms: 60_000, Log: log})
	awaitStarts(t, log, 2) // its first worker died, and the task came again
	eventually(t, func() bool { return jetstream.DiedNoted(c, f.ID()) }, func() string { return "no note of the worker's death" })
	forgeMaxDeliveries(t, s, cfg, 1, cfg.MaxDeliver)
	_, err := f.Get(ctx)
	var te *jetstream.TaskError
	if !errors.Is(err, supervisor.ErrWorkerDied) || errors.Is(err, jetstream.ErrLost) || !errors.As(err, &te) || te.Deliveries != cfg.MaxDeliver || te.Machine == "" {
		t.Fatalf("a task out of deliveries whose worker died: %v; want its worker's death, at delivery %d, naming the machine", err, cfg.MaxDeliver)
	}
}

// forgeMaxDeliveries publishes the server's max-deliveries advisory for the tasks stream's
// message seq, delivered deliveries times, from a client.
func forgeMaxDeliveries(t *testing.T, s *testServer, cfg jetstream.Config, seq uint64, deliveries int) {
	t.Helper()
	forger := connect(t, s)
	subject := fmt.Sprintf("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.SUPERVISE_%s_TASKS.workers", cfg.Queue)
	must(t, forger.Publish(subject, []byte(fmt.Sprintf(`{"stream_seq":%d,"deliveries":%d}`, seq, deliveries))))
	must(t, forger.FlushTimeout(connectTimeout))
}
