package supervisor_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/supervise-dev/supervise/channel"
	"github.com/supervise-dev/supervise/child"
	"github.com/supervise-dev/supervise/internal/proctest"
	"github.com/supervise-dev/supervise/supervisor"
	"go.opentelemetry.io/otel/trace"
)

// The test binary is its own worker: TestMain registers the handlers below and calls
// child.Main, which serves and exits when the binary was started by a pool.
func TestMain(m *testing.M) {
	switch os.Getenv("SUPERVISE_TEST_MODE") {
	case "serve-direct": // a worker binary run by hand, without the cookie
		if err := child.Serve(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	case "hello-v2": // a worker of a future protocol version
		c := channel.NewConn(os.Stdin, os.Stdout, channel.Options{})
		hello, _ := channel.Marshal(channel.Hello{Protocol: 2, Pid: os.Getpid(), Language: "go"})
		_ = c.Send(channel.Message{Kind: channel.KindHello, Payload: hello})
		_, _ = c.Recv() // until EOF
		os.Exit(0)
	case "spin": // a grandchild that keeps a core busy (see the spin handler)
		ms, _ := strconv.Atoi(os.Getenv("SUPERVISE_TEST_SPIN_MS"))
		if spin(time.Duration(ms)*time.Millisecond) < 1 {
			os.Exit(1)
		}
		os.Exit(0)
	case "hostile": // see hostile_test.go
		hostileWorker(os.Getenv("SUPERVISE_TEST_HOSTILE"))
	case "exit-after-hello": // a worker that starts, then exits at once
		c := channel.NewConn(os.Stdin, os.Stdout, channel.Options{})
		hello, _ := channel.Marshal(channel.Hello{Protocol: channel.ProtocolVersion, Pid: os.Getpid(), Language: "go", Handlers: []string{"square"}})
		_ = c.Send(channel.Message{Kind: channel.KindHello, Payload: hello})
		fmt.Fprintln(os.Stderr, "fatal: config file /etc/nowhere.toml not found")
		os.Exit(1)
	}
	child.Handle("echo", func(_ context.Context, b []byte) ([]byte, error) { return b, nil })
	// spin keeps a core busy for Ms milliseconds of CPU time, pinned to CPU if it is not
	// negative, or, with Child, has a child process of its own do it while it waits. It reports "spinning"
	// to its caller when it starts.
	child.Handle("spin", func(ctx context.Context, in spinInput) (float64, error) {
		if err := child.Report(ctx, "spinning"); err != nil {
			return 0, err
		}
		d := time.Duration(in.Ms) * time.Millisecond
		if in.Child {
			cmd := exec.CommandContext(ctx, os.Args[0])
			cmd.Env = append(os.Environ(), "SUPERVISE_TEST_MODE=spin", "SUPERVISE_TEST_SPIN_MS="+strconv.Itoa(in.Ms))
			return 0, cmd.Run()
		}
		if in.CPU >= 0 {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			if err := pinToCPU(in.CPU); err != nil {
				return 0, err
			}
		}
		return spin(d), nil
	})
	child.Handle("square", func(_ context.Context, x int) (int, error) { return x * x, nil })
	child.Handle("traced", func(ctx context.Context, _ struct{}) ([2]string, error) { // the trace its context carries
		sc := trace.SpanContextFromContext(ctx)
		if !sc.IsValid() {
			return [2]string{}, nil
		}
		return [2]string{sc.TraceID().String(), sc.SpanID().String()}, nil
	})
	child.Handle("pid", func(context.Context, struct{}) (int, error) { return os.Getpid(), nil })
	child.Handle("fail", func(_ context.Context, msg string) (int, error) { return 0, errors.New(msg) })
	child.Handle("bigresult", func(_ context.Context, n int) ([]byte, error) { return make([]byte, n), nil })
	child.Handle("readstdin", func(context.Context, struct{}) (int, error) { // reads /dev/null, not frames
		b, err := io.ReadAll(os.Stdin)
		return len(b), err
	})
	child.Handle("panic", func(_ context.Context, msg string) (int, error) { panic(msg) })
	child.Handle("print", func(_ context.Context, msg string) (string, error) {
		fmt.Println(msg) // must land on stderr, not in the frame stream
		return "printed", nil
	})
	child.Handle("sleep", func(ctx context.Context, ms int) (int, error) {
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
			return ms, nil
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	})
	// crashonce crashes its worker the first time it is called with a path (which it creates),
	// and returns "ok" from then on.
	child.Handle("crashonce", func(_ context.Context, marker string) (string, error) {
		if _, err := os.Stat(marker); err != nil {
			os.WriteFile(marker, nil, 0o600)
			os.Exit(3)
		}
		return "ok", nil
	})
	// poison doubles its input, except two: -1 crashes the worker; -2 spins, deaf to its
	// context, until its worker is killed.
	child.Handle("poison", func(_ context.Context, n int) (int, error) {
		switch n {
		case -1:
			os.Exit(3)
		case -2:
			for spin(time.Second) >= 0 {
			}
		}
		return 2 * n, nil
	})
	// queuepoison is poison for queues: n >= 0 is doubled, and a multiple of 10 first puts
	// the follow-up -(n+10), which fails with the error "follow-up of n"; -1 crashes the
	// worker, -2 spins deaf to its context until killed, -3 and -4 wait until the FIFO
	// $SUPERVISE_TEST_GATE.3 (or .4) is opened and closed by the test, then fail with "gate",
	// and -5 reports (child.Report) and returns 0.
	child.Handle("queuepoison", func(ctx context.Context, n int) (int, error) {
		switch {
		case n == -1:
			os.Exit(3)
		case n == -2:
			for spin(time.Second) >= 0 {
			}
		case n == -3 || n == -4:
			f, err := os.Open(fmt.Sprintf("%s.%d", os.Getenv("SUPERVISE_TEST_GATE"), -n))
			if err != nil {
				return 0, err
			}
			_, _ = io.Copy(io.Discard, f)
			f.Close()
			return 0, errors.New("gate")
		case n == -5:
			return 0, child.Report(ctx, "a report")
		case n <= -10:
			return 0, fmt.Errorf("follow-up of %d", -n-10)
		case n%10 == 0:
			if err := child.Put(ctx, -(n + 10)); err != nil {
				return 0, err
			}
		}
		return 2 * n, nil
	})
	// startlog appends its input to the file $SUPERVISE_TEST_LEDGER before anything else (the
	// tests' record of handler starts, kept outside the pool), then doubles it, except: -1
	// exits its worker; -2 spins, deaf to its context, until its worker is killed.
	child.Handle("startlog", func(_ context.Context, n int) (int, error) {
		if err := logStart(strconv.Itoa(n)); err != nil {
			return 0, err
		}
		switch n {
		case -1:
			os.Exit(3)
		case -2:
			for spin(time.Second) >= 0 {
			}
		}
		return 2 * n, nil
	})
	// model is the model test's handler (model_test.go): it logs its start, then acts.
	child.Handle("model", func(ctx context.Context, in modelInput) (int, error) {
		if err := logStart(strconv.Itoa(in.ID)); err != nil {
			return 0, err
		}
		switch in.Act {
		case actCrash:
			os.Exit(3)
		case actSpin:
			for spin(time.Second) >= 0 {
			}
		case actFail:
			return 0, errors.New("model failure")
		case actSleep:
			select {
			case <-time.After(time.Duration(in.Ms) * time.Millisecond):
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		case actPut:
			if err := child.Put(ctx, modelInput{ID: -in.ID, Act: actOK}); err != nil {
				return 0, err
			}
		}
		return in.ID, nil
	})
	// fanout puts n follow-ups of 0 (child.Put), and returns n.
	child.Handle("fanout", func(ctx context.Context, n int) (int, error) {
		for range n {
			if err := child.Put(ctx, 0); err != nil {
				return 0, err
			}
		}
		return n, nil
	})
	// chaos misbehaves on some inputs: multiples of 17 crash the worker, of 23 panic, of 29
	// return an error; the rest are doubled.
	child.Handle("chaos", func(_ context.Context, n int) (int, error) {
		switch {
		case n%17 == 0:
			os.Exit(1)
		case n%23 == 0:
			panic("chaos")
		case n%29 == 0:
			return 0, errors.New("chaos")
		}
		return 2 * n, nil
	})
	// eat allocates and touches MiB mebibytes and returns its pid; with Keep the memory stays
	// allocated after the call; with Hold it then waits for its context.
	child.Handle("eat", func(ctx context.Context, in eatInput) (int, error) {
		b := make([]byte, in.MiB<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		if in.Keep {
			kept = append(kept, b)
		}
		if in.Hold {
			<-ctx.Done()
		}
		runtime.KeepAlive(b)
		return os.Getpid(), ctx.Err()
	})
	child.Handle("deaf", func(_ context.Context, ms int) (int, error) { // ignores its context
		time.Sleep(time.Duration(ms) * time.Millisecond)
		return ms, nil
	})
	// block writes "pid grandchild-pid" to the FIFO at path (the test's signal that the task is
	// running), then waits for its context (or, deaf, ignores it). With spawn, it first starts
	// a grandchild sleep.
	child.Handle("block", func(ctx context.Context, in blockInput) (int, error) {
		gpid := 0
		if in.Spawn {
			cmd := exec.Command("sleep", "300")
			if err := cmd.Start(); err != nil {
				return 0, err
			}
			gpid = cmd.Process.Pid
		}
		fmt.Fprintln(os.Stderr, "block: about to block") // for the stderr tail of a crash
		f, err := os.OpenFile(in.FIFO, os.O_WRONLY, 0)
		if err != nil {
			return 0, err
		}
		fmt.Fprintf(f, "%d %d\n", os.Getpid(), gpid)
		f.Close()
		if in.Finish > 0 {
			time.Sleep(in.Finish)
			return int(in.Finish.Milliseconds()), nil
		}
		if in.Deaf {
			time.Sleep(time.Minute)
		}
		<-ctx.Done()
		return 0, ctx.Err()
	})
	// tree puts two follow-ups of depth d-1 (child.Put) and returns d: a queue fed depth d
	// runs 2^(d+1)-1 items.
	child.Handle("tree", func(ctx context.Context, d int) (int, error) {
		for range min(d, 1) * 2 {
			if err := child.Put(ctx, d-1); err != nil {
				return 0, err
			}
		}
		return d, nil
	})
	// report sends its caller 0..n-1 (child.Report), then returns n.
	child.Handle("report", func(ctx context.Context, n int) (int, error) {
		for i := range n {
			if err := child.Report(ctx, i); err != nil {
				return 0, err
			}
		}
		return n, nil
	})
	// crashpid crashes the worker whose pid it is given, and returns the pid of the others.
	child.Handle("crashpid", func(_ context.Context, pid int) (int, error) {
		if pid == os.Getpid() {
			os.Exit(3)
		}
		return os.Getpid(), nil
	})
	// litter leaves two processes behind that ignore SIGTERM and SIGHUP, one a child of the
	// worker, one double-forked (its parent exits, so it is no descendant of the worker, but
	// still in its group), and returns their pids.
	child.Handle("litter", func(context.Context, struct{}) ([2]int, error) {
		direct := exec.Command("sh", "-c", `trap "" TERM HUP; exec sleep 300`)
		if err := direct.Start(); err != nil {
			return [2]int{}, err
		}
		out, err := exec.Command("sh", "-c", `(trap "" TERM HUP; exec sleep 300) >/dev/null 2>&1 & echo $!`).Output()
		if err != nil {
			return [2]int{}, err
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
		return [2]int{direct.Process.Pid, pid}, err
	})
	// escape starts a process that leaves the worker's process group and session (setsid) and
	// ignores SIGTERM and SIGHUP, reports its pid, and then holds the call for ms, ignoring
	// its context, before it returns the pid.
	child.Handle("escape", func(ctx context.Context, ms int) (int, error) {
		out, err := exec.Command("sh", "-c", `setsid sh -c 'trap "" TERM HUP; exec sleep 300' </dev/null >/dev/null 2>&1 & echo $!`).Output()
		if err != nil {
			return 0, err
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
		if err != nil {
			return 0, err
		}
		_ = child.Report(ctx, pid)
		time.Sleep(time.Duration(ms) * time.Millisecond)
		return pid, nil
	})
	// spinaway starts this binary spinning for ms of CPU time, double-forked in a session of
	// its own (so no process of the worker's tree reaps it, and it leaves the worker's
	// group), and returns its pid at once.
	child.Handle("spinaway", func(_ context.Context, ms int) (int, error) {
		cmd := exec.Command("sh", "-c", `setsid "$0" </dev/null >/dev/null 2>&1 & echo $!`, os.Args[0])
		cmd.Env = append(os.Environ(), "SUPERVISE_TEST_MODE=spin", "SUPERVISE_TEST_SPIN_MS="+strconv.Itoa(ms))
		out, err := cmd.Output()
		if err != nil {
			return 0, err
		}
		return strconv.Atoi(strings.TrimSpace(string(out)))
	})
	// forkmany starts n processes (sleep MARKER) and returns how many started and how many
	// forks failed.
	child.Handle("forkmany", func(_ context.Context, in forkInput) ([2]int, error) {
		var out [2]int
		for range in.N {
			if err := exec.Command("sleep", in.Marker).Start(); err != nil {
				out[1]++
			} else {
				out[0]++
			}
		}
		return out, nil
	})
	var initialized string
	child.Handle("init", func(_ context.Context, v string) (bool, error) {
		if v == "refuse" {
			return false, errors.New("init refused")
		}
		initialized = v
		return true, nil
	})
	child.Handle("initialized", func(context.Context, struct{}) (string, error) { return initialized, nil })
	child.Main()
	switch os.Getenv("SUPERVISE_TEST_MODE") {
	case "orphan-parent":
		orphanParent()
	case "orphan-parent-idle":
		orphanParentIdle()
	case "escape-parent":
		escapeParent()
	}
	if os.Getenv("GORACE") == "" {
		// A race-enabled program sleeps 1s at exit (GORACE atexit_sleep_ms): not in workers,
		// which exit all the time in these tests.
		os.Setenv("GORACE", "atexit_sleep_ms=0")
	}
	os.Exit(m.Run())
}

// orphanParent is the parent that TestNoOrphansWhenParentIsKilled kills: it starts a pool of
// two workers, each running a task that has started a grandchild, prints "PID GRANDCHILD-PID"
// for each, and waits to be killed.
func orphanParent() {
	// InFlight 1: the second task must go to the second worker, the first one is blocked.
	p, err := supervisor.Start(context.Background(), supervisor.Config{Workers: 2, InFlight: 1, StopGrace: 200 * time.Millisecond})
	if err != nil {
		panic(err)
	}
	dir, _ := os.MkdirTemp("", "orphan")
	for i := range 2 {
		fifo := filepath.Join(dir, strconv.Itoa(i))
		if err := syscall.Mkfifo(fifo, 0o600); err != nil {
			panic(err)
		}
		supervisor.Bind[blockInput, int](p, "block").Submit(context.Background(), blockInput{FIFO: fifo, Spawn: true})
		b, err := os.ReadFile(fifo) // until the handler has written its pids and closed it
		if err != nil {
			panic(err)
		}
		os.Stdout.Write(b)
	}
	os.RemoveAll(dir)
	select {}
}

// orphanParentIdle is the parent that TestNoOrphansWhenParentOfIdleWorkerIsKilled kills: its
// one worker ran a task that left processes behind, and is idle. It prints "PID PID PID", the
// worker's and theirs, and waits to be killed.
func orphanParentIdle() {
	p, err := supervisor.Start(context.Background(), supervisor.Config{Workers: 1, StopGrace: 200 * time.Millisecond})
	if err != nil {
		panic(err)
	}
	pids, err := supervisor.Bind[struct{}, [2]int](p, "litter").Call(context.Background(), struct{}{})
	if err != nil {
		panic(err)
	}
	fmt.Printf("%d %d %d\n", p.Workers()[0].Pid, pids[0], pids[1])
	select {}
}

// escapeParent is the parent that TestEscapedProcessGoneAfterParentIsKilled kills: its worker
// ran a task that left a setsid'd process behind. It prints "PID PID", the worker's and that
// process's, and waits to be killed.
func escapeParent() {
	p, err := supervisor.Start(context.Background(), supervisor.Config{Workers: 1, StopGrace: 200 * time.Millisecond})
	if err != nil {
		panic(err)
	}
	pid, err := supervisor.Bind[int, int](p, "escape").Call(context.Background(), 0)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%d %d\n", p.Workers()[0].Pid, pid)
	select {}
}

type forkInput struct {
	N      int
	Marker string
}

type spinInput struct {
	CPU   int // pin to this CPU; -1: anywhere
	Ms    int
	Child bool
}

// spin keeps a CPU busy until this process has used d of CPU time (not of wall time: on a
// loaded machine it takes longer), and returns a figure that depends on the work done.
func spin(d time.Duration) float64 {
	x := 1.0
	for cpuTime() < d {
		for range 100000 {
			x = x*1.0000001 + 1e-9
		}
	}
	return x
}

// cpuTime is the user and system time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type eatInput struct {
	MiB        int
	Keep, Hold bool
}

var kept [][]byte // memory the eat handler keeps

type blockInput struct {
	FIFO        string
	Spawn, Deaf bool
	Finish      time.Duration // return this long after writing the pids
}

// assertGone fails unless the processes, and their groups, are gone.
func assertGone(t *testing.T, pids ...int) {
	t.Helper()
	proctest.AssertGone(t, pids...)
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// logStart appends line to $SUPERVISE_TEST_LEDGER (if set) in one write (O_APPEND: whole lines, even
// from many workers at once).
func logStart(line string) error {
	if os.Getenv("SUPERVISE_TEST_LEDGER") == "" { // a test that keeps no ledger
		return nil
	}
	f, err := os.OpenFile(os.Getenv("SUPERVISE_TEST_LEDGER"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteString(line + "\n")
	return err
}

// readStarts counts the lines of a ledger that logStart wrote.
func readStarts(t *testing.T, path string) map[string]int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	starts := map[string]int{}
	for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		starts[line]++
	}
	return starts
}
