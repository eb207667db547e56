package jetstream

import (
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// errCancelled is the cause of a task's end when its submitter cancelled it.
var errCancelled = errors.New("cancelled by its submitter")

// cancels is a machine's record of the cancels its queue's submitters announce: the tasks
// running here, to cancel; and the tasks and runs cancelled before a task of theirs came,
// kept for a while (keep), at most maxCancels of each, as a submitter may send any number.
type cancels struct {
	keep time.Duration
	now  func() time.Time

	mu      sync.Mutex
	running map[taskKey]func(error)
	early   map[taskKey]time.Time // cancelled, not seen running here (yet)
	runs    map[string]time.Time  // cancelled as a whole
}

type taskKey struct {
	run string
	id  uint64
}

// maxCancels bounds each record of early cancels.
const maxCancels = 1 << 16

func newCancels(keep time.Duration) *cancels {
	return &cancels{keep: keep, now: time.Now, running: map[taskKey]func(error){}, early: map[taskKey]time.Time{}, runs: map[string]time.Time{}}
}

// start registers a task about to run, with the function that cancels it; it returns false
// if the task was cancelled already.
func (c *cancels) start(run string, id uint64, cancel func(error)) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := taskKey{run, id}
	if _, ok := c.early[k]; ok {
		delete(c.early, k)
		return false
	}
	if _, ok := c.runs[run]; ok {
		return false
	}
	c.running[k] = cancel
	return true
}

// end forgets a task that ended.
func (c *cancels) end(run string, id uint64) {
	c.mu.Lock()
	delete(c.running, taskKey{run, id})
	c.mu.Unlock()
}

// cancel takes one announcement: the subject's last token is the run, the data a task id or
// "*". Anything else is ignored.
func (c *cancels) cancel(msg *nats.Msg) {
	subject := msg.Subject
	run := subject[lastDot(subject)+1:]
	what := string(msg.Data)
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if what == "*" {
		for k, cancel := range c.running {
			if k.run == run {
				cancel(errCancelled)
			}
		}
		c.runs[run] = now
		prune(c.runs, now, c.keep)
		return
	}
	id, err := strconv.ParseUint(what, 10, 64)
	if err != nil {
		return
	}
	k := taskKey{run, id}
	if cancel, ok := c.running[k]; ok {
		cancel(errCancelled)
		return
	}
	c.early[k] = now
	prune(c.early, now, c.keep)
}

// prune, once m is over maxCancels, drops entries older than keep, and then any, down to
// three quarters of it: a flood costs a scan every maxCancels/4 entries, not one each.
func prune[K comparable](m map[K]time.Time, now time.Time, keep time.Duration) {
	if len(m) <= maxCancels {
		return
	}
	for k, at := range m {
		if now.Sub(at) > keep {
			delete(m, k)
		}
	}
	for k := range m {
		if len(m) <= maxCancels*3/4 {
			break
		}
		delete(m, k)
	}
}

func lastDot(s string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '.' {
			return i
		}
	}
	return -1
}
