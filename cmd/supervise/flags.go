package main

import (
	"fmt"
	"time"

	"github.com/supervise-dev/supervise/supervisor"
)

// check refuses pool flags out of range before anything starts: a negative count made a
// channel of negative size (a panic), --workers 0 a job that waited forever, and a negative
// duration a limit that fired at once.
func (pf *poolFlags) check() error {
	if pf.workers < 1 {
		return fmt.Errorf("--workers %d: at least 1", pf.workers)
	}
	if most := supervisor.MaxWorkers(); pf.workers > most {
		return fmt.Errorf("--workers %d: at most %d worker processes fit in this process's limit of open files (ulimit -n)", pf.workers, most)
	}
	if pf.inFlight < 1 {
		return fmt.Errorf("--in-flight %d: at least 1", pf.inFlight)
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
		zero bool // 0 is allowed (none, never)
	}{
		{"--timeout", pf.timeout, true},
		{"--hang-timeout", pf.hang, true},
		{"--cancel-grace", pf.cancelGrace, false},
		{"--stop-grace", pf.stopGrace, false},
		{"--start-timeout", pf.startTimeout, false},
	} {
		if d.v < 0 || (d.v == 0 && !d.zero) {
			want := "above 0"
			if d.zero {
				want = "0 (none) or more"
			}
			return fmt.Errorf("%s %v: %s", d.flag, d.v, want)
		}
	}
	for _, n := range []struct {
		flag string
		v    int
	}{{"--max-tasks-per-worker", pf.maxTasks}, {"--retries", pf.retries}} {
		if n.v < 0 {
			return fmt.Errorf("%s %d: 0 or more", n.flag, n.v)
		}
	}
	return nil
}
