package jetstream_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/supervise-dev/supervise/supervisor"
	"github.com/supervise-dev/supervise/supervisor/jetstream"
	"github.com/vmihailenco/msgpack/v5"
)

// eventually polls cond every 10 ms until it holds, for a minute at most (race-built
// processes on a loaded machine are slow: there is no signal to wait on across them); then
// the test fails, saying what it waited for (msg's result).
func eventually(t *testing.T, cond func() bool, msg func() string) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after a minute: %s", msg())
		}
	}
}

// awaitLine waits until a line of a log the workers append to matches re, and returns its
// submatches.
func awaitLine(t *testing.T, path, re string) []string {
	t.Helper()
	r := regexp.MustCompile(`(?m)^` + re + `$`)
	var m []string
	var b []byte
	eventually(t, func() bool {
		b, _ = os.ReadFile(path)
		m = r.FindStringSubmatch(string(b))
		return m != nil
	}, func() string { return fmt.Sprintf("no line %q in the log:\n%s", re, b) })
	return m
}

// awaitQueueEmpty waits until the queue has no task left to deliver or to be acked: none can
// be delivered again.
func awaitQueueEmpty(t *testing.T, s *testServer) {
	t.Helper()
	js, err := natsjs.New(connect(t, s))
	must(t, err)
	cons, err := js.Consumer(context.Background(), "SUPERVISE_test_TASKS", "workers")
	must(t, err)
	var info *natsjs.ConsumerInfo
	eventually(t, func() bool {
		info, err = cons.Info(context.Background())
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	}, func() string { return fmt.Sprintf("the queue is not empty: %+v, %v", info, err) })
}

