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
	"github.com/supervise-dev/supervise/supervisor/jetstream"
)

// awaitLine polls a log the workers append to until a line matches re (a minute at most:
// race-built workers on a loaded machine are slow), and returns its submatches.
func awaitLine(t *testing.T, path, re string) []string {
	t.Helper()
	r := regexp.MustCompile(`(?m)^` + re + `$`)
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) { // polling a file the workers append to
		b, _ := os.ReadFile(path)
		if m := r.FindStringSubmatch(string(b)); m != nil {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("no line %q in the log within a minute:\n%s", re, b)
		}
	}
}

// awaitQueueEmpty waits until the queue has no task left to deliver or to be acked: none can
// be delivered again.
func awaitQueueEmpty(t *testing.T, s *testServer) {
	t.Helper()
	js, err := natsjs.New(connect(t, s))
	must(t, err)
	cons, err := js.Consumer(context.Background(), "SUPERVISE_test_TASKS", "workers")
	must(t, err)
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) { // polling the server's counts
		info, err := cons.Info(context.Background())
		must(t, err)
		if info.NumPending == 0 && info.NumAckPending == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the queue still has %d tasks to deliver, %d to be acked", info.NumPending, info.NumAckPending)
		}
	}
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

	// A deadline is a cancel too.
	ctx4, cancel4 := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel4()
	if _, err := jetstream.Submit[napInput, int](ctx4, c, "hold", napInput{N: 4, Log: log}).Get(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a task past its deadline: %v, want context.DeadlineExceeded", err)
	}
	awaitLine(t, log, `cancelled 4 \d+`)

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
	if starts["1"] != 1 || starts["2"] != 1 || starts["3"] != 0 || starts["4"] != 1 || starts["5"] != 1 {
		t.Fatalf("starts by task: %v; want each once, and task 3 never", starts)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	must(t, err)
	return string(b)
}
