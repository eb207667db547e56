package supervisor

import "time"

// clock is where the pool's workers read the time and get their watchdog's ticks (suture's
// getNow and getAfterChan): the real clock in use, a fake one in tests, so that time limits
// are tested exactly and fast (watchdog_test.go, export_test.go).
type clock interface {
	now() time.Time
	// ticker delivers the time every d until stop is called.
	ticker(d time.Duration) (ticks <-chan time.Time, stop func())
	// timer delivers the time once, d from now, unless stop is called first.
	timer(d time.Duration) (fire <-chan time.Time, stop func() bool)
}

type realClock struct{}

func (realClock) now() time.Time { return time.Now() }

func (realClock) ticker(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTicker(d)
	return t.C, t.Stop
}

func (realClock) timer(d time.Duration) (<-chan time.Time, func() bool) {
	t := time.NewTimer(d)
	return t.C, t.Stop
}
