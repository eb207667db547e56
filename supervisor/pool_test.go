package supervisor_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/supervise-dev/supervise/channel"
	"github.com/supervise-dev/supervise/internal/pooltest"
	"github.com/supervise-dev/supervise/supervisor"
)

// startPool starts a pool of this test binary, recording its log and events, and, at cleanup,
// shuts it down and checks that its workers are gone.
func startPool(t *testing.T, cfg supervisor.Config) (*supervisor.Pool, *pooltest.Recorder) {
	t.Helper()
	logs := pooltest.Attach(&cfg)
	p, err := supervisor.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, w := range p.Workers() {
		pids = append(pids, w.Pid)
	}
	t.Cleanup(func() {
		for _, w := range p.Workers() {
			pids = append(pids, w.Pid)
		}
		stopNow, cancel := context.WithCancel(context.Background())
		cancel()
		p.Shutdown(stopNow) // tasks still running are cancelled
		if n := len(p.Workers()); n != 0 {
			t.Errorf("%d workers listed after Shutdown", n)
		}
		assertGone(t, pids...)
	})
	return p, logs
}

func TestMapOrderedAndUnordered(t *testing.T) {
	p, _ := startPool(t, supervisor.Config{Workers: 2})
	if got := len(p.Workers()); got != 2 {
		t.Fatalf("%d workers, want 2", got)
	}
	square := supervisor.Bind[int, int](p, "square")
	ctx := context.Background()
	const n = 2000
	i := 0
	for r := range square.Map(ctx, ints(n)) {
		if r.Err != nil || r.Index != i || r.Value != i*i {
			t.Fatalf("result %d: %+v", i, r)
		}
		i++
	}
	if i != n {
		t.Fatalf("Map yielded %d results, want %d", i, n)
	}
	seen := make([]bool, n)
	for r := range square.MapUnordered(ctx, ints(n)) {
		if r.Err != nil || r.Value != r.Index*r.Index || seen[r.Index] {
			t.Fatalf("unordered result %+v (seen before: %v)", r, seen[r.Index])
		}
		seen[r.Index] = true
	}
	if slices.Contains(seen, false) {
		t.Fatal("MapUnordered missed a result")
	}
	// Breaking out early is fine and leaves the pool usable.
	for range square.Map(ctx, ints(n)) {
		break
	}
	if v, err := square.Call(ctx, 12); err != nil || v != 144 {
		t.Fatalf("after an early break: %v %v", v, err)
	}
}

func ints(n int) func(func(int) bool) {
	return func(yield func(int) bool) {
		for i := range n {
			if !yield(i) {
				return
			}
		}
	}
}

func TestBigPayloads(t *testing.T) {
	p, _ := startPool(t, supervisor.Config{Workers: 2})
	echo := supervisor.Bind[[]byte, []byte](p, "echo")
	ctx := context.Background()
	var futures []*supervisor.Future[[]byte]
	var inputs [][]byte
	for i := range 8 {
		b := bytes.Repeat([]byte{byte(i), 1, 2, 3}, (4<<20)/4+i) // 4 MiB and a bit: both pipes fill
		inputs = append(inputs, b)
		futures = append(futures, echo.Submit(ctx, b))
	}
	for i, f := range futures {
		got, err := f.Get(ctx)
		if err != nil || !bytes.Equal(got, inputs[i]) {
			t.Fatalf("echo %d: %v (len %d, want %d)", i, err, len(got), len(inputs[i]))
		}
	}
}

// Calls that together exceed the frame limit go in several frames: 24 calls of 3 MiB with 32
// in flight and an 8 MiB limit. (They were packed into one 72 MiB frame, which the pool then
// refused to send and killed the worker for.)
func TestBatchesStayUnderTheFrameLimit(t *testing.T) {
	p, logs := startPool(t, supervisor.Config{Workers: 1, InFlight: 32, MaxFrame: 8 << 20})
	echo := supervisor.Bind[[]byte, []byte](p, "echo")
	ctx := context.Background()
	var futures []*supervisor.Future[[]byte]
	for i := range 24 {
		futures = append(futures, echo.Submit(ctx, bytes.Repeat([]byte{byte(i)}, 3<<20)))
	}
	for i, f := range futures {
		got, err := f.Get(ctx)
		if err != nil || len(got) != 3<<20 || got[0] != byte(i) {
			t.Fatalf("echo %d: %v (len %d)", i, err, len(got))
		}
	}
	for _, e := range logs.Events() {
		if _, ok := e.(supervisor.EventWorkerExited); ok {
			t.Errorf("a worker exited: %v", e)
		}
	}
}

