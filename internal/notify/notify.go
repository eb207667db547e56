// Package notify runs a callback once when something is done, whether the callback is set
// before or after: the way a future tells its owner it is done without a goroutine that waits
// on its channel.
package notify

import "sync/atomic"

// Once holds one callback and runs it once, after both Set and Fire were called (in either
// order, from any goroutines). The zero value is ready.
type Once struct {
	fn    atomic.Pointer[func()]
	fired atomic.Bool // Fire was called
	ran   atomic.Bool // fn ran
}

// Set sets the callback. Set it once.
func (o *Once) Set(fn func()) {
	o.fn.Store(&fn)
	if o.fired.Load() { // done already: Fire may have found no callback
		o.run()
	}
}

// Fire says it is done: the callback runs, now if it is set, or when it is.
func (o *Once) Fire() {
	o.fired.Store(true)
	o.run()
}

func (o *Once) run() {
	if fn := o.fn.Load(); fn != nil && o.ran.CompareAndSwap(false, true) {
		(*fn)()
	}
}
