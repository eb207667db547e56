package goplugin_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"
	"github.com/supervise-dev/supervise/child"
	"github.com/supervise-dev/supervise/internal/pooltest"
	"github.com/supervise-dev/supervise/internal/proctest"
	"github.com/supervise-dev/supervise/supervisor"
	"github.com/supervise-dev/supervise/supervisor/goplugin"
)

const hostEnv = "GOPLUGIN_TEST_HOST" // this process is a host that a test kills

func TestMain(m *testing.M) {
	child.Main() // a keeper of a plugin runs here and exits
	switch {
	case os.Getenv(handshake.MagicCookieKey) == handshake.MagicCookieValue:
		servePlugin()
		os.Exit(0)
	case os.Getenv(grandchildEnv) != "":
		serveGrandchild()
	case os.Getenv(hostEnv) != "":
		runHost(os.Getenv(hostEnv))
		os.Exit(0)
	}
	os.Setenv("GORACE", "atexit_sleep_ms=0") // race-built plugins exit at once
	os.Exit(m.Run())
}

// start starts a pool of the test plugin serving proto, its argv marked with a name of its
// own, and checks at the end of the test that none of its processes is left.
func start(t *testing.T, proto plugin.Protocol, cfg supervisor.Config) (*supervisor.Pool, *pooltest.Recorder, string) {
	t.Helper()
	marker := fmt.Sprintf("plugin-%s-%d", strings.ReplaceAll(t.Name(), "/", "-"), time.Now().UnixNano())
	cfg.Command = []string{os.Args[0], "plugin", marker}
	cfg.Env = append(cfg.Env, protoEnv+"="+string(proto))
	cfg.Plugin = goplugin.New(goplugin.Config{Handshake: handshake, Plugins: plugins})
	rec := pooltest.Attach(&cfg)
	pool, err := supervisor.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		pool.Close()
		proctest.AwaitNoProcessWithArg(t, 5*time.Second, marker)
	})
	return pool, rec, marker
}

func call(ctx context.Context, pool *supervisor.Pool, fn func(context.Context, Tester) error) error {
	return goplugin.Call(ctx, pool, "tester", fn)
}

func echo(ctx context.Context, pool *supervisor.Pool, s string) error {
	return call(ctx, pool, func(_ context.Context, p Tester) error {
		got, err := p.Echo(s)
		if err == nil && got != s {
			err = fmt.Errorf("echo of %q gave %q", s, got)
		}
		return err
	})
}

var protocols = []plugin.Protocol{plugin.ProtocolNetRPC, plugin.ProtocolGRPC}