func TestHandlerErrorAndPanicKeepWorker(t *testing.T) {
	p, _ := startPool(t, supervisor.Config{Workers: 1, MaxFrame: 1 << 20})
	ctx := context.Background()
	pid := supervisor.Bind[struct{}, int](p, "pid")
	before, _ := pid.Call(ctx, struct{}{})

	_, err := supervisor.Bind[string, int](p, "fail").Call(ctx, "no such file: x.txt")
	var te *supervisor.TaskError
	var re *supervisor.RemoteError
	if !errors.As(err, &te) || !errors.As(err, &re) || re.Type != "error" || re.Message != "no such file: x.txt" {
		t.Fatalf("handler error: %#v", err)
	}
	if te.Handler != "fail" || te.Pid != before || !strings.Contains(err.Error(), "(fail) on worker") {
		t.Fatalf("task error does not name handler and worker: %v", err)
	}

	_, err = supervisor.Bind[string, int](p, "panic").Call(ctx, "kaboom")
	if !errors.As(err, &re) || re.Type != "panic" || re.Message != "kaboom" || !strings.Contains(re.Traceback, "main_test.go") {
		t.Fatalf("panic: %#v", err)
	}
	_, err = supervisor.Bind[int, int](p, "nope").Call(ctx, 1)
	if !errors.As(err, &re) || re.Type != "unknown_handler" {
		t.Fatalf("unknown handler: %v", err)
	}
	_, err = supervisor.Bind[string, int](p, "square").Call(ctx, "not a number")
	if !errors.As(err, &re) || re.Type != "decode" {
		t.Fatalf("bad input: %v", err)
	}
	_, err = supervisor.Bind[int, []byte](p, "bigresult").Call(ctx, 2<<20) // over the 1 MiB frame limit
	if !errors.As(err, &re) || re.Type != "encode" || !strings.Contains(re.Message, "frame") {
		t.Fatalf("a result over the frame limit: %v", err)
	}
	if n, err := supervisor.Bind[struct{}, int](p, "readstdin").Call(ctx, struct{}{}); n != 0 || err != nil {
		t.Fatalf("a handler reading stdin got %d bytes (%v), want 0: stdin must be /dev/null", n, err)
	}
	if after, err := pid.Call(ctx, struct{}{}); err != nil || after != before {
		t.Fatalf("worker replaced after handler errors: pid %d then %d (%v)", before, after, err)
	}
}

func TestStdoutInHandlerGoesToStderr(t *testing.T) {
	p, logs := startPool(t, supervisor.Config{Workers: 1})
	ctx := context.Background()
	out, err := supervisor.Bind[string, string](p, "print").Call(ctx, "stray line on stdout")
	if err != nil || out != "printed" {
		t.Fatalf("%q %v", out, err)
	}
	// The echo after it proves the frame stream is intact; the line shows up as a log record.
	if v, err := supervisor.Bind[int, int](p, "square").Call(ctx, 3); err != nil || v != 9 {
		t.Fatalf("after a print: %v %v", v, err)
	}
	p.Shutdown(ctx) // stderr is fully read once the worker exits
	if !strings.Contains(logs.String(), "stray line on stdout") || !strings.Contains(logs.String(), "worker=1") {
		t.Fatalf("the printed line is not in the logs, tagged with the worker:\n%s", logs)
	}
}

// blockOn submits a "block" task and returns the pids the handler reports once it is running.
func blockOn(t *testing.T, p *supervisor.Pool, ctx context.Context, spawn bool) (*supervisor.Future[int], int, int) {
	return blockOnWith(t, p, ctx, blockInput{Spawn: spawn})
}

func blockOnWith(t *testing.T, p *supervisor.Pool, ctx context.Context, in blockInput) (*supervisor.Future[int], int, int) {
	t.Helper()
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	in.FIFO = fifo
	f := supervisor.Bind[blockInput, int](p, "block").Submit(ctx, in)
	r, err := os.Open(fifo) // blocks until the handler opens it: the task is running
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(line)
	return f, atoi(t, fields[0]), atoi(t, fields[1])
}

