// Command misbehave is a worker with handlers that go wrong in every way a worker process can,
// and a demo of what the pool does about each: one task of every kind of fault runs beside
// ordinary tasks, and the pool kills, reports and replaces.
//
//	go run ./examples/misbehave
//
// The faults (see faults.go): crash, spin (a busy loop deaf to cancels), sleep (asleep, deaf to
// cancels), freeze (SIGSTOP: no heartbeat), eat (memory), garbage (bytes that are not a frame on
// the frame stream), oversize (a frame over the limit), exit0 (exits early with status 0),
// grandchildren (children that ignore SIGTERM, then hangs). The tests in this directory are
// the pool's fault matrix.
//
// With -hold it starts a pool whose two workers each run a "grandchildren" task, prints
// "worker PID" for each, and waits to be killed: the test of what happens when the parent is
// SIGKILLed.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/supervise-dev/supervise/child"
	"github.com/supervise-dev/supervise/supervisor"
)

// Config is the pool the demo runs: limits short enough to watch. A frozen worker is found
// hung (HangTimeout) before its call's time limit (TaskTimeout + CancelGrace) runs out.
func Config() supervisor.Config {
	return supervisor.Config{
		Workers:         3,
		InFlight:        1,
		TaskTimeout:     time.Second,
		CancelGrace:     500 * time.Millisecond,
		Heartbeat:       100 * time.Millisecond,
		HangTimeout:     time.Second,
		StopGrace:       300 * time.Millisecond,
		MemoryHardLimit: 256 << 20,
		MemoryInterval:  50 * time.Millisecond,
		MaxFrame:        1 << 20,
	}
}

func main() {
	child.Main() // a worker serves the handlers of faults.go here, and exits
	hold := flag.Bool("hold", false, "start two workers running grandchildren, print their pids, and wait to be killed")
	flag.Parse()
	if *hold {
		holdForKill()
		return
	}
	if err := demo(); err != nil {
		log.Fatal(err)
	}
}

func demo() error {
	cfg := Config()
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError + 4})) // events are printed below
	counts := map[string]int{}                                                                              // events by type; the hook is called one event at a time
	cfg.EventHook = func(e supervisor.Event) { counts[strings.TrimPrefix(fmt.Sprintf("%T", e), "supervisor.")]++ }
	ctx := context.Background()
	pool, err := supervisor.Start(ctx, cfg)
	if err != nil {
		return err
	}
	call := supervisor.Bind[Fault, int](pool, "misbehave")
	for _, kind := range append([]string{"panic"}, Kinds...) {
		start := time.Now()
		fault := call.Submit(ctx, Fault{Kind: kind, MiB: 1024})
		var fine []*supervisor.Future[int]
		for i := range 20 {
			fine = append(fine, call.Submit(ctx, Fault{Kind: "ok", N: i}))
		}
		_, err := fault.Get(ctx)
		ok := 0
		for _, f := range fine {
			if _, err := f.Get(ctx); err == nil {
				ok++
			}
		}
		fmt.Printf("%-13s after %4dms: %s\n%13s  the 20 tasks beside it: %d ok\n", kind, time.Since(start).Milliseconds(), firstLine(err), "", ok)
	}
	alive := len(pool.Workers())
	if err := pool.Close(); err != nil { // returns once every worker is reaped
		return err
	}
	fmt.Printf("\nworkers alive at the end: %d; events: %v\n", alive, counts)
	return nil
}

// firstLine is an error's first line (a worker's error goes on with its stderr tail).
func firstLine(err error) string {
	if err == nil {
		return "no error"
	}
	var te *supervisor.TimeoutError
	kind := "error"
	switch {
	case errors.As(err, &te):
		kind = "ErrTimeout"
	case errors.Is(err, supervisor.ErrHung):
		kind = "ErrHung"
	case errors.Is(err, supervisor.ErrMemoryLimit):
		kind = "ErrMemoryLimit"
	case errors.Is(err, supervisor.ErrWorkerDied):
		kind = "ErrWorkerDied"
	}
	line, _, _ := strings.Cut(err.Error(), "\n")
	return kind + ": " + line
}

// holdForKill is the parent the no-orphans test SIGKILLs.
func holdForKill() {
	cfg := Config()
	cfg.Workers, cfg.TaskTimeout = 2, 0
	pool, err := supervisor.Start(context.Background(), cfg)
	if err != nil {
		log.Fatal(err)
	}
	call := supervisor.Bind[Fault, int](pool, "misbehave")
	for range 2 {
		call.Submit(context.Background(), Fault{Kind: "grandchildren"})
	}
	for _, w := range pool.Workers() {
		fmt.Println("worker", w.Pid)
	}
	select {}
}