// Calls through both protocols reach two plugin processes, and Stats sees them.
func TestCallsOverBothProtocols(t *testing.T) {
	for _, proto := range protocols {
		t.Run(string(proto), func(t *testing.T) {
			pool, _, _ := start(t, proto, supervisor.Config{Workers: 2, InFlight: 4})
			ctx := context.Background()
			var wg sync.WaitGroup
			errs := make(chan error, 200)
			pids := sync.Map{}
			for i := range 200 {
				wg.Go(func() {
					errs <- echo(ctx, pool, strconv.Itoa(i))
					_ = call(ctx, pool, func(_ context.Context, p Tester) error {
						pid, err := p.Pid()
						pids.Store(pid, true)
						return err
					})
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			n := 0
			pids.Range(func(any, any) bool { n++; return true })
			if n != 2 {
				t.Errorf("calls reached %d plugin processes, want 2", n)
			}
			st := pool.Stats()
			if len(st.Workers) != 2 {
				t.Fatalf("Stats has %d workers, want 2", len(st.Workers))
			}
			for _, w := range st.Workers {
				if w.Pid == 0 || w.RSS == 0 || w.Processes < 2 || w.Tasks == 0 {
					t.Errorf("worker figures: pid %d, RSS %d, processes %d (keeper and plugin), tasks %d", w.Pid, w.RSS, w.Processes, w.Tasks)
				}
			}
		})
	}
}

// A plugin that hangs in a call is killed by the time limit with its grandchild, only that call
// fails, and a new plugin takes its place. Over gRPC a call that takes its context returns at
// its time limit instead, and its plugin lives on.
func TestTimeLimit(t *testing.T) {
	cfg := supervisor.Config{Workers: 2, TaskTimeout: 300 * time.Millisecond, CancelGrace: 300 * time.Millisecond, StopGrace: 300 * time.Millisecond}
	t.Run("hung call kills its plugin and grandchild", func(t *testing.T) {
		pool, rec, _ := start(t, plugin.ProtocolNetRPC, cfg)
		ctx := context.Background()
		victim := pool.Workers()[0]
		grandchild := fmt.Sprintf("grandchild-%d", time.Now().UnixNano())
		err := goplugin.CallOn(ctx, pool, victim.ID, "tester", func(_ context.Context, p Tester) error { return p.Grandchild(grandchild) })
		if err != nil {
			t.Fatal(err)
		}
		proctest.AwaitProcessWithArg(t, 5*time.Second, grandchild)

		hung := make(chan error, 1)
		go func() {
			hung <- goplugin.CallOn(ctx, pool, victim.ID, "tester", func(_ context.Context, p Tester) error { return p.Sleep(-1) })
		}()
		for i := range 50 { // meanwhile, the other plugin answers
			if err := echo(ctx, pool, strconv.Itoa(i)); err != nil {
				t.Fatal(err)
			}
		}
		err = <-hung
		var te *supervisor.TimeoutError
		var task *supervisor.TaskError
		if !errors.As(err, &te) || !errors.Is(err, supervisor.ErrTimeout) || !errors.As(err, &task) || task.WorkerID != victim.ID {
			t.Fatalf("the hung call ended with %v, want a *TimeoutError on worker %d", err, victim.ID)
		}
		proctest.AwaitNoProcessWithArg(t, 5*time.Second, grandchild)
		rec.WaitForReplacement(t, victim.Pid)
		if pooltest.Count[supervisor.EventWorkerKilled](rec) != 1 {
			t.Errorf("events: %v", rec.Events())
		}
		for _, w := range pool.Workers() {
			if w.ID == victim.ID {
				t.Errorf("worker %d still listed after it was killed", w.ID)
			}
		}
		if err := echo(ctx, pool, "after"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("grpc call returns at its time limit", func(t *testing.T) {
		pool, rec, _ := start(t, plugin.ProtocolGRPC, cfg)
		ctx := context.Background()
		err := call(ctx, pool, func(ctx context.Context, p Tester) error { return p.SleepCtx(ctx, 60_000) })
		var te *supervisor.TimeoutError
		if !errors.As(err, &te) || te.Hard {
			t.Fatalf("the call ended with %v, want a soft *TimeoutError", err)
		}
		if n := pooltest.Count[supervisor.EventWorkerKilled](rec); n != 0 {
			t.Errorf("%d workers killed, want none: %v", n, rec.Events())
		}
		// A gRPC call that ignores its context fails at its limit too, and its plugin is
		// killed like a net/rpc one.
		err = call(ctx, pool, func(ctx context.Context, p Tester) error { return p.Sleep(-1) })
		if !errors.As(err, &te) {
			t.Fatalf("the call ended with %v, want a *TimeoutError", err)
		}
		rec.WaitFor(t, 0, "the kill, with a hard TimeoutError", func(e supervisor.Event) bool {
			k, ok := e.(supervisor.EventWorkerKilled)
			return ok && errors.As(k.Err, &te) && te.Hard
		})
	})
}

// A plugin that crashes fails the call it was running with its exit status and stderr, and
// is restarted under the restart policy: past its threshold, with backoff.
func TestCrashIsRestartedUnderThePolicy(t *testing.T) {
	pool, rec, _ := start(t, plugin.ProtocolNetRPC, supervisor.Config{Workers: 1,
		Restart: supervisor.RestartPolicy{FailureThreshold: 1.5, FailureBackoff: 200 * time.Millisecond, BackoffJitter: -1}})
	ctx := context.Background()
	for i := range 3 {
		before := pool.Workers()[0]
		err := call(ctx, pool, func(_ context.Context, p Tester) error { return p.Crash() })
		var we *supervisor.WorkerError
		if !errors.As(err, &we) || !errors.Is(err, supervisor.ErrWorkerDied) || !strings.Contains(err.Error(), "exit status 2") ||
			!strings.Contains(we.Stderr, "panic: crashing on purpose") {
			t.Fatalf("crash %d: the call ended with %v, want a *WorkerError with exit status 2 and the panic", i, err)
		}
		rec.WaitForReplacement(t, before.Pid)
	}
	if pooltest.Count[supervisor.EventRestartBackoff](rec) == 0 {
		t.Errorf("three crashes past a threshold of 1.5 and no backoff: %v", rec.Events())
	}
	if err := echo(ctx, pool, "alive"); err != nil {
		t.Fatal(err)
	}
}

// A plugin that cannot start is a *StartError quoting its stderr.
func TestBrokenPluginFailsToStart(t *testing.T) {
	cfg := supervisor.Config{Workers: 1, Env: []string{brokenEnv + "=1"}, Command: []string{os.Args[0], "plugin"},
		Plugin: goplugin.New(goplugin.Config{Handshake: handshake, Plugins: plugins})}
	pooltest.Attach(&cfg)
	_, err := supervisor.Start(context.Background(), cfg)
	var se *supervisor.StartError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "this plugin is broken on purpose") || !strings.Contains(err.Error(), "exit status 4") {
		t.Fatalf("Start: %v, want a *StartError with the plugin's stderr and exit status", err)
	}
}

// A stopped plugin answers no Ping: it is killed as hung and replaced.
func TestStoppedPluginIsHung(t *testing.T) {
	pool, rec, _ := start(t, plugin.ProtocolNetRPC, supervisor.Config{Workers: 1,
		Heartbeat: 50 * time.Millisecond, HangTimeout: 500 * time.Millisecond, StopGrace: 200 * time.Millisecond})
	w := pool.Workers()[0]
	if err := syscall.Kill(-w.Pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	rec.WaitFor(t, 0, "worker killed as hung", func(e supervisor.Event) bool {
		k, ok := e.(supervisor.EventWorkerKilled)
		return ok && k.Pid == w.Pid && errors.Is(k.Err, supervisor.ErrHung)
	})
	rec.WaitForReplacement(t, w.Pid)
	if err := echo(context.Background(), pool, "alive"); err != nil {
		t.Fatal(err)
	}
}

// A plugin over the hard memory limit is killed (by the kernel, where the pool has cgroups); the
// call fails with a *MemoryLimitError.
func TestMemoryLimit(t *testing.T) {
	pool, rec, _ := start(t, plugin.ProtocolNetRPC, supervisor.Config{Workers: 1,
		MemoryHardLimit: 200 << 20, MemoryInterval: 20 * time.Millisecond, StopGrace: 200 * time.Millisecond})
	w := pool.Workers()[0]
	err := call(context.Background(), pool, func(_ context.Context, p Tester) error {
		for {
			if err := p.Grow(20); err != nil {
				return err
			}
		}
	})
	var me *supervisor.MemoryLimitError
	// Sampled (no cgroups), the RSS seen is over the limit; enforced by the kernel on the
	// plugin's cgroup, the cgroup's peak is at the limit.
	if !errors.As(err, &me) || (me.Kernel && me.RSS > me.Limit+8192) || (!me.Kernel && me.RSS <= me.Limit) {
		t.Fatalf("the call ended with %v, want a *MemoryLimitError", err)
	}
	rec.WaitForReplacement(t, w.Pid)
}

// Every call ends exactly once, with the outcome it should have, when calls that crash their
// plugin and calls that overrun their time limit run among plain ones.
func TestEveryCallEndsOnce(t *testing.T) {
	pool, _, _ := start(t, plugin.ProtocolNetRPC, supervisor.Config{Workers: 2, TaskTimeout: 300 * time.Millisecond,
		CancelGrace: 100 * time.Millisecond, StopGrace: 100 * time.Millisecond, Restart: supervisor.RestartPolicy{FailureThreshold: 100}})
	ctx := context.Background()
	const n = 300
	outcomes := make([]chan error, n)
	for i := range outcomes {
		outcomes[i] = make(chan error, 2)
		go func() {
			outcomes[i] <- call(ctx, pool, func(_ context.Context, p Tester) error {
				switch {
				case i%50 == 7:
					return p.Crash()
				case i%50 == 9:
					return p.Sleep(-1)
				}
				_, err := p.Echo(strconv.Itoa(i))
				return err
			})
		}()
	}
	for i, ch := range outcomes {
		err := <-ch
		switch {
		case i%50 == 7:
			if !strings.Contains(fmt.Sprint(err), "exit status 2") {
				t.Errorf("call %d (crash): %v", i, err)
			}
		case i%50 == 9:
			if !errors.Is(err, supervisor.ErrTimeout) {
				t.Errorf("call %d (hang): %v", i, err)
			}
		case err != nil:
			t.Errorf("call %d: %v", i, err)
		}
		select {
		case err := <-ch:
			t.Errorf("call %d ended twice, the second time with %v", i, err)
		default:
		}
	}
	st := pool.Stats()
	done, failed := 0, 0
	for _, w := range st.Workers {
		done, failed = done+w.Tasks, failed+w.Failed
	}
	if done != n-12 || failed != 12 {
		t.Errorf("Stats counts %d calls done and %d failed, want %d and 12", done, failed, n-12)
	}
}

// The plugin's hclog lines come out as slog records with their level and fields.
func TestHclogForwarded(t *testing.T) {
	pool, rec, _ := start(t, plugin.ProtocolNetRPC, supervisor.Config{Workers: 1})
	if err := call(context.Background(), pool, func(_ context.Context, p Tester) error { return p.Log("a record from the plugin") }); err != nil {
		t.Fatal(err)
	}
	w := pool.Workers()[0]
	want := fmt.Sprintf(`level=WARN msg="a record from the plugin" worker=%d pid=%d`, w.ID, w.Pid)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(rec.String(), want) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // stderr is read by its own goroutine: poll the log
	}
	log := rec.String()
	i := strings.Index(log, want)
	if i < 0 {
		t.Fatalf("no %q in the log:\n%s", want, log)
	}
	line, _, _ := strings.Cut(log[i:], "\n")
	if !strings.Contains(line, "answer=42") || !strings.Contains(line, "module=tester") {
		t.Errorf("the record lost its fields: %s", line)
	}
}

// The pool's other APIs say plainly that they need frame workers, and Call that it needs
// plugins.
func TestWrongKindOfPool(t *testing.T) {
	pool, _, _ := start(t, plugin.ProtocolNetRPC, supervisor.Config{Workers: 1})
	_, err := supervisor.Bind[string, string](pool, "echo").Call(context.Background(), "x")
	if err == nil || !strings.Contains(err.Error(), "Pool.Call") {
		t.Errorf("Bind(...).Call on a plugin pool: %v", err)
	}
	err = goplugin.CallOn(context.Background(), pool, 999, "tester", func(context.Context, Tester) error { return nil })
	if !errors.Is(err, supervisor.ErrWorkerDied) {
		t.Errorf("CallOn a worker that does not exist: %v", err)
	}
	err = goplugin.Call(context.Background(), pool, "nope", func(context.Context, Tester) error { return nil })
	if err == nil || !strings.Contains(err.Error(), `dispensing "nope"`) {
		t.Errorf("Call of an unknown plugin: %v", err)
	}
}

// A call whose context ends while it waits for a worker never runs.
func TestQueuedCallDropped(t *testing.T) {
	pool, _, _ := start(t, plugin.ProtocolNetRPC, supervisor.Config{Workers: 1})
	release := make(chan struct{})
	busy := make(chan error, 1)
	started := make(chan struct{})
	go func() {
		busy <- call(context.Background(), pool, func(_ context.Context, p Tester) error {
			close(started)
			<-release
			return nil
		})
	}()
	<-started
	ran := false
	for _, on := range []string{"Call", "CallOn"} {
		ctx, cancel := context.WithCancel(context.Background())
		queued := make(chan error, 1)
		go func() {
			fn := func(context.Context, Tester) error { ran = true; return nil }
			if on == "Call" {
				queued <- call(ctx, pool, fn)
			} else {
				queued <- goplugin.CallOn(ctx, pool, pool.Workers()[0].ID, "tester", fn)
			}
		}()
		cancel() // before or after the call is queued: either way it must not run
		if err := <-queued; !errors.Is(err, context.Canceled) {
			t.Errorf("a cancelled queued %s: %v", on, err)
		}
	}
	if ran {
		t.Error("a cancelled queued call ran")
	}
	close(release)
	if err := <-busy; err != nil {
		t.Fatal(err)
	}
}

// runHost is main for a host that TestHostKilledLeavesNothing kills: it starts a pool of two
// plugins, each with a grandchild, says "ready" and waits.
func runHost(marker string) {
	pool, err := supervisor.Start(context.Background(), supervisor.Config{Workers: 2,
		Command: []string{os.Args[0], "plugin", marker}, StopGrace: 300 * time.Millisecond,
		Plugin: goplugin.New(goplugin.Config{Handshake: handshake, Plugins: plugins})})
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	for _, w := range pool.Workers() {
		err := goplugin.CallOn(context.Background(), pool, w.ID, "tester", func(_ context.Context, p Tester) error {
			return p.Grandchild(marker + "-grandchild")
		})
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
	}
	fmt.Println("ready")
	select {}
}

// The host SIGKILLed leaves no plugin behind, nor anything a plugin started.
func TestHostKilledLeavesNothing(t *testing.T) {
	marker := fmt.Sprintf("host-%d", time.Now().UnixNano())
	host := exec.Command(os.Args[0], "-test.run=^$")
	host.Env = append(os.Environ(), hostEnv+"="+marker, "GORACE=atexit_sleep_ms=0")
	host.Stderr = os.Stderr
	out, err := host.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := host.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	if line != "ready\n" {
		host.Process.Kill()
		host.Wait()
		t.Fatalf("the host said %q", line)
	}
	proctest.AwaitProcessWithArg(t, 5*time.Second, marker)
	proctest.AwaitProcessWithArg(t, 5*time.Second, marker+"-grandchild")
	if err := host.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	host.Wait()
	proctest.AwaitNoProcessWithArg(t, 10*time.Second, marker)
	proctest.AwaitNoProcessWithArg(t, 10*time.Second, marker+"-grandchild")
}
