package jetstream_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"github.com/supervise-dev/supervise/internal/pooltest"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/supervise-dev/supervise/child"
	"github.com/supervise-dev/supervise/internal/proctest"
	"github.com/supervise-dev/supervise/supervisor"
	"github.com/supervise-dev/supervise/supervisor/jetstream"
	"go.opentelemetry.io/otel/trace"
)

// The test binary is three programs: a worker process of a pool (child.Main serves the
// handlers below), a worker machine (machineEnv: a pool of those workers pulling from a
// queue, as supervise worker does), and the tests.
const (
	machineEnv = "JS_TEST_MACHINE" // the server's URL
	workersEnv = "JS_TEST_WORKERS" // worker processes a machine runs (2)
	ackWaitEnv = "JS_TEST_ACKWAIT"
	deliverEnv = "JS_TEST_MAXDELIVER"
)

func TestMain(m *testing.M) {
	child.Handle("echo", func(_ context.Context, s string) (string, error) { return s, nil })
	child.Handle("traced", func(ctx context.Context, _ struct{}) (string, error) { // the trace id its context carries
		return trace.SpanContextFromContext(ctx).TraceID().String(), nil
	})
	// nap sleeps, first writing its input to the log file named in it, so a test can count
	// the times each task started; it answers the pid of its machine.
	child.Handle("nap", func(ctx context.Context, in napInput) (int, error) {
		if in.Log != "" {
			f, err := os.OpenFile(in.Log, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
			if err != nil {
				return 0, err
			}
			fmt.Fprintf(f, "%d\n", in.N)
			f.Close()
		}
		select {
		case <-time.After(time.Duration(in.Ms) * time.Millisecond):
			return os.Getppid(), nil
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	})
	// model writes N to its log (the model test's ledger of starts), then acts: "fail"
	// returns an error, "crash" exits its worker, else it sleeps Ms and answers N.
	child.Handle("model", func(ctx context.Context, in modelInput) (int, error) {
		appendLine(in.Log, strconv.Itoa(in.N))
		switch in.Act {
		case "fail":
			return 0, fmt.Errorf("model failure %d", in.N)
		case "crash":
			os.Exit(3)
		}
		select {
		case <-time.After(time.Duration(in.Ms) * time.Millisecond):
			return in.N, nil
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	})
	// hold writes "start N PID" to its log, waits for its context to end, writes "cancelled N
	// PID" and returns the context's error: a handler that honours a cancel.
	child.Handle("hold", func(ctx context.Context, in napInput) (int, error) {
		appendLine(in.Log, fmt.Sprintf("start %d %d", in.N, os.Getpid()))
		<-ctx.Done()
		appendLine(in.Log, fmt.Sprintf("cancelled %d %d", in.N, os.Getpid()))
		return 0, ctx.Err()
	})
	child.Handle("pid", func(context.Context, int) (int, error) { return os.Getpid(), nil })
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
	// count reports 1 to n, then answers n.
	child.Handle("count", func(ctx context.Context, n int) (int, error) {
		for i := 1; i <= n; i++ {
			if err := child.Report(ctx, i); err != nil {
				return 0, err
			}
		}
		return n, nil
	})
	// slowcount reports 1 to N, Ms milliseconds apart, then answers N.
	child.Handle("slowcount", func(ctx context.Context, in napInput) (int, error) {
		for i := 1; i <= in.N; i++ {
			select {
			case <-time.After(time.Duration(in.Ms) * time.Millisecond):
			case <-ctx.Done():
				return 0, ctx.Err()
			}
			if err := child.Report(ctx, i); err != nil {
				return 0, err
			}
		}
		return in.N, nil
	})
	// slowtree sleeps Ms milliseconds, puts two follow-ups of depth N-1 (none at 0) and
	// answers N.
	child.Handle("slowtree", func(ctx context.Context, in napInput) (int, error) {
		time.Sleep(time.Duration(in.Ms) * time.Millisecond)
		for range min(in.N, 1) * 2 {
			if err := child.Put(ctx, napInput{N: in.N - 1, Ms: in.Ms}); err != nil {
				return 0, err
			}
		}
		return in.N, nil
	})
	// crashonce logs N, then kills its worker the first time (its log has one line) and
	// naps Ms milliseconds after.
	child.Handle("crashonce", func(ctx context.Context, in napInput) (int, error) {
		appendLine(in.Log, strconv.Itoa(in.N))
		if b, _ := os.ReadFile(in.Log); strings.Count(string(b), "\n") == 1 {
			os.Exit(3)
		}
		select {
		case <-time.After(time.Duration(in.Ms) * time.Millisecond):
			return os.Getppid(), nil
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	})
	child.Handle("crash", func(context.Context, int) (int, error) {
		fmt.Fprintln(os.Stderr, "crash: going down")
		os.Exit(3)
		return 0, nil
	})
	child.Handle("fail", func(_ context.Context, s string) (int, error) { return 0, errors.New("no good: " + s) })
	child.Handle("big", func(_ context.Context, n int) ([]byte, error) { return make([]byte, n), nil })
	child.Main()
	if url := os.Getenv(machineEnv); url != "" {
		os.Exit(runMachine(url))
	}
	os.Setenv("GORACE", "atexit_sleep_ms=0") // race-built workers exit at once
	os.Exit(m.Run())
}

// connectTimeout is how long a connection of a test may take, not nats.go's 2 s: the embedded
// server, in the test process, was seen to stall 15 s under -race beside stress --cpu 8 and
// a CI run ("Readloop processing time: 15.46s"), and a test failed on its connect's i/o
// timeout.
const connectTimeout = time.Minute

func appendLine(path, line string) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err == nil {
		fmt.Fprintln(f, line)
		f.Close()
	}
}

type napInput struct {
	N   int    `msgpack:"n"`
	Ms  int    `msgpack:"ms"`
	Log string `msgpack:"log"`
}

// runMachine is a worker machine: two worker processes serving the queue until SIGTERM.
func runMachine(url string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond), nats.Timeout(connectTimeout))
	if err != nil {
		fmt.Fprintln(os.Stderr, "machine:", err)
		return 1
	}
	defer nc.Close()
	// The pool outlives the signal: the tasks held finish on it during the drain.
	workers := 2
	if n, err := strconv.Atoi(os.Getenv(workersEnv)); err == nil {
		workers = n
	}
	pool, err := supervisor.Start(context.WithoutCancel(ctx), supervisor.Config{Workers: workers, Command: []string{os.Args[0], "worker-of", os.Args[len(os.Args)-1]},
		StartTimeout: pooltest.StartTimeout})
	if err != nil {
		fmt.Fprintln(os.Stderr, "machine:", err)
		return 1
	}
	defer pool.Close()
	cfg := jetstream.ServeConfig{Config: testConfig()}
	fmt.Println("ready")
	context.AfterFunc(ctx, func() { fmt.Println("stopping") }) // the test knows SIGTERM came
	if err := jetstream.Serve(ctx, nc, pool, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "machine:", err)
		return 1
	}
	return 0
}

