package jetstream_test

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/supervise-dev/supervise/supervisor"
	"github.com/supervise-dev/supervise/supervisor/jetstream"
)

// collect takes every outcome of q, failing the test on an index seen twice.
func collect[Out any](t *testing.T, q *supervisor.Queue[napInput, Out], within time.Duration) map[int]supervisor.Result[Out] {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	got := map[int]supervisor.Result[Out]{}
	for r := range q.Results(ctx) {
		if _, dup := got[r.Index]; dup {
			t.Errorf("item %d: a second outcome %v", r.Index, r)
		}
		got[r.Index] = r
	}
	if ctx.Err() != nil {
		t.Fatalf("results: %v after %d outcomes", ctx.Err(), len(got))
	}
	return got
}

// A joinable queue whose items run on three worker machines: every item has its outcome once,
// Join returns once they are all done, and the machines stop cleanly on SIGTERM.
func TestQueueAcrossMachines(t *testing.T) {
	s := startServer(t)
	ms := startMachines(t, s, 3)
	c := newClient(t, s, testConfig())
	q := supervisor.NewQueueOn[napInput, int](c, "nap", supervisor.QueueConfig{Capacity: 50})
	const n = 300
	ctx := context.Background()
	go func() {
		for i := range n {
			if err := q.Put(ctx, napInput{N: i, Ms: 1}); err != nil {
				t.Error(err)
			}
		}
		q.Close()
	}()
	got := collect(t, q, 60*time.Second)
	if len(got) != n {
		t.Fatalf("%d outcomes, want %d", len(got), n)
	}
	machines := map[int]int{}
	for i, r := range got {
		if r.Err != nil {
			t.Errorf("item %d: %v", i, r.Err)
		}
		machines[r.Value]++
	}
	if err := q.Join(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("tasks per machine: %v", machines)
	if len(machines) < 2 {
		t.Errorf("all %d tasks ran on %d machine(s): %v", n, len(machines), machines)
	}
	for _, m := range ms {
		if m.cmd.Process.Signal(syscall.SIGTERM) != nil {
			t.Fatal("machine gone before SIGTERM")
		}
		if err := m.cmd.Wait(); err != nil {
			t.Errorf("machine after SIGTERM: %v", err)
		}
	}
}

// A machine SIGKILLed mid-run: the tasks it held are delivered again to the other one, after
// AckWait, and each task still has exactly one outcome.
func TestMachineKilledMidRun(t *testing.T) {
	s := startServer(t)
	ms := startMachines(t, s, 2)
	c := newClient(t, s, testConfig())
	log := napLog(t)
	const n = 40
	var fs []*jetstream.Future[int]
	for i := range n {
		fs = append(fs, jetstream.Submit[napInput, int](context.Background(), c, "nap", napInput{N: i, Ms: 300, Log: log}))
	}
	victim := ms[0].cmd.Process.Pid
	// Wait until the victim has answered a task, so it holds the next ones.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := 0; ; i = (i + 1) % n {
		if v, err := fs[i].Get(ctx); err == nil && v == victim {
			break
		} else if ctx.Err() != nil {
			t.Fatal("no task ran on the first machine")
		}
	}
	ms[0].cmd.Process.Signal(syscall.SIGKILL)
	ms[0].cmd.Wait()
	after := map[int]int{}
	for i, f := range fs {
		v, err := f.Get(ctx)
		if err != nil {
			t.Fatalf("task %d: %v", i, err)
		}
		after[v]++
	}
	starts := logCounts(t, log)
	twice := 0
	for i := range n {
		switch {
		case starts[i] == 0:
			t.Errorf("task %d never started", i)
		case starts[i] > 1:
			twice++
		}
	}
	t.Logf("outcomes per machine: %v; tasks started more than once: %d", after, twice)
	if twice == 0 {
		t.Error("no task was delivered again after its machine was killed")
	}
}