// A cancel crosses machines: the task running on a machine is cancelled there (its handler,
// which honours the cancel, returns, and its worker lives on), its future fails with
// context.Canceled at once, and it is not delivered again; a task no machine has taken yet is
// removed from the queue and never starts; a deadline does the same; and closing the client
// cancels what it left.
func TestCancelCrossesMachines(t *testing.T) {
	s := startServer(t)
	startMachines(t, s, 1, workersEnv+"=1") // one worker: it runs the task cancelled, then the next
	c := newClient(t, s, testConfig())
	log := napLog(t)
	ctx := context.Background()

	ctx1, cancel1 := context.WithCancel(ctx)
	held := jetstream.Submit[napInput, int](ctx1, c, "hold", napInput{N: 1, Log: log})
	start := awaitLine(t, log, `start 1 (\d+)`)
	// The machine holds two tasks (two per worker): the one that waits on its pool, and then
	// one in the queue, which no machine has taken.
	queued := jetstream.Submit[napInput, int](ctx, c, "nap", napInput{N: 2, Ms: 1, Log: log})
	ctx3, cancel3 := context.WithCancel(ctx)
	untaken := jetstream.Submit[napInput, int](ctx3, c, "nap", napInput{N: 3, Ms: 1, Log: log})
	cancel3()
	if _, err := untaken.Get(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("the untaken task cancelled: %v, want context.Canceled", err)
	}
	cancel1()
	if _, err := held.Get(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("the running task cancelled: %v, want context.Canceled", err)
	}
	awaitLine(t, log, "cancelled 1 "+start[1]) // its handler saw the cancel, on its machine
	if _, err := queued.Get(ctx); err != nil {
		t.Fatalf("the task queued behind it: %v", err)
	}
	pid, err := jetstream.Submit[int, int](ctx, c, "pid", 0).Get(ctx)
	if err != nil || fmt.Sprint(pid) != start[1] {
		t.Fatalf("the next task ran on worker %d (%v), want %s: the worker that honoured the cancel lives on", pid, err, start[1])
	}

	// A deadline is a cancel too: the task, if it started before it (a loaded machine may be
	// slower), is cancelled on its machine; either way it leaves the queue.
	ctx4, cancel4 := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel4()
	if _, err := jetstream.Submit[napInput, int](ctx4, c, "hold", napInput{N: 4, Log: log}).Get(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a task past its deadline: %v, want context.DeadlineExceeded", err)
	}
	awaitQueueEmpty(t, s)
	if regexp.MustCompile(`(?m)^start 4 `).MatchString(readFile(t, log)) {
		awaitLine(t, log, `cancelled 4 \d+`)
	}

	// Closing a client cancels the tasks it leaves.
	c2 := newClient(t, s, testConfig())
	left := jetstream.Submit[napInput, int](ctx, c2, "hold", napInput{N: 5, Log: log})
	awaitLine(t, log, `start 5 \d+`)
	must(t, c2.Close())
	if _, err := left.Get(ctx); !errors.Is(err, jetstream.ErrClosed) {
		t.Fatalf("a task its client left: %v, want ErrClosed", err)
	}
	awaitLine(t, log, `cancelled 5 \d+`)

	awaitQueueEmpty(t, s)
	starts := map[string]int{}
	for _, m := range regexp.MustCompile(`(?m)^(?:start )?(\d+)(?: \d+)?$`).FindAllStringSubmatch(readFile(t, log), -1) {
		starts[m[1]]++
	}
	if starts["1"] != 1 || starts["2"] != 1 || starts["3"] != 0 || starts["4"] > 1 || starts["5"] != 1 {
		t.Fatalf("starts by task: %v; want each once (4 at most once), and task 3 never", starts)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	must(t, err)
	return string(b)
}

// A machine SIGKILLed with tasks in hand: another machine, started after its death, runs
// them within seconds, long before AckWait (a minute here) would have the server deliver
// them again; each task starts twice in all, and ends once.
func TestDeadMachinesTasksGoOnAtOnce(t *testing.T) {
	s := startServer(t)
	// AckWait 2 min: the heartbeats hand tasks back within AckWait/2 of a death, a minute,
	// time enough for the next machine to start on a loaded machine; and the server's own
	// redelivery comes too late for the test's 90 s.
	env := ackWaitEnv + "=2m"
	ms := startMachines(t, s, 1, env)
	cfg := testConfig()
	cfg.AckWait = 2 * time.Minute
	c := newClient(t, s, cfg)
	log := napLog(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var fs []*jetstream.Future[int]
	for i := range 2 { // one for each of its two workers
		fs = append(fs, jetstream.Submit[napInput, int](ctx, c, "nap", napInput{N: i, Ms: 3000, Log: log}))
	}
	awaitHeld(t, s, 2) // its heartbeat lists both
	ms[0].cmd.Process.Kill()
	ms[0].cmd.Wait()
	killed := time.Now()
	next := startMachines(t, s, 1, env)[0]
	awaitStarts(t, log, 4)
	t.Logf("the dead machine's tasks started again %v after its death", time.Since(killed).Round(time.Millisecond))
	for i, f := range fs {
		if pid, err := f.Get(ctx); err != nil || pid != next.cmd.Process.Pid {
			t.Fatalf("task %d: %d, %v; want it run by the next machine (%d), before AckWait", i, pid, err, next.cmd.Process.Pid)
		}
	}
	t.Logf("the dead machine's tasks ended %v after its death", time.Since(killed).Round(time.Millisecond))
	if counts := logCounts(t, log); counts[0] != 2 || counts[1] != 2 {
		t.Fatalf("starts by task: %v, want 2 each (the dead machine's, the next one's)", counts)
	}
}

// awaitHeld waits until a machine's last heartbeat lists n deliveries.
func awaitHeld(t *testing.T, s *testServer, n int) {
	t.Helper()
	js, err := natsjs.New(connect(t, s))
	must(t, err)
	ctx := context.Background()
	eventually(t, func() bool {
		st, err := js.Stream(ctx, "SUPERVISE_test_MACHINES")
		if err != nil {
			return false
		}
		info, err := st.Info(ctx, natsjs.WithSubjectFilter(">"))
		if err != nil {
			return false
		}
		for subject := range info.State.Subjects {
			m, err := st.GetLastMsgForSubject(ctx, subject)
			var b struct {
				Held []string `msgpack:"h"`
			}
			if err == nil && msgpack.Unmarshal(m.Data, &b) == nil && len(b.Held) == n {
				return true
			}
		}
		return false
	}, func() string { return fmt.Sprintf("no heartbeat lists %d tasks", n) })
}

// Reports cross machines: a task's reports come to Future.Reports in the order its handler
// sent them, all of them before its outcome.
func TestReportsCrossMachines(t *testing.T) {
	s := startServer(t)
	startMachines(t, s, 1)
	c := newClient(t, s, testConfig())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for round := range 20 {
		n := 1 + round*37
		f := jetstream.Submit[int, int](ctx, c, "count", n)
		if got, err := f.Get(ctx); err != nil || got != n {
			t.Fatalf("count %d: %d, %v", n, got, err)
		}
		want := 1
		for r := range f.Reports(ctx) { // the outcome is in: so is every report
			var i int
			if err := r.Decode(&i); err != nil || i != want {
				t.Fatalf("count %d: report %d is %d (%v)", n, want, i, err)
			}
			want++
		}
		if want != n+1 {
			t.Fatalf("count %d: %d reports before the outcome, want %d", n, want-1, n)
		}
	}
}

// Follow-ups cross machines: a handler's child.Put on a machine puts an item on the queue of
// the submitter, counted before the item that put it is done, so Join waits for them all;
// a future submitted alone, not to a queue, fails if its handler puts one, as on a pool.
func TestFollowUpsCrossMachines(t *testing.T) {
	s := startServer(t)
	startMachines(t, s, 2)
	c := newClient(t, s, testConfig())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for round := range 5 {
		q := supervisor.NewQueueOn[int, int](c, "tree", supervisor.QueueConfig{})
		must(t, q.Put(ctx, 4))
		must(t, q.Join(ctx)) // returns only once the 31 items are done
		q.Close()
		depths := map[int]int{}
		for r := range q.Results(ctx) {
			if r.Err != nil {
				t.Fatalf("round %d, item %d: %v", round, r.Index, r.Err)
			}
			depths[r.Value]++
		}
		if depths[4] != 1 || depths[3] != 2 || depths[2] != 4 || depths[1] != 8 || depths[0] != 16 {
			t.Fatalf("round %d: items by depth %v, want 1, 2, 4, 8, 16 for 4 to 0", round, depths)
		}
	}
	if _, err := jetstream.Submit[int, int](ctx, c, "tree", 1).Get(ctx); !errors.Is(err, supervisor.ErrNotInQueue) {
		t.Fatalf("a follow-up from a task not in a queue: %v, want ErrNotInQueue", err)
	}
}