func TestWorkerKilledMidTask(t *testing.T) {
	p, events := startPool(t, supervisor.Config{Workers: 2})
	ctx := context.Background()
	blocked, pid, grandchild := blockOn(t, p, ctx, true)
	sleep := supervisor.Bind[int, int](p, "sleep")
	var others []*supervisor.Future[int]
	for range 50 {
		others = append(others, sleep.Submit(ctx, 1))
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_, err := blocked.Get(ctx)
	var we *supervisor.WorkerError
	if !errors.Is(err, supervisor.ErrWorkerDied) || !errors.As(err, &we) || we.Pid != pid ||
		!strings.Contains(err.Error(), "killed by signal 9") || !strings.Contains(we.Stderr, "block: about to block") {
		t.Fatalf("the killed worker's task: %v", err)
	}
	for i, f := range others {
		if v, err := f.Get(ctx); err != nil || v != 1 {
			t.Fatalf("task %d beside the killed one: %v %v", i, v, err)
		}
	}
	events.WaitForReplacement(t, pid)
	assertGone(t, pid, grandchild) // the worker's group went with it
	for _, w := range p.Workers() {
		if w.Pid == pid {
			t.Fatal("the dead worker is still listed")
		}
	}
}

func TestCancelRunningAndQueued(t *testing.T) {
	p, _ := startPool(t, supervisor.Config{Workers: 1, InFlight: 1})
	ctx, cancel := context.WithCancel(context.Background())
	blocked, pid, _ := blockOn(t, p, ctx, false)
	queued := supervisor.Bind[int, int](p, "sleep").Submit(ctx, 1)
	cancel()
	var re *supervisor.RemoteError
	if _, err := blocked.Get(context.Background()); !errors.As(err, &re) || re.Type != "Canceled" {
		t.Fatalf("running task after cancel: %v", err)
	}
	if _, err := queued.Get(context.Background()); !errors.Is(err, context.Canceled) {
		t.Fatalf("queued task after cancel: %v", err)
	}
	now, _ := supervisor.Bind[struct{}, int](p, "pid").Call(context.Background(), struct{}{})
	if now != pid {
		t.Fatalf("cancelling replaced the worker (%d -> %d)", pid, now)
	}
}

func TestCloseFinishesEverything(t *testing.T) {
	p, _ := startPool(t, supervisor.Config{Workers: 2})
	ctx := context.Background()
	sleep := supervisor.Bind[int, int](p, "sleep")
	var fs []*supervisor.Future[int]
	for range 300 {
		fs = append(fs, sleep.Submit(ctx, 1))
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	for i, f := range fs {
		select {
		case <-f.Done():
		default:
			t.Fatalf("task %d has no outcome after Close", i)
		}
		if _, err := f.Get(ctx); err != nil {
			t.Fatalf("task %d: %v", i, err)
		}
	}
	if _, err := sleep.Call(ctx, 1); !errors.Is(err, supervisor.ErrPoolClosed) {
		t.Fatalf("submit after Close: %v", err)
	}
}

// Shutdown: queued tasks fail at once; running ones finish until its context ends, then get a
// cancel; one that ignores the cancel has its worker killed CancelGrace later.
func TestShutdownCancelsRunningAndFailsQueued(t *testing.T) {
	p, _ := startPool(t, supervisor.Config{Workers: 3, InFlight: 1, CancelGrace: 200 * time.Millisecond, StopGrace: 100 * time.Millisecond})
	ctx := context.Background()
	listening, _, _ := blockOn(t, p, ctx, false)                                      // honours its cancel
	deaf, deafPid, _ := blockOnWith(t, p, ctx, blockInput{Deaf: true})                // ignores it
	quick, _, _ := blockOnWith(t, p, ctx, blockInput{Finish: 100 * time.Millisecond}) // ends in time
	var queued []*supervisor.Future[int]
	for range 5 {
		queued = append(queued, supervisor.Bind[int, int](p, "square").Submit(ctx, 2))
	}
	sctx, cancel := context.WithTimeout(ctx, 400*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := p.Shutdown(sctx)
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown whose context ended first: %v", err)
	}
	if took < 400*time.Millisecond {
		t.Fatalf("Shutdown returned after %v, before its context ended", took)
	}
	for i, f := range queued {
		if _, err := f.Get(ctx); !errors.Is(err, supervisor.ErrPoolClosed) {
			t.Fatalf("queued task %d: %v", i, err)
		}
	}
	if v, err := quick.Get(ctx); err != nil || v != 100 {
		t.Fatalf("a running task that ends in time: %v %v", v, err)
	}
	var re *supervisor.RemoteError
	if _, err := listening.Get(ctx); !errors.Is(err, supervisor.ErrPoolClosed) || !errors.As(err, &re) || re.Type != "Canceled" {
		t.Fatalf("a running task cancelled by Shutdown: %v", err)
	}
	if _, err := deaf.Get(ctx); !errors.Is(err, supervisor.ErrPoolClosed) || !strings.Contains(err.Error(), "worker killed") {
		t.Fatalf("a running task that ignores Shutdown's cancel: %v", err)
	}
	assertGone(t, deafPid)
}

func TestCancellingStartContextShutsPoolDown(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	p, err := supervisor.Start(ctx, supervisor.Config{Workers: 2, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, w := range p.Workers() {
		pids = append(pids, w.Pid)
	}
	long := supervisor.Bind[int, int](p, "sleep").Submit(context.Background(), 600_000)
	cancel()
	if _, err := long.Get(context.Background()); !errors.Is(err, supervisor.ErrPoolClosed) {
		t.Fatalf("a running task after the pool's context was cancelled: %v", err)
	}
	p.Close() // returns once every worker is reaped
	assertGone(t, pids...)
}

func TestShutdownIdlePool(t *testing.T) {
	p, _ := startPool(t, supervisor.Config{Workers: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown of an idle pool: %v", err)
	}
}

func TestStartErrors(t *testing.T) {
	self, _ := os.Executable()
	cases := []struct {
		name    string
		cmd     []string
		env     []string
		want    []string
		wantBad bool
	}{
		{"stray print", []string{"sh", "-c", "echo hello world; exec sleep 60"}, nil,
			[]string{`first bytes received: "hello world\n"`, `command ["sh" "-c"`, "frame too large"}, true},
		{"exits first", []string{"sh", "-c", "echo it went wrong >&2; exit 3"}, nil,
			[]string{"exit status 3", "it went wrong", "before a hello"}, true},
		{"old version", []string{self}, []string{"SUPERVISE_TEST_MODE=hello-v2"},
			[]string{"protocol version 2, this parent speaks 1"}, true},
		{"no such command", []string{"/nonexistent/worker"}, nil, []string{"/nonexistent/worker", "no such file"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			p, err := supervisor.Start(context.Background(), supervisor.Config{Workers: 2, Command: tc.cmd, Env: tc.env,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err == nil {
				p.Close()
				t.Fatal("Start succeeded")
			}
			var se *supervisor.StartError
			if !errors.As(err, &se) || errors.Is(err, supervisor.ErrBadHello) != tc.wantBad ||
				errors.Is(err, supervisor.ErrProtocolVersion) != (tc.name == "old version") {
				t.Fatalf("error %v (%T)", err, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			if time.Since(start) > 5*time.Second {
				t.Errorf("took %v: the bad worker was waited for, not killed", time.Since(start))
			}
			if se.Pid != 0 {
				assertGone(t, se.Pid)
			}
		})
	}
}

func TestWorkerRunByHandRefuses(t *testing.T) {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "SUPERVISE_TEST_MODE=serve-direct")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "SUPERVISE_MAGIC_COOKIE environment variable is not set") {
		t.Fatalf("exit %v, output %q", err, out)
	}
}

func TestInputOverFrameLimit(t *testing.T) {
	p, _ := startPool(t, supervisor.Config{Workers: 1, MaxFrame: 1 << 20})
	_, err := supervisor.Bind[[]byte, []byte](p, "echo").Call(context.Background(), make([]byte, 2<<20))
	if !errors.Is(err, supervisor.ErrTooLarge) {
		t.Fatalf("%v", err)
	}
}

func TestShutdownLeavesNoGoroutine(t *testing.T) {
	before := runtime.NumGoroutine()
	p, err := supervisor.Start(context.Background(), supervisor.Config{Workers: 2,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	for r := range supervisor.Bind[int, int](p, "square").MapUnordered(ctx, ints(1000)) {
		_ = r
	}
	cancel()
	var pids []int
	for _, w := range p.Workers() {
		pids = append(pids, w.Pid)
	}
	p.Shutdown(ctx)
	assertGone(t, pids...)
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines before, %d after Shutdown:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond) // exiting goroutines need a moment to be counted out
	}
}

var _ = channel.DefaultMaxFrame

// TestIdleWorkerTakesNewTaskFirst: while one worker runs a task, a new one goes to the idle
// worker, not to the busy one's free slot (where it would wait, or share its CPU, while the
// other idled).
func TestIdleWorkerTakesNewTaskFirst(t *testing.T) {
	p, _ := startPool(t, supervisor.Config{Workers: 2, InFlight: 4})
	pid := supervisor.Bind[struct{}, int](p, "pid")
	for round := range 20 {
		ctx, cancel := context.WithCancel(context.Background())
		blocked, busy, _ := blockOn(t, p, ctx, false)
		// On the busy worker the new task would wait behind the blocked one: give up after
		// a while, rather than wait for ever.
		waitCtx, stopWaiting := context.WithTimeout(context.Background(), 10*time.Second)
		got, err := pid.Submit(context.Background(), struct{}{}).Get(waitCtx)
		stopWaiting()
		cancel()
		if _, err := blocked.Get(context.Background()); err == nil {
			t.Fatalf("round %d: the blocked task was cancelled, yet it returned no error", round)
		}
		if err != nil {
			t.Fatal(err)
		}
		if got == busy {
			t.Fatalf("round %d: worker %d took the new task while running another, and the other worker idled", round, busy)
		}
	}
}
