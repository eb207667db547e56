package notify

import (
	"sync"
	"sync/atomic"
	"testing"
)

// Set and Fire from two goroutines, in either order: the callback runs exactly once.
func TestOnceRunsOnce(t *testing.T) {
	for range 10000 {
		var o Once
		var runs atomic.Int32
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); o.Set(func() { runs.Add(1) }) }()
		go func() { defer wg.Done(); o.Fire() }()
		wg.Wait()
		if n := runs.Load(); n != 1 {
			t.Fatalf("the callback ran %d times", n)
		}
	}
}

func TestOnceWaitsForBoth(t *testing.T) {
	var o Once
	ran := false
	o.Set(func() { ran = true })
	if ran {
		t.Fatal("ran before Fire")
	}
	o.Fire()
	o.Fire()
	if !ran {
		t.Fatal("did not run after Fire")
	}
	var p Once
	p.Fire()
	p.Set(func() { ran = false })
	if ran {
		t.Fatal("Set after Fire did not run it")
	}
}
