// Command echo measures round trips through a supervise pool, in the format of
// ../shared/bench/py_pool_echo.py so that bench/echo.sh can print them side by side: each task
// sends PAYLOAD bytes to a worker, which returns them. CHUNK is Func.WithChunk's: 0 (the
// default) sizes chunks of consecutive tasks automatically, 1 sends one call message per task.
// MODE is map (MapUnordered, the default) or queue (a Queue with QueueConfig.Chunk = CHUNK:
// one goroutine puts every task, another takes the results).
//
//	go run ./bench/echo TASKS PAYLOAD_BYTES [WORKERS [CHUNK [MODE]]]
//
// With ECHO_CPUPROFILE=FILE it writes the parent's CPU profile (go tool pprof) there.
package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"log"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"time"

	"github.com/supervise-dev/supervise/child"
	"github.com/supervise-dev/supervise/supervisor"
)

func main() {
	child.Handle("echo", func(_ context.Context, b []byte) ([]byte, error) { return b, nil })
	child.Main()

	if len(os.Args) < 3 {
		log.Fatal("usage: echo TASKS PAYLOAD_BYTES [WORKERS [CHUNK [map|queue]]]")
	}
	n, _ := strconv.Atoi(os.Args[1])
	size, _ := strconv.Atoi(os.Args[2])
	workers := runtime.NumCPU()
	if len(os.Args) > 3 {
		workers, _ = strconv.Atoi(os.Args[3])
	}
	chunk := 0
	if len(os.Args) > 4 {
		chunk, _ = strconv.Atoi(os.Args[4])
	}
	mode := "map"
	if len(os.Args) > 5 {
		mode = os.Args[5]
	}
	// Distinct inputs, as the Python peer uses.
	pool := make([]byte, size+n)
	rand.Read(pool)

	ctx := context.Background()
	p, err := supervisor.Start(ctx, supervisor.Config{Workers: workers})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	echo := supervisor.Bind[[]byte, []byte](p, "echo").WithChunk(chunk)
	if _, err := echo.Call(ctx, nil); err != nil { // warm up, as the peer does
		log.Fatal(err)
	}
	inputs := func(yield func([]byte) bool) {
		for i := range n {
			if !yield(pool[i : i+size]) {
				return
			}
		}
	}
	if path := os.Getenv("ECHO_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	start := time.Now()
	results := echo.MapUnordered(ctx, inputs)
	if mode == "queue" {
		q := supervisor.NewQueue[[]byte, []byte](p, "echo", supervisor.QueueConfig{Chunk: chunk})
		go func() {
			for in := range inputs {
				if err := q.Put(ctx, in); err != nil {
					log.Fatal(err)
				}
			}
			q.Close()
		}()
		results = q.Results(ctx)
	}
	done := 0
	for r := range results {
		if r.Err != nil || len(r.Value) != size {
			log.Fatalf("task %d: %v", r.Index, r.Err)
		}
		done++
	}
	if done != n {
		log.Fatalf("%d of %d tasks ended", done, n)
	}
	dt := time.Since(start).Seconds()
	fmt.Printf("supervise mode=%s tasks=%d payload=%d workers=%d chunk=%d tasks/s=%.0f MiB/s=%.1f\n", mode, n, size, workers, chunk, float64(n)/dt, float64(n*size)/dt/(1<<20))
}
