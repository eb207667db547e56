package supervisor

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// The ledger's cases, without processes: a script of events on a worker of some concurrency,
// and what the ledger then says. Events: "s N" sends call N; "a N" is N's answer; "c N" is a
// cancel of N (its context ended): "waiting" or "running" is what the ledger says of it; "x N"
// settles N elsewhere (failed by a cancel); "t" is a watchdog tick. Times are milliseconds on
// a clock that the script moves ("+N").
func TestLedger(t *testing.T) {
	const timeout, grace = 100 * time.Millisecond, 50 * time.Millisecond
	for _, tc := range []struct {
		name        string
		concurrency int
		script      string
		retries     map[uint64]int
		// After the script: the calls running, the tick's decisions, the fate at death, and
		// how many times each call started.
		running              []uint64
		cancels              []uint64 // of the last tick
		overdue              uint64   // of the last tick, 0 for none
		fail, retry, requeue []uint64
		starts               map[uint64]int
		cancelSays           string // what the last "c" said
	}{
		{name: "one at a time: the first is running", concurrency: 1, script: "s1 s2 s3",
			running: []uint64{1}, fail: []uint64{1}, requeue: []uint64{2, 3}, starts: map[uint64]int{1: 1}},
		{name: "answers free the next", concurrency: 1, script: "s1 s2 s3 a1",
			running: []uint64{2}, fail: []uint64{2}, requeue: []uint64{3}, starts: map[uint64]int{1: 1, 2: 1, 3: 0}},
		{name: "concurrency 2", concurrency: 2, script: "s1 s2 s3 s4 a2",
			running: []uint64{1, 3}, fail: []uint64{1, 3}, requeue: []uint64{4}},
		{name: "an answer out of order starts nothing new", concurrency: 1, script: "s1 s2 s3 a3",
			running: []uint64{1}, fail: []uint64{1}, requeue: []uint64{2}, starts: map[uint64]int{3: 1}},
		{name: "a waiting call's cancel", concurrency: 1, script: "s1 s2 c2",
			cancelSays: "waiting", running: []uint64{1}, fail: []uint64{1}, requeue: []uint64{2}},
		{name: "a running call's cancel", concurrency: 1, script: "s1 s2 c1",
			cancelSays: "running", running: []uint64{1}},
		{name: "a waiting call failed by its cancel is neither failed nor requeued at death", concurrency: 1, script: "s1 s2 s3 c2 x2",
			fail: []uint64{1}, requeue: []uint64{3}},
		{name: "the time limit cancels the running call only", concurrency: 1, script: "s1 s2 +100 t",
			cancels: []uint64{1}},
		{name: "a call starts its time limit when it starts", concurrency: 1, script: "s1 s2 +60 a1 +60 t",
			running: []uint64{2}},
		{name: "overdue: the running call past grace after its cancel", concurrency: 1, script: "s1 s2 s3 c1 c2 c3 +50 t",
			overdue: 1},
		{name: "waiting calls cancelled long ago are never overdue", concurrency: 1, script: "s1 s2 c2 +200 t",
			running: []uint64{1}, cancels: []uint64{1}},
		{name: "a call cancelled while waiting gets its grace from its start", concurrency: 1, script: "s1 s2 c2 +200 a1 +10 t",
			running: []uint64{2}},
		{name: "... and is overdue after it", concurrency: 1, script: "s1 s2 c2 +200 a1 +50 t",
			overdue: 2},
		{name: "of two overdue, the one cancelled first", concurrency: 2, script: "s1 s2 c2 +10 c1 +60 t",
			overdue: 2},
		{name: "a running call with retries goes again", concurrency: 1, script: "s1 s2", retries: map[uint64]int{1: 1, 2: 1},
			retry: []uint64{1}, requeue: []uint64{2}},
		{name: "a requeued call counts one start per run", concurrency: 1, script: "s1 a1 s2 s2 a2",
			starts: map[uint64]int{1: 1, 2: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLedger(tc.concurrency)
			now := time.Unix(1000, 0)
			calls := map[uint64]*task{}
			call := func(id uint64) *task {
				if calls[id] == nil {
					calls[id] = &task{id: id, handler: "h", ctx: context.Background(), done: make(chan struct{}), retries: tc.retries[id]}
				}
				return calls[id]
			}
			var cancels []*task
			var overdue *task
			said := ""
			for _, ev := range strings.Fields(tc.script) {
				id := uint64(0)
				if len(ev) > 1 {
					id = uint64(mustAtoi(t, ev[1:]))
				}
				switch ev[0] {
				case 's':
					if l.held[id] == call(id) { // sent again: its worker died, it was requeued
						l = newLedger(tc.concurrency)
					}
					l.send(call(id), now)
				case 'a':
					if l.answer(id, now) != call(id) {
						t.Fatalf("answer %d: not held", id)
					}
				case 'c':
					said = "running"
					if l.cancel(call(id), now) {
						said = "waiting"
					}
				case 'x':
					call(id).settle(nil, errors.New("cancelled"))
				case '+':
					now = now.Add(time.Duration(id) * time.Millisecond)
				case 't':
					cancels, overdue = l.tick(now, timeout, grace)
				}
			}
			if tc.cancelSays != "" && said != tc.cancelSays {
				t.Errorf("the cancel said %s, want %s", said, tc.cancelSays)
			}
			var running []uint64
			for _, c := range calls {
				if l.running(c) {
					running = append(running, c.id)
				}
			}
			slices.Sort(running)
			if tc.running != nil && !slices.Equal(running, tc.running) {
				t.Errorf("running %v, want %v", running, tc.running)
			}
			if got := ids(cancels); !slices.Equal(got, tc.cancels) {
				t.Errorf("tick cancels %v, want %v", got, tc.cancels)
			}
			if got := ids([]*task{overdue}); (overdue == nil) != (tc.overdue == 0) || (overdue != nil && got[0] != tc.overdue) {
				t.Errorf("overdue %v, want %d", got, tc.overdue)
			}
			for id, n := range tc.starts {
				if got := int(call(id).starts.Load()); got != n {
					t.Errorf("call %d started %d times, want %d", id, got, n)
				}
			}
			if tc.fail == nil && tc.retry == nil && tc.requeue == nil {
				return
			}
			v := l.death()
			if got := ids(v.fail); !slices.Equal(got, tc.fail) {
				t.Errorf("at death, fail %v, want %v", got, tc.fail)
			}
			if got := ids(v.retry); !slices.Equal(got, tc.retry) {
				t.Errorf("at death, retry %v, want %v", got, tc.retry)
			}
			if got := ids(v.requeue); !slices.Equal(got, tc.requeue) {
				t.Errorf("at death, requeue %v, want %v", got, tc.requeue)
			}
			if l.len() != 0 {
				t.Errorf("%d calls held after death", l.len())
			}
		})
	}
}

