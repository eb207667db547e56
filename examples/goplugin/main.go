// Command goplugin runs a plain hashicorp/go-plugin plugin (./plugin, over net/rpc, then over
// gRPC) as the workers of a supervise pool: two plugin processes, each in its own process
// group under a keeper; a call stuck past its time limit kills its plugin (and only that call
// fails); the pool starts another in its place; Stats shows CPU and memory per plugin.
//
//	go build -o /tmp/greeter ./examples/goplugin/plugin
//	go run ./examples/goplugin /tmp/greeter
//
// The plugin's hclog lines come out on stderr as this program's log records.
package main

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"time"

	"github.com/supervise-dev/supervise/child"
	"github.com/supervise-dev/supervise/examples/goplugin/shared"
	"github.com/supervise-dev/supervise/supervisor"
	"github.com/supervise-dev/supervise/supervisor/goplugin"
)

func main() {
	child.Main() // each plugin's keeper is this binary re-executed: it runs here and exits
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: goplugin PLUGIN-BINARY (go build -o /tmp/greeter ./examples/goplugin/plugin)")
		os.Exit(2)
	}
	for _, proto := range []string{"netrpc", "grpc"} {
		if err := run(proto, os.Args[1]); err != nil {
			log.Fatal(err)
		}
	}
}

func run(proto, plugin string) error {
	fmt.Printf("== %s\n", proto)
	ctx := context.Background()
	killed := make(chan supervisor.EventWorkerKilled, 1)
	replaced := make(chan supervisor.EventWorkerStarted, 1)
	var starts int
	pool, err := supervisor.Start(ctx, supervisor.Config{
		Workers:     2,
		Command:     []string{plugin},
		Env:         []string{shared.ProtocolEnv + "=" + proto},
		TaskTimeout: 500 * time.Millisecond, // then the call's context is cancelled,
		CancelGrace: 200 * time.Millisecond, // and this much later its plugin is killed
		StopGrace:   500 * time.Millisecond,
		Plugin:      goplugin.New(goplugin.Config{Handshake: shared.Handshake, Plugins: shared.Plugins}),
		EventHook: func(e supervisor.Event) {
			switch e := e.(type) {
			case supervisor.EventWorkerKilled:
				killed <- e
			case supervisor.EventWorkerStarted:
				if starts++; starts > 2 {
					replaced <- e
				}
			}
		},
		Logger: slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	if err != nil {
		return err
	}
	defer pool.Close()

	for _, w := range pool.Workers() {
		err := goplugin.CallOn(ctx, pool, w.ID, "greeter", func(_ context.Context, g shared.Greeter) error {
			reply, err := g.Greet(fmt.Sprintf("worker %d", w.ID))
			fmt.Println(reply)
			return err
		})
		if err != nil {
			return err
		}
	}

	err = goplugin.Call(ctx, pool, "greeter", func(_ context.Context, g shared.Greeter) error {
		_, err := g.Work(60_000)
		return err
	})
	fmt.Println("stuck call:", err)
	k := <-killed
	fmt.Printf("killed: worker %d (%s)\n", k.WorkerID, k.Reason)
	s := <-replaced
	fmt.Printf("restarted: worker %d in its place\n", s.WorkerID)

	err = goplugin.CallOn(ctx, pool, s.WorkerID, "greeter", func(_ context.Context, g shared.Greeter) error {
		reply, err := g.Greet("the new worker")
		fmt.Println(reply)
		return err
	})
	if err != nil {
		return err
	}
	for _, w := range pool.Stats().Workers {
		fmt.Printf("slot %d: worker %d, %d processes (keeper and plugin), RSS %.1f MiB, %d calls, %d failed\n",
			w.Slot, w.ID, w.Processes, float64(w.RSS)/(1<<20), w.Tasks, w.Failed)
	}
	return pool.Close()
}
