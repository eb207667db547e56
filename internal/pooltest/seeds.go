package pooltest

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"
)

// Seeds runs a randomized test: run(t, seed) for seed after seed, as subtests, until budget
// is spent (short with -short; SUPERVISE_MODEL_TIME sets it, e.g. 30m by hand), at least once.
// SUPERVISE_MODEL_SEED=N runs that seed alone. A failure names its seed, and how to replay it
// (replay: the go test command, which gets the seed prepended as SUPERVISE_MODEL_SEED=N).
func Seeds(t *testing.T, budget, short time.Duration, replay string, run func(t *testing.T, seed uint64)) {
	if s := os.Getenv("SUPERVISE_MODEL_SEED"); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		run(t, seed)
		return
	}
	if testing.Short() {
		budget = short
	}
	if s := os.Getenv("SUPERVISE_MODEL_TIME"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatal(err)
		}
		budget = d
	}
	start, runs := time.Now(), 0
	for seed := uint64(time.Now().UnixNano()); runs == 0 || time.Since(start) < budget; seed++ {
		if !t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) { run(t, seed) }) {
			t.Fatalf("seed %d failed: replay it with SUPERVISE_MODEL_SEED=%d %s", seed, seed, replay)
		}
		runs++
	}
	t.Logf("%d runs in %v", runs, time.Since(start).Round(time.Millisecond))
}
