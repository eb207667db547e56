package supervisor

import (
	"context"
	"sync"
	"time"
)

// Held is the number of calls the pool's workers hold (sent, not answered): a test waits on
// it to know its calls reached the worker, not the backlog.
func Held(p *Pool) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for w := range p.workers {
		w.mu.Lock()
		n += w.ledger.len()
		w.mu.Unlock()
	}
	return n
}

// FakeClock is a clock a test moves by hand (Advance): the pool's workers read the time from
// it and get their watchdog's ticks from it, so time limits are tested exactly, whatever the
// load on the machine.
type FakeClock struct {
	mu      sync.Mutex
	t       time.Time
	waiters []*fakeWaiter
}

type fakeWaiter struct {
	at      time.Time
	every   time.Duration // 0: a timer
	c       chan time.Time
	stopped bool
}

func NewFakeClock() *FakeClock { return &FakeClock{t: time.Unix(1_000_000, 0)} }

// Now is the clock's time.
func (c *FakeClock) Now() time.Time { return c.now() }

// Advance moves the clock on by d: every ticker and timer due by then fires once, with the
// new time (a tick not yet taken is replaced, as a real ticker drops ticks).
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	for _, w := range c.waiters {
		if w.stopped || w.at.After(c.t) {
			continue
		}
		select {
		case <-w.c:
		default:
		}
		w.c <- c.t
		if w.every == 0 {
			w.stopped = true
			continue
		}
		for !w.at.After(c.t) {
			w.at = w.at.Add(w.every)
		}
	}
}

func (c *FakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *FakeClock) add(d, every time.Duration) *fakeWaiter {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := &fakeWaiter{at: c.t.Add(d), every: every, c: make(chan time.Time, 1)}
	c.waiters = append(c.waiters, w)
	return w
}

func (c *FakeClock) stop(w *fakeWaiter) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	was := !w.stopped
	w.stopped = true
	return was
}

func (c *FakeClock) ticker(d time.Duration) (<-chan time.Time, func()) {
	w := c.add(d, d)
	return w.c, func() { c.stop(w) }
}

func (c *FakeClock) timer(d time.Duration) (<-chan time.Time, func() bool) {
	w := c.add(d, 0)
	return w.c, func() bool { return c.stop(w) }
}

// StartOnClock starts a pool whose workers run on clock c. Each look of a worker's watchdog
// is then sent to the channel returned (the time it looked at), so a test knows when the
// watchdog has seen a time it moved to; the test must keep receiving.
func StartOnClock(ctx context.Context, cfg Config, c *FakeClock) (*Pool, <-chan time.Time, error) {
	looks := make(chan time.Time, 16)
	p, err := start(ctx, cfg, c, func(_ int, now time.Time) {
		select {
		case looks <- now:
		default: // the test stopped looking
		}
	})
	return p, looks, err
}

// CgroupDir is the pool's cgroup directory, "" if it has none.
func CgroupDir(p *Pool) string {
	if p.containment.cg == nil {
		return ""
	}
	return p.containment.cg.Dir()
}

// Race-built test binaries took over 10 s to say hello on a 2-core machine loaded far past
// its cores (the race suite beside stress --cpu 8, load 12): TestHostileDeepHello failed
// with "no hello within 10s". Tests that test the timeout set their own.
func init() { defaultStartTimeout = time.Minute } // as pooltest.StartTimeout
