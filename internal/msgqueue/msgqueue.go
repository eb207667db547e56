// Package msgqueue keeps a running task's messages (child.Report) for its caller until the
// caller takes them: in order, bounded in bytes, with a channel to wait on for more. The
// pool's futures and the JetStream client's use it.
package msgqueue

import (
	"sync"

	"github.com/vmihailenco/msgpack/v5"
)

// Cost is what one message counts against a limit beyond its bytes: the memory that keeps
// it, so that a flood of empty messages is bounded too.
const Cost = 64

// Queue is one task's messages not yet taken. The zero value is empty and open.
type Queue struct {
	mu    sync.Mutex
	msgs  []msgpack.RawMessage // not yet taken, oldest first
	bytes int                  // what msgs count against the limit
	ended bool
	more  chan struct{} // made when someone waits; closed on the next add or end
}

// Add keeps m, unless that would take the messages kept over limit bytes (0 or less: no
// limit), or the queue has ended; it reports whether m was refused for the limit, and the
// bytes held.
func (q *Queue) Add(m msgpack.RawMessage, limit int) (held int, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.ended {
		return q.bytes, true
	}
	cost := len(m) + Cost
	if limit > 0 && q.bytes+cost > limit {
		return q.bytes, false
	}
	q.msgs = append(q.msgs, m)
	q.bytes += cost
	q.wake()
	return q.bytes, true
}

// Held is how many bytes the messages not yet taken count against the limit.
func (q *Queue) Held() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.bytes
}

// End says no more messages will come; those kept may still be taken.
func (q *Queue) End() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.ended = true
	q.wake()
}

func (q *Queue) wake() {
	if q.more != nil {
		close(q.more)
		q.more = nil
	}
}

// Next takes the oldest message if there is one; otherwise it returns a channel to wait on
// for more, or nil if there will be none.
func (q *Queue) Next() (msgpack.RawMessage, bool, <-chan struct{}) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.msgs) > 0 {
		m := q.msgs[0]
		q.msgs[0] = nil
		q.msgs = q.msgs[1:]
		q.bytes -= len(m) + Cost
		if len(q.msgs) == 0 {
			q.msgs = nil // let the array go
		}
		return m, true, nil
	}
	if q.ended {
		return nil, false, nil
	}
	if q.more == nil {
		q.more = make(chan struct{})
	}
	return nil, false, q.more
}
