// Command sum-lists times a CPU-bound job, summing large lists of numbers, done serially in
// this process and then by a pool of worker processes, and prints the speedup and how busy
// each core and each worker was while the pool ran.
//
//	go run ./examples/sum-lists [-lists 128] [-n 4000000] [-workers 0]
//
// Each task is a list's seed: the worker builds the list and sums it, so the job is bound by
// CPU, not by moving lists through pipes.
package main

import (
	"context"
	"flag"
	"fmt"
	"iter"
	"log"
	"slices"
	"time"

	"github.com/supervise-dev/supervise/child"
	"github.com/supervise-dev/supervise/supervisor"
)

// List is one task: the list of N numbers that Seed gives.
type List struct {
	Seed uint64
	N    int
}

// buf holds the list being summed; reused, so that the job is the sum, not page faults.
var buf []uint64

// sum builds the list and sums it.
func sum(_ context.Context, l List) (uint64, error) {
	if cap(buf) < l.N {
		buf = make([]uint64, l.N)
	}
	numbers := buf[:l.N]
	x := l.Seed*2654435761 + 1
	for i := range numbers { // xorshift64: the same list for the same seed, everywhere
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		numbers[i] = x >> 40
	}
	var s uint64
	for _, n := range numbers {
		s += n
	}
	return s, nil
}

func main() {
	child.Handle("sum", sum)
	child.Main() // a worker serves here and exits

	lists := flag.Int("lists", 128, "lists to sum")
	n := flag.Int("n", 4_000_000, "numbers in each list")
	workers := flag.Int("workers", 0, "worker processes (0: one per core)")
	flag.Parse()
	ctx := context.Background()
	var jobs []List
	for i := range *lists {
		jobs = append(jobs, List{Seed: uint64(i), N: *n})
	}

	t0 := time.Now()
	var serial uint64
	for _, j := range jobs {
		s, _ := sum(ctx, j)
		serial += s
	}
	serialTook := time.Since(t0)

	pool, err := supervisor.Start(ctx, supervisor.Config{Workers: *workers, StatsInterval: 50 * time.Millisecond})
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	watching, stop := context.WithCancel(ctx)
	busy := make(chan []float64)
	go func() { busy <- meanBusy(pool.WatchStats(watching)) }()
	t0 = time.Now()
	var pooled uint64
	for r := range supervisor.Bind[List, uint64](pool, "sum").MapUnordered(ctx, slices.Values(jobs)) {
		if r.Err != nil {
			log.Fatal(r.Err)
		}
		pooled += r.Value
	}
	poolTook := time.Since(t0)
	stop()
	cores := <-busy
	if err := pool.Close(); err != nil {
		log.Fatal(err)
	}
	st := pool.Stats() // once closed: every worker's figures are final

	if pooled != serial {
		log.Fatalf("the pool's sum %d differs from the serial sum %d", pooled, serial)
	}
	fmt.Printf("%d lists of %d numbers: sum %d\n", *lists, *n, serial)
	fmt.Printf("serial: %v\n", serialTook.Round(time.Millisecond))
	fmt.Printf("pool:   %v with %d workers: speedup %.2fx\n", poolTook.Round(time.Millisecond), len(st.Workers), serialTook.Seconds()/poolTook.Seconds())
	for i, b := range cores {
		fmt.Printf("core %d: %3.0f%% busy while the pool ran\n", i, 100*b)
	}
	if cores == nil {
		fmt.Println("cores: the pool ran for less than a sampling interval (50ms); sum more lists")
	}
	for _, w := range st.Workers {
		fmt.Printf("worker %d: %d lists, %.2fs CPU\n", w.Slot, w.Tasks, w.CPU.Seconds())
	}
}

// meanBusy averages each core's busy share over the snapshots, weighted by their intervals.
func meanBusy(snapshots iter.Seq[supervisor.Stats]) []float64 {
	var busy []float64
	var total time.Duration
	for st := range snapshots {
		if busy == nil {
			busy = make([]float64, len(st.Cores))
		}
		for i, c := range st.Cores {
			busy[i] += c.Busy() * st.Interval.Seconds()
		}
		total += st.Interval
	}
	for i := range busy {
		busy[i] /= total.Seconds()
	}
	return busy // nil if no snapshot came
}
