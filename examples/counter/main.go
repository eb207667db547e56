// Command counter is the "atomic message queue" pattern: one worker process owns a counter,
// and the only way to change it is a message to that worker. Many goroutines send increments
// at once; the worker runs its calls one at a time, so no update is lost and no lock is needed.
//
//	go run ./examples/counter
package main

import (
	"context"
	"fmt"
	"log"
	"sync"

	"github.com/supervise-dev/supervise/child"
	"github.com/supervise-dev/supervise/supervisor"
)

func main() {
	count := 0 // the state, in the worker process: no other process can touch it
	child.Handle("add", func(_ context.Context, n int) (int, error) { count += n; return count, nil })
	child.Handle("get", func(context.Context, struct{}) (int, error) { return count, nil })
	child.Main()

	ctx := context.Background()
	pool, err := supervisor.Start(ctx, supervisor.Config{Workers: 1}) // one owner
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	add := supervisor.Bind[int, int](pool, "add")

	const senders, each = 16, 500
	var wg sync.WaitGroup
	for range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				if _, err := add.Call(ctx, 1); err != nil {
					log.Fatal(err)
				}
			}
		}()
	}
	wg.Wait()
	total, err := supervisor.Bind[struct{}, int](pool, "get").Call(ctx, struct{}{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d senders x %d increments: counter = %d\n", senders, each, total)
}
