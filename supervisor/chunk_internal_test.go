package supervisor

import (
	"errors"
	"testing"
	"time"
)

// The automatic chunk size: one input per call until one is measured; then about chunkTime
// of handler time and chunkBytes of input; a quarter after a chunk lost its worker, doubling
// back with each chunk answered whole.
func TestChunkSizer(t *testing.T) {
	var s chunkSizer
	if n := s.next(); n != 1 {
		t.Fatalf("before any measure: %d, want 1", n)
	}
	s.answered(10, 200*time.Microsecond) // 20 us an input: 2 ms is 100 of them
	if n := s.next(); n != 100 {
		t.Fatalf("at 20 us an input: %d, want 100", n)
	}
	s.inputs, s.size = 10, 10*1000 // 1,000 bytes an input: 64 KiB is 65 of them
	if n := s.next(); n != 65 {
		t.Fatalf("at 1,000 bytes an input: %d, want 65", n)
	}
	s.ended(64, false) // lost its worker: a quarter of 64
	if n := s.next(); n != 16 {
		t.Fatalf("after a chunk of 64 died: %d, want 16", n)
	}
	s.ended(16, true)
	if n := s.next(); n != 32 {
		t.Fatalf("after a chunk answered whole: %d, want 32", n)
	}
	s.answered(1, time.Second) // slow inputs: one per call
	if n := s.next(); n != 1 {
		t.Fatalf("at about 90 ms an input: %d, want 1", n)
	}
	fixed := chunkSizer{fixed: 7}
	if n := fixed.next(); n != 7 {
		t.Fatalf("fixed at 7: %d", n)
	}
}

// A pool's queue sizes its chunks from the items it has seen answered: their handler time,
// not that of failed ones.
func TestQueueSizerLearnsFromItems(t *testing.T) {
	q := &queue{pool: &Pool{}, changed: make(chan struct{})}
	item := func(took time.Duration, err error) *task {
		it := &task{err: err}
		it.took.Store(int64(took))
		return it
	}
	q.settled(item(time.Second, errors.New("failed"))) // not counted
	if n := q.sizer.next(); n != 1 {
		t.Fatalf("before an item succeeded: %d, want 1", n)
	}
	for range 10 {
		q.settled(item(20*time.Microsecond, nil))
	}
	if n := q.sizer.next(); n != 100 {
		t.Fatalf("after items of 20 us: %d, want 100", n)
	}
}
