package jetstream_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/supervise-dev/supervise/internal/pooltest"
	"github.com/supervise-dev/supervise/supervisor"
	"github.com/supervise-dev/supervise/supervisor/jetstream"
)

// A machine publishes its pool's Stats; an observer of a server with roles sees them, with
// the machine's workers as its pool has them, and sees it gone once it stops. What others
// publish on the subject (garbage, a body too big, a body that claims another queue) changes
// nothing it should not.
func TestMachinesPublishStats(t *testing.T) {
	sub, mach := newRole(t), newRole(t)
	cfg := testConfig()
	srv, err := jetstream.StartServer(jetstream.ServerConfig{Listen: "127.0.0.1:0", StoreDir: t.TempDir(),
		Roles: jetstream.Roles{Queues: []string{cfg.Queue}, Submitters: []string{sub.pub}, Machines: []string{mach.pub}}})
	must(t, err)
	defer srv.Shutdown()
	obs, err := srv.ConnectObserver()
	must(t, err)
	defer obs.Close()
	ctx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	machines, err := jetstream.WatchMachines(ctx, obs, "")
	must(t, err)

	mnc := mach.connect(t, srv.URL())
	pool, err := supervisor.Start(context.Background(), supervisor.Config{Workers: 2, Command: []string{os.Args[0], "worker-of", "stats"},
		StartTimeout: pooltest.StartTimeout, StatsInterval: 50 * time.Millisecond})
	must(t, err)
	defer pool.Close()
	serveCtx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- jetstream.Serve(serveCtx, mnc, pool, jetstream.ServeConfig{Config: cfg, StatsInterval: 50 * time.Millisecond})
	}()

	// Hostile publishers, as the machine role allows: none of this may show.
	hostile := mach.connect(t, srv.URL())
	subject := "supervise." + cfg.Queue + ".stats."
	must(t, hostile.Publish(subject+"garbage", []byte("not json {")))
	must(t, hostile.Publish(subject+"big", append([]byte(`{"machine":"`), bytes.Repeat([]byte("x"), 2<<20)...)))
	must(t, hostile.Publish(subject+"liar", []byte(`{"machine":"liar","queue":"other","stats":{}}`)))
	must(t, hostile.Flush())

	var pids []int
	for _, w := range pool.Workers() {
		pids = append(pids, w.Pid)
	}
	slices.Sort(pids)
	var mine jetstream.MachineStats
	waitFor(t, 30*time.Second, "the machine's stats", func() bool {
		for _, m := range machines.List() {
			if m.Machine != "liar" && !m.Gone {
				mine = m
				return len(m.Stats.Workers) == 2 && m.Stats.Workers[0].Pid != 0 && m.Stats.Workers[1].Pid != 0
			}
		}
		return false
	})
	got := []int{mine.Stats.Workers[0].Pid, mine.Stats.Workers[1].Pid}
	slices.Sort(got)
	if !slices.Equal(got, pids) || mine.Queue != cfg.Queue || mine.Queued < 0 || mine.DeadLetters < 0 || len(mine.Stats.Cores) == 0 {
		t.Errorf("the machine's stats: workers %v (want %v), queue %q, queued %d, dead letters %d, %d cores",
			got, pids, mine.Queue, mine.Queued, mine.DeadLetters, len(mine.Stats.Cores))
	}
	for _, m := range machines.List() {
		if m.Machine == "liar" && m.Queue != cfg.Queue {
			t.Errorf("a body claiming queue %q was taken at its word", m.Queue)
		}
		if m.Machine != "liar" && m.Machine != mine.Machine {
			t.Errorf("a machine that is not: %+v", m)
		}
	}

	stop()
	must(t, <-served)
	waitFor(t, 30*time.Second, "the machine gone", func() bool {
		return slices.ContainsFunc(machines.List(), func(m jetstream.MachineStats) bool { return m.Machine == mine.Machine && m.Gone })
	})
	// The observer may watch, and nothing else.
	if _, err := obs.Request("$JS.API.INFO", nil, 2*time.Second); err == nil {
		t.Error("the observer could use the JetStream API")
	}
}

// waitFor polls cond every 20 ms until it holds, failing the test after limit (a margin for
// a loaded machine: stats come every 50 ms here).
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(limit); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v", what, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A machine served without a Logger logs where its pool logs (Config.Logger), not to
// slog.Default(): here, handing back a task whose worker died.
func TestServeLogsThroughThePoolsLogger(t *testing.T) {
	s := startServer(t)
	cfg := testConfig()
	var logs bytes.Buffer
	var mu sync.Mutex
	pool, err := supervisor.Start(context.Background(), supervisor.Config{Workers: 1, Command: []string{os.Args[0], "worker-of", "logger"},
		StartTimeout: pooltest.StartTimeout, Logger: slog.New(slog.NewTextHandler(lockedWriter{&logs, &mu}, nil))})
	must(t, err)
	defer pool.Close()
	serveCtx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- jetstream.Serve(serveCtx, connect(t, s), pool, jetstream.ServeConfig{Config: cfg}) }()
	defer func() { stop(); <-served }()
	c := newClient(t, s, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := jetstream.Submit[modelInput, int](ctx, c, "model", modelInput{N: 1, Act: "crash", Log: napLog(t)}).Get(ctx); !errors.Is(err, supervisor.ErrWorkerDied) {
		t.Fatalf("the crashing task: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), "handing back a task whose worker died") {
		t.Errorf("the pool's log has nothing of the machine's:\n%s", logs.String())
	}
}

// lockedWriter serializes writes to w.
type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
