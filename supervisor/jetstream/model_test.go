package jetstream_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/supervise-dev/supervise/internal/pooltest"
	"github.com/supervise-dev/supervise/supervisor"
	"github.com/supervise-dev/supervise/supervisor/jetstream"
)

// The queue's model test, as supervisor's TestModel for one machine: from a seed, tasks that
// succeed, fail, or crash their worker, through machines of which some are killed (SIGKILL)
// and others started in the middle. Checked against the handlers' ledger of starts, written
// outside the pool: every task ends exactly once, with its own outcome (a crash with its
// worker's death once its deliveries are spent); none starts more than MaxDeliver times (the
// queue is at-least-once); the machines' processes are gone at the end (startMachines).
// SUPERVISE_MODEL_TIME (default 10s; 3s with -short) bounds the seeds run;
// SUPERVISE_MODEL_SEED=N replays one.

type modelInput struct {
	N   int    `msgpack:"n"`
	Act string `msgpack:"act"`
	Ms  int    `msgpack:"ms"`
	Log string `msgpack:"log"`
}

func TestQueueModel(t *testing.T) {
	pooltest.Seeds(t, 10*time.Second, 3*time.Second, "go test -run 'TestQueueModel$' ./supervisor/jetstream", queueModel)
}

func queueModel(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, seed^0x5bd1e995))
	s := startServer(t)
	// AckWait: a machine killed holding tasks hands them over within seconds through the
	// heartbeats; the ack wait is the fallback for a delivery no heartbeat named.
	env := []string{ackWaitEnv + "=5s"}
	cfg := testConfig()
	cfg.AckWait = 5 * time.Second
	machines := startMachines(t, s, 1+rng.IntN(2), env...)
	c := newClient(t, s, cfg)
	log := napLog(t)
	n := 20 + rng.IntN(150)
	ins := make([]modelInput, n)
	for i := range ins {
		ins[i] = modelInput{N: i, Ms: rng.IntN(30), Log: log}
		switch r := rng.IntN(100); {
		case r < 3:
			ins[i].Act = "crash"
		case r < 8:
			ins[i].Act = "fail"
		}
	}
	kills := rng.IntN(3)
	killAt := make([]time.Duration, kills)
	for i := range killAt {
		killAt[i] = time.Duration(rng.IntN(800)) * time.Millisecond
	}
	t.Logf("seed %d: %d tasks, %d machines, kills at %v", seed, n, len(machines), killAt)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	futures := make([]*jetstream.Future[int], n)
	for i, in := range ins {
		futures[i] = jetstream.Submit[modelInput, int](ctx, c, "model", in)
	}
	// Machines killed and started while the tasks run: each kill is followed by a start, so
	// the queue always gets a machine back.
	for _, at := range killAt {
		time.Sleep(at) // the point is an arbitrary moment
		victim := machines[rng.IntN(len(machines))]
		victim.cmd.Process.Signal(syscall.SIGKILL)
		machines = append(machines, startMachines(t, s, 1, env...)...)
	}
	for i, f := range futures {
		v, err := f.Get(ctx)
		in := ins[i]
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			t.Fatalf("task %d (%s) never ended", i, in.Act)
		case in.Act == "fail":
			var re *supervisor.RemoteError
			if !errors.As(err, &re) || re.Message != fmt.Sprintf("model failure %d", i) {
				t.Errorf("task %d (fail): %v %v", i, v, err)
			}
		case in.Act == "crash":
			if !errors.Is(err, supervisor.ErrWorkerDied) && !errors.Is(err, jetstream.ErrLost) {
				t.Errorf("task %d (crash): %v %v; want its worker's death", i, v, err)
			}
		case err != nil || v != i:
			t.Errorf("task %d: %v %v", i, v, err)
		}
	}
	for n, k := range logCounts(t, log) {
		if k > cfg.MaxDeliver {
			t.Errorf("task %d started %d times, MaxDeliver %d", n, k, cfg.MaxDeliver)
		}
	}
}
