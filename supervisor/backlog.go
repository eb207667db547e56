package supervisor

import "sync"

// backlog is the pool's queue of tasks waiting for a worker. It is unbounded, so Submit never
// blocks (Map and MapUnordered bound what they keep outstanding themselves), and a worker takes
// as many tasks as it has free slots under one lock: that is how calls get batched into frames.
//
// Idle workers come first. A worker with tasks in flight still has free slots (Config.InFlight),
// and if it took a new task while another worker sat idle, two long tasks would run one after
// the other on one worker while the other did nothing. So while a worker has nothing in flight
// (counted from its last answer: waitIdle), new tasks wake it (idleReady) rather than the busy
// ones (ready), and busy workers take nothing; they take what the idle ones leave (take's fair
// share), as before.
type backlog struct {
	mu        sync.Mutex
	items     []*task
	head      int
	closed    bool          // no more pushes; workers stop once it is empty
	failed    error         // set when the pool is broken or shut down: pushes fail with it
	idle      int           // workers waiting with nothing in flight
	ready     chan struct{} // capacity 1: there may be tasks to take
	idleReady chan struct{} // capacity 1: there may be tasks to take, for an idle worker
	done      chan struct{} // closed by close: every waiting worker must look again
}

func newBacklog() *backlog {
	return &backlog{ready: make(chan struct{}, 1), idleReady: make(chan struct{}, 1), done: make(chan struct{})}
}

// signal wakes a worker to take tasks: an idle one if there is one. Called with mu held.
func (b *backlog) signal() {
	ch := b.ready
	if b.idle > 0 {
		ch = b.idleReady
	}
	select {
	case ch <- struct{}{}:
	default:
	}
}

// waitIdle counts a worker in (+1) or out (-1) of the idle ones. One that leaves for good
// (gone, it drains or died) with tasks queued may have been woken for them and will not take
// them: another worker is woken instead. (One that leaves because it took tasks needs no
// such wake-up: take wakes another worker when it leaves some.)
func (b *backlog) waitIdle(delta int, gone bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.idle += delta
	if gone && len(b.items) > b.head {
		b.signal()
	}
}

// push adds t, or returns the error that keeps it out (closed, or no worker).
func (b *backlog) push(t *task) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrPoolClosed
	}
	if b.failed != nil {
		return b.failed
	}
	b.items = append(b.items, t)
	b.signal()
	return nil
}

// pushFront puts tasks back at the head, in order: tasks a dead worker never started. If the
// backlog failed (the pool is broken or shut down) they are not taken back: it returns the
// error they must fail with.
func (b *backlog) pushFront(ts []*task) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.failed != nil {
		return b.failed
	}
	rest := b.items[b.head:]
	b.items = append(append(make([]*task, 0, len(ts)+len(rest)), ts...), rest...)
	b.head = 0
	b.signal()
	return nil
}

// take removes up to n tasks into dst, and no more than a fair share of those queued when
// workers take them: 1/workers, rounded up. Without that limit the first worker to wake takes
// a whole short queue of long tasks (32 of them at the default InFlight) and the others idle.
// closed reports that the backlog is closed and empty. A busy worker (tasks in flight) takes
// nothing while an idle one waits: it wakes that one instead.
func (b *backlog) take(dst []*task, n, workers int, busy bool) (out []*task, closed bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	queued := len(b.items) - b.head
	if busy && b.idle > 0 {
		if queued > 0 {
			b.signal() // it may have taken the signal meant for the idle worker
		}
		return dst, b.closed && queued == 0
	}
	k := min(n, queued, (queued+workers-1)/max(1, workers))
	dst = append(dst, b.items[b.head:b.head+k]...)
	clear(b.items[b.head : b.head+k])
	b.head += k
	if b.head == len(b.items) {
		b.items, b.head = b.items[:0], 0
	} else {
		b.signal() // more left: wake another worker
	}
	return dst, b.closed && b.head == len(b.items)
}

// remove takes t out of the backlog if it is still there.
func (b *backlog) remove(t *task) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := b.head; i < len(b.items); i++ {
		if b.items[i] == t {
			copy(b.items[i:], b.items[i+1:])
			b.items[len(b.items)-1] = nil
			b.items = b.items[:len(b.items)-1]
			return true
		}
	}
	return false
}

func (b *backlog) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.items) - b.head
}

// close stops pushes; what is queued stays for the workers to finish (Close) or for fail
// (Shutdown).
func (b *backlog) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.closed {
		b.closed = true
		close(b.done)
	}
}

// fail makes later pushes fail with err (or the error of an earlier fail) and returns the
// tasks queued now.
func (b *backlog) fail(err error) []*task {
	b.mu.Lock()
	if b.failed == nil {
		b.failed = err
	}
	b.mu.Unlock()
	return b.removeAll()
}

func (b *backlog) removeAll() []*task {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := append([]*task(nil), b.items[b.head:]...)
	b.items, b.head = nil, 0
	return out
}
