package jetstream_test

import (
	"context"
	"errors"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/supervise-dev/supervise/supervisor"
	"github.com/supervise-dev/supervise/supervisor/jetstream"
)

// tasksPublished is how many messages the queue's tasks stream has ever stored.
func tasksPublished(t *testing.T, s *testServer, cfg jetstream.Config) uint64 {
	t.Helper()
	return published(t, s, "SUPERVISE_"+cfg.Queue+"_TASKS")
}

// published is how many messages a stream has ever stored.
func published(t *testing.T, s *testServer, stream string) uint64 {
	t.Helper()
	js, err := natsjs.New(connect(t, s))
	must(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	must(t, err)
	return st.CachedInfo().State.LastSeq
}

// batching starts a server, a machine and a client that sends up to 64 tasks a message.
func batching(t *testing.T) (*testServer, jetstream.Config, *jetstream.Client) {
	s := startServer(t)
	startMachines(t, s, 1)
	cfg := testConfig()
	cfg.MaxBatch = 64
	return s, cfg, newClient(t, s, cfg)
}

// Tasks sent together travel as one message. A poison task among them (its worker dies each
// time) is handed back alone: the outcomes of its batch-mates are stored with the first
// delivery, and the deliveries after it run only the poison task, so each mate's handler
// starts once and the poison task fails after MaxDeliver deliveries.
func TestBatchPoisonTakesNoMateWithIt(t *testing.T) {
	s, cfg, c := batching(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	log := napLog(t)
	const mates = 40
	release := jetstream.PauseFlusher(c)
	var naps []*jetstream.Future[int]
	var poison *jetstream.Future[int]
	for i := range mates {
		if i == mates/2 {
			poison = jetstream.Submit[int, int](ctx, c, "crash", 0)
		}
		naps = append(naps, jetstream.Submit[napInput, int](ctx, c, "nap", napInput{N: i, Ms: 1, Log: log}))
	}
	release()
	for i, f := range naps {
		if _, err := f.Get(ctx); err != nil {
			t.Errorf("mate %d: %v", i, err)
		}
	}
	_, err := poison.Get(ctx)
	var te *jetstream.TaskError
	if !errors.Is(err, supervisor.ErrWorkerDied) || !errors.As(err, &te) || te.Deliveries != cfg.MaxDeliver {
		t.Errorf("poison task: %v, want its worker died, at delivery %d", err, cfg.MaxDeliver)
	}
	for i, n := range logCounts(t, log) {
		if n != 1 {
			t.Errorf("mate %d started %d times, want once", i, n)
		}
	}
	if got := len(logCounts(t, log)); got != mates {
		t.Errorf("%d mates started, want %d", got, mates)
	}
	if n := tasksPublished(t, s, cfg); n != 1 {
		t.Errorf("%d messages for %d tasks sent together, want 1", n, mates+1)
	}
}

// The outcomes of a batch that do not fit in one message go in several: each task gets its
// own result, whole.
func TestBatchOutcomesInParts(t *testing.T) {
	s := startServer(t)
	// AckWait 1 min: under the race detector on a loaded machine, sealing and storing 8 MB
	// took past the tests' 2 s, the in-progress acks queued behind the parts, and the batch
	// was delivered again.
	startMachines(t, s, 1, ackWaitEnv+"=1m")
	cfg := testConfig()
	cfg.MaxBatch, cfg.AckWait = 64, time.Minute
	c := newClient(t, s, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	size := int(connect(t, s).MaxPayload()) / 3
	release := jetstream.PauseFlusher(c)
	var fs []*jetstream.Future[[]byte]
	for range 3 {
		fs = append(fs, jetstream.Submit[int, []byte](ctx, c, "big", size))
	}
	release()
	for i, f := range fs {
		if got, err := f.Get(ctx); err != nil || len(got) != size {
			t.Errorf("task %d: %d bytes, %v; want %d", i, len(got), err, size)
		}
	}
	if n := tasksPublished(t, s, cfg); n != 1 {
		t.Errorf("%d messages for 3 tasks sent together, want 1", n)
	}
	if n := published(t, s, "SUPERVISE_"+cfg.Queue+"_RESULTS"); n != 2 {
		t.Errorf("their outcomes in %d messages, want 2 (two fit in one)", n)
	}
}
