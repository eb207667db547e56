package supervisor_test

import (
	"context"
	"testing"

	"github.com/supervise-dev/supervise/supervisor"
)

// OnDone tells of each future once, whether it is set before the outcome or after.
func TestFutureOnDone(t *testing.T) {
	p, _ := startPool(t, supervisor.Config{Workers: 2})
	ctx := context.Background()
	const n = 200
	done := make(chan int, n)
	square := supervisor.Bind[int, int](p, "square")
	for i := range n {
		f := square.Submit(ctx, i)
		if i%2 == 1 {
			f.Get(ctx) // done before OnDone is set
		}
		f.OnDone(func() { done <- i })
	}
	seen := map[int]bool{}
	for range n {
		i := <-done
		if seen[i] {
			t.Fatalf("future %d told of twice", i)
		}
		seen[i] = true
	}
}