func ids(ts []*task) []uint64 {
	var out []uint64
	for _, t := range ts {
		if t != nil {
			out = append(out, t.id)
		}
	}
	return out
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			t.Fatalf("not a number: %q", s)
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// A compacting ledger keeps the calls it holds, in order, however answers come.
func TestLedgerCompacts(t *testing.T) {
	l := newLedger(1)
	now := time.Unix(0, 0)
	head := &task{id: 1, ctx: context.Background(), done: make(chan struct{})}
	l.send(head, now)
	for id := uint64(2); id < 1000; id++ {
		tk := &task{id: id, ctx: context.Background(), done: make(chan struct{})}
		l.send(tk, now)
		if id%2 == 0 {
			l.answer(id, now)
		}
	}
	if len(l.sent) > 4*l.len() {
		t.Errorf("%d calls in sent for %d held", len(l.sent), l.len())
	}
	v := l.death()
	if len(v.fail) != 1 || v.fail[0] != head || len(v.requeue) != 499 {
		t.Errorf("death: fail %v, %d requeued", ids(v.fail), len(v.requeue))
	}
	for i := 1; i < len(v.requeue); i++ {
		if v.requeue[i].id <= v.requeue[i-1].id {
			t.Fatalf("requeued out of order: %d after %d", v.requeue[i].id, v.requeue[i-1].id)
		}
	}
}
