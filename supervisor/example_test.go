package supervisor_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"

	"github.com/supervise-dev/supervise/supervisor"
)

// A pool of two worker processes squares numbers. The test binary is its own worker: its
// TestMain registers the "square" handler with child.Handle and calls child.Main, exactly as a
// program's main does.
func Example() {
	ctx := context.Background()
	pool, err := supervisor.Start(ctx, supervisor.Config{Workers: 2})
	if err != nil {
		panic(err)
	}
	defer pool.Close()

	square := supervisor.Bind[int, int](pool, "square")
	for r := range square.Map(ctx, slices.Values([]int{1, 2, 3, 4})) {
		fmt.Println(r.Value, r.Err)
	}
	// Output:
	// 1 <nil>
	// 4 <nil>
	// 9 <nil>
	// 16 <nil>
}

func ExampleFunc_Submit() {
	ctx := context.Background()
	pool, err := supervisor.Start(ctx, supervisor.Config{Workers: 1})
	if err != nil {
		panic(err)
	}
	defer pool.Close()

	future := supervisor.Bind[int, int](pool, "square").Submit(ctx, 12)
	v, err := future.Get(ctx)
	fmt.Println(v, err)
	// Output: 144 <nil>
}

// Errors returned by a handler come back as a *TaskError wrapping a *RemoteError.
func ExampleTaskError() {
	ctx := context.Background()
	pool, err := supervisor.Start(ctx, supervisor.Config{Workers: 1})
	if err != nil {
		panic(err)
	}
	defer pool.Close()

	_, err = supervisor.Bind[string, int](pool, "fail").Call(ctx, "disk full")
	var remote *supervisor.RemoteError
	if errors.As(err, &remote) {
		fmt.Println(remote.Type, remote.Message)
	}
	// Output: error disk full
}

// A joinable queue: put items, join, then read every outcome once. Handlers can put follow-up
// items with child.Put; Join waits for those too.
func ExampleQueue() {
	ctx := context.Background()
	pool, err := supervisor.Start(ctx, supervisor.Config{Workers: 2})
	if err != nil {
		panic(err)
	}
	defer pool.Close()

	q := supervisor.NewQueue[int, int](pool, "square", supervisor.QueueConfig{Capacity: 4})
	for i := 1; i <= 10; i++ {
		q.Put(ctx, i) // blocks while 4 items are outstanding
	}
	q.Join(ctx)
	q.Close()
	sum := 0
	for r := range q.Results(ctx) {
		sum += r.Value
	}
	fmt.Println(sum)
	// Output: 385
}

// A queue whose items go many to a call while the workers are busy: with Chunk 64, up to 64
// items a call. Here each item of depth d puts two of depth d-1 (child.Put in the "tree"
// handler); each still has its own outcome, and its follow-ups are charged to it.
func ExampleQueueConfig() {
	ctx := context.Background()
	pool, err := supervisor.Start(ctx, supervisor.Config{Workers: 2})
	if err != nil {
		panic(err)
	}
	defer pool.Close()

	q := supervisor.NewQueue[int, int](pool, "tree", supervisor.QueueConfig{Chunk: 64})
	q.Put(ctx, 6)
	q.Join(ctx)
	q.Close()
	items, failed := 0, 0
	for r := range q.Results(ctx) {
		items++
		if r.Err != nil {
			failed++
		}
	}
	fmt.Println(items, failed)
	// Output: 127 0
}

// Stats after a job: per worker slot, what it did; per core, how busy it was. Once the pool is
// closed the figures are final.
func ExamplePool_Stats() {
	ctx := context.Background()
	pool, err := supervisor.Start(ctx, supervisor.Config{Workers: 2})
	if err != nil {
		panic(err)
	}
	square := supervisor.Bind[int, int](pool, "square")
	for r := range square.Map(ctx, slices.Values([]int{1, 2, 3, 4, 5, 6})) {
		if r.Err != nil {
			panic(r.Err)
		}
	}
	pool.Close()

	st := pool.Stats()
	tasks := 0
	for _, w := range st.Workers {
		tasks += w.Tasks
		fmt.Printf("slot %d: %s, %d restarts\n", w.Slot, w.State, w.Restarts)
	}
	fmt.Printf("%d tasks; a figure for each of the machine's cores: %v\n", tasks, len(st.Cores) == runtime.NumCPU())
	// Output:
	// slot 0: down, 0 restarts
	// slot 1: down, 0 restarts
	// 6 tasks; a figure for each of the machine's cores: true
}
