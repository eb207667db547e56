// Command producer-consumer is the joinable-queue pattern: a producer puts range(100) on a
// queue, worker processes consume it (the pool's workers are the daemon consumers), and the
// producer joins the queue: Join returns once every item is done.
//
//	go run ./examples/producer-consumer
package main

import (
	"context"
	"fmt"
	"log"

	"github.com/supervise-dev/supervise/child"
	"github.com/supervise-dev/supervise/supervisor"
)

func main() {
	child.Handle("consume", func(_ context.Context, item int) (int, error) { return item * item, nil })
	child.Main() // a consumer serves here and exits

	ctx := context.Background()
	pool, err := supervisor.Start(ctx, supervisor.Config{Workers: 4})
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	q := supervisor.NewQueue[int, int](pool, "consume", supervisor.QueueConfig{Capacity: 10})

	results := make(chan int)
	go func() { // collect outcomes as they come
		sum, n := 0, 0
		for r := range q.Results(ctx) {
			if r.Err != nil {
				log.Fatal(r.Err)
			}
			sum, n = sum+r.Value, n+1
		}
		results <- n
		results <- sum
	}()
	for i := range 100 { // blocks while 10 items are outstanding: backpressure
		if err := q.Put(ctx, i); err != nil {
			log.Fatal(err)
		}
	}
	if err := q.Join(ctx); err != nil {
		log.Fatal(err)
	}
	q.Close()
	fmt.Printf("joined: %d items consumed, sum of squares %d\n", <-results, <-results)
}
