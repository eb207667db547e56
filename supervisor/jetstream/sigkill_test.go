package jetstream_test

import (
	"context"
	"errors"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/supervise-dev/supervise/internal/procfs"
	"github.com/supervise-dev/supervise/supervisor"
	"github.com/supervise-dev/supervise/supervisor/jetstream"
)

// killMidRun SIGKILLs machine m and waits for it.
func killMidRun(m *machine) {
	m.cmd.Process.Signal(syscall.SIGKILL)
	m.cmd.Wait()
}

// A machine SIGKILLed while its tasks send reports: each task ends with its outcome, from the
// machine that took it over, and its reports come in order: a delivery's reports 1, 2, ...
// as sent, those of the delivery cut short first, then all of the one that answered, before
// the outcome.
func TestReportsSurviveMachineSIGKILL(t *testing.T) {
	s := startServer(t)
	ms := startMachines(t, s, 2)
	c := newClient(t, s, testConfig())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const tasks, n = 4, 20 // each machine runs two, on its two workers
	var (
		wg      sync.WaitGroup
		reports = make([][]int, tasks)
		first   = make(chan struct{}, tasks)
		fs      []*jetstream.Future[int]
	)
	for k := range tasks {
		f := jetstream.Submit[napInput, int](ctx, c, "slowcount", napInput{N: n, Ms: 50})
		fs = append(fs, f)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range f.Reports(ctx) {
				var i int
				must(t, r.Decode(&i))
				if len(reports[k]) == 0 {
					first <- struct{}{}
				}
				reports[k] = append(reports[k], i)
			}
		}()
	}
	for range tasks { // every task runs, and reports
		select {
		case <-first:
		case <-ctx.Done():
			t.Fatal("not every task reported")
		}
	}
	killMidRun(ms[0])
	for k, f := range fs {
		if got, err := f.Get(ctx); err != nil || got != n {
			t.Fatalf("task %d: %d, %v", k, got, err)
		}
	}
	wg.Wait()
	again := 0
	for k, rs := range reports {
		// Runs of 1, 2, ...: one per delivery; the last one whole.
		last := 0
		for i, r := range rs {
			switch {
			case r == last+1:
			case r == 1 && i > 0:
				again++
			default:
				t.Fatalf("task %d: reports %v: %d after %d", k, rs, r, last)
			}
			last = r
		}
		if last != n {
			t.Fatalf("task %d: reports %v: the last delivery's end before the outcome", k, rs)
		}
	}
	if again == 0 {
		t.Error("no task was delivered again after its machine was killed")
	}
	t.Logf("%d of %d tasks ran again after their machine was killed", again, tasks)
}

// A machine SIGKILLed while its handlers put follow-ups: Join still waits for every item,
// each ends once, and every follow-up of the tree is there (a task run again may put its
// follow-ups again: a tree then has more items, never fewer).
func TestFollowUpsSurviveMachineSIGKILL(t *testing.T) {
	s := startServer(t)
	ms := startMachines(t, s, 2)
	c := newClient(t, s, testConfig())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	q := supervisor.NewQueueOn[napInput, int](c, "slowtree", supervisor.QueueConfig{})
	const depth = 5
	must(t, q.Put(ctx, napInput{N: depth, Ms: 100}))
	var (
		mu     sync.Mutex
		depths = map[int]int{}
		done   = make(chan struct{})
		killed = make(chan struct{})
	)
	go func() {
		defer close(done)
		for r := range q.Results(ctx) {
			if r.Err != nil {
				t.Errorf("item %d: %v", r.Index, r.Err)
				continue
			}
			mu.Lock()
			depths[r.Value]++
			if depths[depth-2] == 1 { // the tree is growing on both machines
				go func() { killMidRun(ms[0]); close(killed) }()
			}
			mu.Unlock()
		}
	}()
	must(t, q.Join(ctx))
	<-killed
	q.Close()
	<-done
	for d := 0; d <= depth; d++ {
		if want := 1 << (depth - d); depths[d] < want {
			t.Errorf("depth %d: %d items, want %d at least", d, depths[d], want)
		}
	}
	t.Logf("items by depth: %v", depths)
}

// A task whose machine was SIGKILLed, cancelled by its submitter before or after another
// machine took it over: it ends once, with context.Canceled, at once; if the other machine
// started it, that machine cancels it (its handler sees the cancel); and the queue is left
// empty, so no machine runs it later.
func TestCancelSurvivesMachineSIGKILL(t *testing.T) {
	s := startServer(t)
	ms := startMachines(t, s, 2)
	c := newClient(t, s, testConfig())
	log := napLog(t)
	ctx, cancel := context.WithCancel(context.Background())
	f := jetstream.Submit[napInput, int](ctx, c, "hold", napInput{N: 1, Log: log})
	first := awaitLine(t, log, `start 1 (\d+)`)[1]
	killed := false
	for _, m := range ms { // the machine whose worker runs it
		if worker, _ := strconv.Atoi(first); slices.Contains(procfs.Tree(m.cmd.Process.Pid), worker) {
			killMidRun(m)
			killed = true
		}
	}
	if !killed {
		t.Fatalf("worker %s is no machine's child", first)
	}
	cancel()
	if _, err := f.Get(context.Background()); !errors.Is(err, context.Canceled) {
		t.Fatalf("the task cancelled after its machine died: %v, want context.Canceled", err)
	}
	awaitQueueEmpty(t, s)
	// Taken over before the cancel came, it was cancelled on the other machine.
	if m := regexp.MustCompile(`(?m)^start 1 (\d+)$`).FindAllStringSubmatch(readFile(t, log), -1); len(m) > 1 {
		awaitLine(t, log, "cancelled 1 "+m[len(m)-1][1])
	}
}
