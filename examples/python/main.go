// Command python calls Python handlers (worker.py, written with child/python's
// supervise_worker) from Go, through the same typed API as Go workers: Map, a joinable
// queue whose handler puts follow-up items, and a task's reports. From the repository's root:
//
//	go run ./examples/python
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/supervise-dev/supervise/supervisor"
)

func main() {
	python := flag.String("python", "python3", "the Python interpreter (it needs the msgpack package)")
	script := flag.String("worker", "examples/python/worker.py", "the worker script")
	lib := flag.String("lib", "child/python", "the directory of supervise_worker.py")
	flag.Parse()
	if err := run(*python, *script, *lib); err != nil {
		fmt.Fprintln(os.Stderr, "python example:", err)
		os.Exit(1)
	}
}

func run(python, script, lib string) error {
	lib, err := filepath.Abs(lib)
	if err != nil {
		return err
	}
	ctx := context.Background()
	pool, err := supervisor.Start(ctx, supervisor.Config{
		Workers: 2,
		Command: []string{python, script},
		Env:     []string{"PYTHONPATH=" + lib},
	})
	if err != nil {
		return err
	}
	defer pool.Close()

	// Map: results in input order.
	upper := supervisor.Bind[string, string](pool, "upper")
	for r := range upper.Map(ctx, slices.Values([]string{"hello", "wörld", "from go"})) {
		if r.Err != nil {
			return r.Err
		}
		fmt.Println("upper:", r.Value)
	}

	// A queue: countdown(3) puts 2, which puts 1, ...; Join waits for all of them.
	q := supervisor.NewQueue[int, int](pool, "countdown", supervisor.QueueConfig{})
	done := make(chan []int)
	go func() {
		var got []int
		for r := range q.Results(ctx) {
			if r.Err == nil {
				got = append(got, r.Value)
			}
		}
		done <- got
	}()
	if err := q.Put(ctx, 3); err != nil {
		return err
	}
	if err := q.Join(ctx); err != nil {
		return err
	}
	q.Close()
	got := <-done
	slices.Sort(got)
	fmt.Println("countdown:", got)

	// Reports: a task's progress, in order, before its result.
	f := supervisor.Bind[int, string](pool, "steps").Submit(ctx, 3)
	for r := range f.Reports(ctx) {
		var p struct {
			Done  int `msgpack:"done"`
			Total int `msgpack:"total"`
		}
		if err := r.Decode(&p); err != nil {
			return err
		}
		fmt.Printf("steps: %d/%d\n", p.Done, p.Total)
	}
	res, err := f.Get(ctx)
	if err != nil {
		return err
	}
	fmt.Println("steps:", res)

	// A Python exception is the task's error, with its traceback.
	_, err = supervisor.Bind[string, float64](pool, "slow").Call(ctx, "not a number")
	var re *supervisor.RemoteError
	if errors.As(err, &re) {
		fmt.Printf("slow: %s: %s (with its traceback: %t)\n", re.Type, re.Message, strings.Contains(re.Traceback, "Traceback (most recent call last)"))
	}
	return pool.Close()
}