// The server restarted from its store mid-run: no task and no result is lost.
func TestServerRestartMidRun(t *testing.T) {
	s := startServer(t)
	startMachines(t, s, 2)
	c := newClient(t, s, testConfig())
	log := napLog(t)
	const n = 60
	var fs []*jetstream.Future[int]
	for i := range n {
		fs = append(fs, jetstream.Submit[napInput, int](context.Background(), c, "nap", napInput{N: i, Ms: 50, Log: log}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if _, err := fs[0].Get(ctx); err != nil {
		t.Fatal(err)
	}
	s.restart()
	for i := range n {
		if _, err := fs[i].Get(ctx); err != nil {
			t.Fatalf("task %d: %v", i, err)
		}
	}
	t.Logf("task starts: %d for %d tasks", sum(logCounts(t, log)), n)
}

func sum(m map[int]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// Failures: a handler's error is the outcome at once; a task that kills its worker every time
// is delivered MaxDeliver times, then fails with the worker's exit and is terminated; a task
// too large for the server fails at once and goes to the dead-letter subject, as does a
// message on the tasks subject that is not a task. The machines keep serving through it all.
func TestFailuresAndDeadLetters(t *testing.T) {
	s := startServer(t)
	startMachines(t, s, 1)
	nc := connect(t, s)
	cfg := testConfig()
	c := newClient(t, s, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	_, err := jetstream.Submit[string, int](ctx, c, "fail", "x").Get(ctx)
	var te *jetstream.TaskError
	var re *supervisor.RemoteError
	if !errors.As(err, &te) || !errors.As(err, &re) || re.Message != "no good: x" || te.Deliveries != 1 {
		t.Errorf("handler error: %v (%#v)", err, te)
	}

	_, err = jetstream.Submit[int, int](ctx, c, "crash", 1).Get(ctx)
	if !errors.Is(err, supervisor.ErrWorkerDied) || !errors.As(err, &te) || te.Deliveries != cfg.MaxDeliver {
		t.Errorf("poison task: %v, want worker died after %d deliveries", err, cfg.MaxDeliver)
	}
	t.Logf("poison task: %v", err)

	big := make([]byte, nc.MaxPayload())
	_, err = jetstream.Submit[[]byte, int](ctx, c, "echo", big).Get(ctx)
	if !errors.Is(err, jetstream.ErrTooLarge) {
		t.Errorf("oversized task: %v, want ErrTooLarge", err)
	}
	_, err = jetstream.Submit[int, []byte](ctx, c, "big", int(nc.MaxPayload())).Get(ctx)
	if !errors.Is(err, jetstream.ErrTooLarge) {
		t.Errorf("oversized result: %v, want ErrTooLarge", err)
	}

	if err := nc.Publish("supervise.test.tasks", []byte("not msgpack")); err != nil {
		t.Fatal(err)
	}
	if got, err := jetstream.Submit[string, string](ctx, c, "echo", "still here").Get(ctx); err != nil || got != "still here" {
		t.Fatalf("echo after the failures: %q, %v", got, err)
	}
	// The dead letters, read until the three are there: a loaded server may answer late.
	js, _ := natsjs.New(nc)
	readCtx, stopReading := context.WithTimeout(context.Background(), time.Minute)
	defer stopReading()
	dead, err := js.Stream(readCtx, "SUPERVISE_test_DEAD")
	if err != nil {
		t.Fatal(err)
	}
	var reasons []string
	for seq := uint64(1); len(reasons) < 3 && readCtx.Err() == nil; {
		m, err := dead.GetMsg(readCtx, seq)
		if err != nil { // not written yet, or the server is slow to say
			time.Sleep(10 * time.Millisecond) // polling the stream
			continue
		}
		reasons = append(reasons, m.Header.Get("Supervise-Reason"))
		seq++
	}
	t.Logf("dead letters: %q", reasons)
	if len(reasons) != 3 {
		t.Errorf("%d dead letters, want 3 (task too large, result too large, malformed)", len(reasons))
	}
}

// A machine told to stop (SIGTERM) while it runs a task finishes it within Drain: the
// outcome is its own, from the first delivery.
func TestMachineFinishesOnSIGTERM(t *testing.T) {
	s := startServer(t)
	ms := startMachines(t, s, 1)
	c := newClient(t, s, testConfig())
	log := napLog(t)
	f := jetstream.Submit[napInput, int](context.Background(), c, "nap", napInput{N: 1, Ms: 1000, Log: log})
	awaitStarts(t, log, 1)
	ms[0].cmd.Process.Signal(syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if v, err := f.Get(ctx); err != nil || v != ms[0].cmd.Process.Pid {
		t.Fatalf("task: %v, %v; want the stopping machine's pid %d", v, err, ms[0].cmd.Process.Pid)
	}
	if err := ms[0].cmd.Wait(); err != nil {
		t.Fatalf("machine after SIGTERM: %v", err)
	}
	if n := logCounts(t, log)[1]; n != 1 {
		t.Errorf("task started %d times, want 1", n)
	}
}

// A machine told to stop starts no task after it: the tasks its pending pull brings go back
// to the queue at once, and the other machine runs them all, without waiting for AckWait.
func TestStoppingMachineTakesNoTask(t *testing.T) {
	s := startServer(t)
	ms := startMachines(t, s, 2)
	c := newClient(t, s, testConfig())
	ms[0].cmd.Process.Signal(syscall.SIGTERM)
	if line, _ := ms[0].out.ReadString('\n'); line != "stopping\n" {
		t.Fatalf("machine after SIGTERM: %q, want stopping", line)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var fs []*jetstream.Future[int]
	for i := range 20 {
		fs = append(fs, jetstream.Submit[napInput, int](ctx, c, "nap", napInput{N: i, Ms: 1}))
	}
	for i, f := range fs {
		if pid, err := f.Get(ctx); err != nil || pid != ms[1].cmd.Process.Pid {
			t.Fatalf("task %d: ran on %d (%v), want the running machine %d, not the stopping one %d", i, pid, err, ms[1].cmd.Process.Pid, ms[0].cmd.Process.Pid)
		}
	}
}

// awaitStarts waits until n task starts are in a nap log.
func awaitStarts(t *testing.T, log string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for sum(logCounts(t, log)) < n {
		if time.Now().After(deadline) {
			t.Fatalf("fewer than %d task starts after 30s", n)
		}
		time.Sleep(10 * time.Millisecond) // polling a file the workers append to
	}
}

// A task whose every delivery goes to a machine that is then lost (here MaxDeliver is 1)
// fails with ErrLost once the server gives up on it: its outcome is not left hanging.
func TestLastDeliveryLost(t *testing.T) {
	s := startServer(t)
	env := []string{ackWaitEnv + "=1s", deliverEnv + "=1"}
	ms := startMachines(t, s, 1, env...)
	cfg := testConfig()
	cfg.AckWait, cfg.MaxDeliver = time.Second, 1
	c := newClient(t, s, cfg)
	log := napLog(t)
	f := jetstream.Submit[napInput, int](context.Background(), c, "nap", napInput{N: 1, Ms: 60000, Log: log})
	awaitStarts(t, log, 1)
	ms[0].cmd.Process.Signal(syscall.SIGKILL)
	ms[0].cmd.Wait()
	startMachines(t, s, 1, env...) // the server notices the lost delivery when a machine asks for more
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := f.Get(ctx)
	if !errors.Is(err, jetstream.ErrLost) {
		t.Fatalf("task: %v, want ErrLost", err)
	}
	t.Log(err)
}

// Beyond loopback a server needs credentials; with a token, a client without it is refused.
func TestServerCredentials(t *testing.T) {
	if _, err := jetstream.StartServer(jetstream.ServerConfig{Listen: "0.0.0.0:0"}); !errors.Is(err, jetstream.ErrNoCredentials) {
		t.Fatalf("beyond loopback without credentials: %v, want ErrNoCredentials", err)
	}
	srv, err := jetstream.StartServer(jetstream.ServerConfig{Listen: "0.0.0.0:0", Token: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	url := srv.URL()
	if nc, err := nats.Connect(url); err == nil {
		nc.Close()
		t.Fatal("a client without the token got in")
	}
	nc, err := nats.Connect(url, nats.Token("s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
}

// Every client and machine opens the queue's streams as it starts. Only the first creates
// them: the others send no update, which NATS 2.9.10 was seen to crash on beside others
// (and which before this change each of them sent, for every stream).
func TestOpeningAQueueUpdatesNoStream(t *testing.T) {
	s := startServer(t)
	newClient(t, s, testConfig())
	watch := connect(t, s)
	updates, err := watch.SubscribeSync("$JS.API.STREAM.UPDATE.>")
	must(t, err)
	must(t, watch.FlushTimeout(connectTimeout))
	startMachines(t, s, 1)
	awaitHeld(t, s, 0) // it beats: its streams are open
	newClient(t, s, testConfig())
	must(t, watch.FlushTimeout(connectTimeout))
	if n, _, err := updates.Pending(); err != nil || n != 0 {
		first := "none"
		if msg, err := updates.NextMsg(0); err == nil {
			first = msg.Subject
		}
		t.Fatalf("%d stream updates (%v) after the streams were made; the first: %s", n, err, first)
	}
}