// testConfig is the queue's config in the tests: short AckWait, so lost machines are noticed
// in a second or two.
func testConfig() jetstream.Config {
	cfg := jetstream.Config{Queue: "test", AckWait: 2 * time.Second, MaxDeliver: 3}
	if d, err := time.ParseDuration(os.Getenv(ackWaitEnv)); err == nil {
		cfg.AckWait = d
	}
	if n, err := strconv.Atoi(os.Getenv(deliverEnv)); err == nil {
		cfg.MaxDeliver = n
	}
	return cfg
}

// testServer is the server of a test: embedded in the test process, or, with
// SUPERVISE_TEST_NATS_SERVER naming a nats-server binary (as CI does with Debian's), that
// program on loopback. Either keeps its store in a directory of the test, so it can restart.
type testServer struct {
	t     *testing.T
	store string
	port  int
	emb   *jetstream.Server
	cmd   *exec.Cmd
}

func startServer(t *testing.T) *testServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := &testServer{t: t, store: t.TempDir(), port: port}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *testServer) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", s.port) }

func (s *testServer) start() {
	s.t.Helper()
	if bin := os.Getenv("SUPERVISE_TEST_NATS_SERVER"); bin != "" {
		s.cmd = exec.Command(bin, "-js", "-sd", s.store, "-a", "127.0.0.1", "-p", strconv.Itoa(s.port))
		s.cmd.Stderr = os.Stderr
		if err := s.cmd.Start(); err != nil {
			s.t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.port)); err == nil {
				c.Close()
				return
			}
			if time.Now().After(deadline) {
				s.t.Fatalf("%s did not listen on port %d within 10s", bin, s.port)
			}
			time.Sleep(20 * time.Millisecond) // polling a port: nothing to wait on
		}
	}
	emb, err := jetstream.StartServer(jetstream.ServerConfig{StoreDir: s.store, Listen: fmt.Sprintf("127.0.0.1:%d", s.port)})
	if err != nil {
		s.t.Fatal(err)
	}
	s.emb = emb
}

func (s *testServer) stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Signal(syscall.SIGTERM)
		s.cmd.Wait()
		s.cmd = nil
	}
	if s.emb != nil {
		s.emb.Shutdown()
		s.emb = nil
	}
}

func (s *testServer) restart() {
	s.t.Helper()
	s.stop()
	s.start()
}

func connect(t *testing.T, s *testServer) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(s.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond), nats.Timeout(connectTimeout))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func newClient(t *testing.T, s *testServer, cfg jetstream.Config) *jetstream.Client {
	t.Helper()
	c, err := jetstream.NewClient(context.Background(), connect(t, s), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// machine is a worker machine process of a test.
type machine struct {
	cmd    *exec.Cmd
	marker string
	out    *bufio.Reader // its stdout: "ready", then "stopping" once SIGTERM reached it
}

// startMachines starts n machine processes on s, each with its two worker processes, and
// checks at the end of the test that none of their processes is left.
func startMachines(t *testing.T, s *testServer, n int, env ...string) []*machine {
	t.Helper()
	var ms []*machine
	for i := range n {
		marker := fmt.Sprintf("machine-%s-%d-%d", strings.ReplaceAll(t.Name(), "/", "-"), i, time.Now().UnixNano())
		cmd := exec.Command(os.Args[0], "machine", marker)
		cmd.Env = append(append(os.Environ(), machineEnv+"="+s.URL()), env...)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		m := &machine{cmd: cmd, marker: marker, out: bufio.NewReader(out)}
		t.Cleanup(func() {
			m.cmd.Process.Signal(syscall.SIGTERM)
			m.cmd.Wait()
			proctest.AwaitNoProcessWithArg(t, 10*time.Second, marker)
		})
		if line, _ := m.out.ReadString('\n'); line != "ready\n" {
			t.Fatalf("machine %d: first line %q, want ready", i, line)
		}
		ms = append(ms, m)
	}
	return ms
}

// logCounts reads a nap log: how many times each task started.
func logCounts(t *testing.T, path string) map[int]int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	counts := map[int]int{}
	for _, f := range strings.Fields(string(b)) {
		n, _ := strconv.Atoi(f)
		counts[n]++
	}
	return counts
}

func napLog(t *testing.T) string { return filepath.Join(t.TempDir(), "starts.log") }
