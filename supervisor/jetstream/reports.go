package jetstream

import (
	"context"
	"fmt"
	"iter"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/supervise-dev/supervise/channel"
	"github.com/supervise-dev/supervise/internal/msgqueue"
	"github.com/supervise-dev/supervise/supervisor"
	"github.com/vmihailenco/msgpack/v5"
)

// Reports yields the messages the task's handler sent with child.Report on its machine, in
// the order sent, as they arrive, and ends once the task has ended and every message was
// yielded (or when ctx ends). Reports travel apart from results, by core NATS: a task's
// outcome waits for the reports its machine says it sent, ten seconds at most (one lost on
// the way is then missing). A task delivered again yields the reports of each delivery.
func (f *Future[Out]) Reports(ctx context.Context) iter.Seq[supervisor.Report] {
	return func(yield func(supervisor.Report) bool) {
		for {
			m, ok, wait := f.reports.msgs.Next()
			if ok {
				if !yield(supervisor.NewReport(m)) {
					return
				}
				continue
			}
			if wait == nil {
				return
			}
			select {
			case <-wait:
			case <-ctx.Done():
				return
			}
		}
	}
}

// reportWait is how long an outcome waits for its task's reports still on the way: they were
// sent before it, so only a lost one (core NATS drops messages for a slow consumer, or over a
// reconnect) or a very busy server makes it wait that long.
const reportWait = 10 * time.Second

// taskReports are one task's reports at its Client: counted by delivery, and kept until its
// caller takes them (a future's; a queue item's are only counted).
type taskReports struct {
	keep bool
	msgs msgqueue.Queue

	mu       sync.Mutex
	delivery uint64 // the delivery the count is of
	count    int    // its messages received (reports and follow-ups)
	ended    bool
}

// current reports whether a message of delivery is of the delivery counted, making it the one
// counted if it is a later one.
func (r *taskReports) current(delivery uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ended || delivery < r.delivery {
		return false
	}
	if delivery > r.delivery {
		r.delivery, r.count = delivery, 0
	}
	return true
}

// add counts a message of a delivery and keeps it (m nil: a follow-up, only counted), unless
// over limit bytes; it returns the bytes held then, and whether the message is of the
// delivery counted.
func (r *taskReports) add(m msgpack.RawMessage, delivery uint64, limit int) (held int, ok, current bool) {
	if !r.current(delivery) {
		return 0, true, false
	}
	if m != nil && r.keep {
		if held, ok = r.msgs.Add(m, limit); !ok {
			return held, false, true
		}
	}
	r.mu.Lock()
	r.count++
	r.mu.Unlock()
	return held, true, true
}

// has reports whether n messages of delivery are in.
func (r *taskReports) has(delivery uint64, n int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return n == 0 || r.delivery == delivery && r.count >= n
}

func (r *taskReports) end() {
	r.mu.Lock()
	r.ended = true
	r.mu.Unlock()
	r.msgs.End()
}

// report takes one report of this run's tasks: sealed to the run for that task's bytes, or
// it is not kept.
func (c *Client) report(msg *nats.Msg) {
	id, err := strconv.ParseUint(msg.Header.Get(headerTask), 10, 64)
	delivery, err2 := strconv.ParseUint(msg.Header.Get(headerDeliveries), 10, 64)
	if err != nil || err2 != nil {
		return
	}
	c.mu.Lock()
	p := c.pending[id]
	c.mu.Unlock()
	if p == nil {
		return
	}
	peer, err := parseKey(msg.Header.Get(headerSealedBy))
	if err != nil {
		return
	}
	c.mu.Lock()
	b := p.batch
	c.mu.Unlock()
	digest, data, err := c.keys.open(peer, msg.Data)
	if err != nil || b == nil || digest != b.digest {
		c.cfg.Logger.Warn("jetstream: a report not for this run's task", "queue", c.cfg.Queue, "task", id)
		return
	}
	switch msg.Header.Get(headerKind) {
	case "died":
		c.noteDeath(p, data, msg.Header.Get(headerWorker))
		return // not a report: not counted
	case "put":
		if !p.reports.current(delivery) {
			return
		}
		if p.put != nil {
			p.put(data) // put, and only then counted: the outcome, and Join, wait for it
		} else {
			c.mu.Lock()
			p.misuse = fmt.Errorf("%w: the handler put follow-up work, but the task was submitted alone, not to a queue", supervisor.ErrNotInQueue)
			c.mu.Unlock()
		}
		p.reports.add(nil, delivery, c.cfg.MaxReportBytes)
	default:
		held, ok, current := p.reports.add(data, delivery, c.cfg.MaxReportBytes)
		if !ok {
			c.cancelTask(id, &supervisor.ReportOverflowError{TaskID: id, Held: held, Report: len(data), Limit: c.cfg.MaxReportBytes})
			return
		}
		if current && !p.reports.keep {
			c.mu.Lock()
			p.misuse = supervisor.ErrQueueReport // as on a pool: a queue's results carry no reports
			c.mu.Unlock()
		}
	}
	c.mu.Lock()
	ready := p.final != nil && p.reports.has(p.finalDelivery, p.finalReports)
	c.mu.Unlock()
	if ready {
		c.settle(id)
	}
}

// noteDeath keeps the error of a worker that died under task p on machine, as a machine's
// note said (data: an error message of the task): p's outcome if the server stops delivering
// it before a machine records one.
func (c *Client) noteDeath(p *pendingTask, data []byte, machine string) {
	note, err := channel.ParseMessage(data)
	if err != nil || note.Kind != channel.KindError || note.Err == nil {
		c.cfg.Logger.Warn("jetstream: a note of a worker's death that is not an error message", "queue", c.cfg.Queue, "machine", machine, "err", err)
		return
	}
	c.mu.Lock()
	p.died, p.diedOn = note.Err, machine
	c.mu.Unlock()
}

// finish settles task p with its outcome once the reports its machine sent are in (or after
// reportWait).
func (c *Client) finish(id uint64, p *pendingTask, delivery uint64, reports int, settle func()) {
	c.mu.Lock()
	if c.pending[id] != p {
		c.mu.Unlock()
		return // settled meanwhile
	}
	p.final, p.finalDelivery, p.finalReports = settle, delivery, reports
	if p.reports.has(delivery, reports) {
		c.mu.Unlock()
		c.settle(id)
		return
	}
	if p.finalTimer != nil { // the outcome seen again (after a reconnect)
		p.finalTimer.Stop()
	}
	p.finalTimer = time.AfterFunc(reportWait, func() { c.settle(id) })
	c.mu.Unlock()
}

// settle ends a task whose outcome waited for its reports.
func (c *Client) settle(id uint64) {
	c.mu.Lock()
	p := c.pending[id]
	if p == nil || p.final == nil {
		c.mu.Unlock()
		return
	}
	c.take(id)
	misuse := p.misuse
	c.mu.Unlock()
	if misuse != nil { // as on a pool: a follow-up without a queue, a report from a queue item
		p.done(nil, &TaskError{Queue: c.cfg.Queue, ID: id, Handler: p.handler, Err: misuse})
		return
	}
	p.final()
}
