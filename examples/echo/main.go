// Command echo is the classic pickle-channel demo over msgpack: the parent sends a few values
// of different types to a worker process, which answers ["child", item] for each.
//
//	go run ./examples/echo
//
// The program is its own worker: child.Main serves the "echo" handler when the pool starts
// this binary, and returns at once when a person does.
package main

import (
	"context"
	"fmt"
	"log"

	"github.com/supervise-dev/supervise/child"
	"github.com/supervise-dev/supervise/supervisor"
)

func main() {
	child.Handle("echo", func(ctx context.Context, item any) ([]any, error) {
		return []any{"child", item}, nil
	})
	child.Main()

	ctx := context.Background()
	pool, err := supervisor.Start(ctx, supervisor.Config{Workers: 1})
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	echo := supervisor.Bind[any, []any](pool, "echo")
	items := []any{"Hello World", 42, []int{1, 2, 3, 4}, map[string]any{"host": "python.org", "port": 80}}
	for _, item := range items {
		reply, err := echo.Call(ctx, item)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(reply...)
	}
	if err := pool.Close(); err != nil {
		log.Fatal(err)
	}
}
