package supervisor

import (
	"errors"
	"slices"
	"testing"
)

func tasksN(ids ...uint64) []*task {
	out := make([]*task, len(ids))
	for i, id := range ids {
		out[i] = &task{id: id, done: make(chan struct{})}
	}
	return out
}

// Scheduling without processes: who takes what from the backlog, and who is woken.
func TestBacklogTake(t *testing.T) {
	for _, tc := range []struct {
		name    string
		queued  int
		idle    int  // workers counted idle
		n       int  // free slots of the taker
		workers int  // in the pool
		busy    bool // the taker has calls in flight
		took    []uint64
		woken   string // the signal left: "idle", "ready" or ""
	}{
		{name: "a fair share of a short queue", queued: 8, n: 32, workers: 4, took: []uint64{1, 2}, woken: "ready"},
		{name: "all of it when alone", queued: 8, n: 32, workers: 1, took: []uint64{1, 2, 3, 4, 5, 6, 7, 8}},
		{name: "no more than its free slots", queued: 8, n: 3, workers: 1, took: []uint64{1, 2, 3}, woken: "ready"},
		{name: "rounded up: one of one", queued: 1, n: 4, workers: 4, took: []uint64{1}},
		{name: "a busy worker leaves it to an idle one", queued: 2, idle: 1, n: 4, workers: 2, busy: true, woken: "idle"},
		{name: "a busy worker takes when none is idle", queued: 2, n: 4, workers: 2, busy: true, took: []uint64{1}, woken: "ready"},
		{name: "an idle worker takes, and wakes another idle one for the rest", queued: 4, idle: 2, n: 4, workers: 2, took: []uint64{1, 2}, woken: "idle"},
		{name: "nothing queued", queued: 0, n: 4, workers: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBacklog()
			b.idle = tc.idle
			for _, x := range tasksN(seq(tc.queued)...) {
				b.items = append(b.items, x) // not push: no signal
			}
			got, closed := b.take(nil, tc.n, tc.workers, tc.busy)
			if !slices.Equal(ids(got), tc.took) || closed {
				t.Errorf("took %v (closed %v), want %v", ids(got), closed, tc.took)
			}
			if w := woken(b); w != tc.woken {
				t.Errorf("woken %q, want %q", w, tc.woken)
			}
			if b.len() != tc.queued-len(tc.took) {
				t.Errorf("%d left, want %d", b.len(), tc.queued-len(tc.took))
			}
		})
	}
}

func seq(n int) []uint64 {
	out := make([]uint64, n)
	for i := range out {
		out[i] = uint64(i + 1)
	}
	return out
}

func woken(b *backlog) string {
	select {
	case <-b.idleReady:
		return "idle"
	case <-b.ready:
		return "ready"
	default:
		return ""
	}
}

// A dead worker's calls go back to the front, in order; closing lets workers finish what is
// queued; failing hands the queued tasks back and refuses more.
func TestBacklogPushFrontCloseFail(t *testing.T) {
	b := newBacklog()
	for _, x := range tasksN(3, 4) {
		if err := b.push(x); err != nil {
			t.Fatal(err)
		}
	}
	if w := woken(b); w != "ready" {
		t.Errorf("a push woke %q", w)
	}
	if err := b.pushFront(tasksN(1, 2)); err != nil {
		t.Fatal(err)
	}
	b.close()
	if err := b.push(tasksN(9)[0]); !errors.Is(err, ErrPoolClosed) {
		t.Errorf("a push after close: %v", err)
	}
	got, closed := b.take(nil, 10, 1, false)
	if !slices.Equal(ids(got), []uint64{1, 2, 3, 4}) || !closed {
		t.Errorf("took %v, closed %v", ids(got), closed)
	}
	b = newBacklog()
	queued := tasksN(5, 6)
	b.push(queued[0])
	b.push(queued[1])
	if b.remove(queued[0]) != true || b.remove(queued[0]) != false {
		t.Error("remove: not once")
	}
	broken := errors.New("broken")
	if left := b.fail(broken); !slices.Equal(ids(left), []uint64{6}) {
		t.Errorf("fail handed back %v", ids(left))
	}
	if err := b.pushFront(tasksN(7)); err != broken {
		t.Errorf("pushFront after fail: %v", err)
	}
}

// An idle worker that leaves (it drains, or dies) with tasks queued for it wakes another.
func TestBacklogIdleLeavesWakesAnother(t *testing.T) {
	b := newBacklog()
	b.waitIdle(+1, false)
	if err := b.push(tasksN(1)[0]); err != nil {
		t.Fatal(err)
	}
	if w := woken(b); w != "idle" {
		t.Fatalf("a push with an idle worker woke %q", w)
	}
	b.waitIdle(-1, true) // it went (drains, or died) before taking the task
	if w := woken(b); w != "ready" {
		t.Fatalf("the idle worker left: %q woken, want a busy one", w)
	}
}
