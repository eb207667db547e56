package jetstream_test

import (
	"context"
	"fmt"
	"os"
	"slices"

	"github.com/supervise-dev/supervise/supervisor"
	"github.com/supervise-dev/supervise/supervisor/jetstream"
)

// A joinable queue whose items go through JetStream: here a server inside this process (no
// port) and this machine as the one worker machine; with nats.Connect(url) instead, the same
// code submits to every machine that runs supervise worker --connect url.
func ExampleNewClient() {
	ctx := context.Background()
	srv, err := jetstream.StartServer(jetstream.ServerConfig{}) // in memory, no port
	if err != nil {
		panic(err)
	}
	defer srv.Shutdown()
	nc, err := srv.Connect()
	if err != nil {
		panic(err)
	}
	defer nc.Close()

	// A worker machine: a local pool pulling the queue's tasks until stop.
	pool, err := supervisor.Start(ctx, supervisor.Config{Workers: 2, Command: []string{os.Args[0]}})
	if err != nil {
		panic(err)
	}
	defer pool.Close()
	serving, stop := context.WithCancel(ctx)
	served := make(chan error)
	go func() { served <- jetstream.Serve(serving, nc, pool, jetstream.ServeConfig{}) }()

	// The submitter: a queue like a pool's, whose items go to the machines.
	client, err := jetstream.NewClient(ctx, nc, jetstream.Config{})
	if err != nil {
		panic(err)
	}
	defer client.Close()
	q := supervisor.NewQueueOn[string, string](client, "echo", supervisor.QueueConfig{})
	for _, word := range []string{"one", "two", "three"} {
		q.Put(ctx, word)
	}
	q.Close()
	var got []string
	for r := range q.Results(ctx) {
		got = append(got, fmt.Sprintf("%d:%s", r.Index, r.Value))
	}
	slices.Sort(got)
	fmt.Println(got)
	stop()
	fmt.Println(<-served)
	// Output:
	// [0:one 1:two 2:three]
	// <nil>
}
