package jetstream

import (
	"crypto/sha256"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/supervise-dev/supervise/channel"
)

// A Client sends its tasks in batches: the tasks submitted while it was publishing the last
// ones travel as one message, and their outcomes come back together (docs/protocol.md,
// section 11, "Batches"). A message costs the server the same whether it holds one task or
// two hundred, so small tasks go at the pool's pace, not the server's. How many go together
// follows how long they take: a batch is about batchWork of work, so that long tasks still
// go one to a message and spread over every machine.
const (
	maxBatchTasks = 256     // tasks in one message, at most
	maxBatchBytes = 1 << 20 // and their bytes (a larger task goes alone)
	batchWork     = 50 * time.Millisecond
	probeMessages = 256                    // messages out before the first outcome says how long tasks take
	linger        = 500 * time.Microsecond // how long a batch waits for more tasks while others are out
)

// batch is one message of tasks, from its publishing until each of its tasks is settled.
type batch struct {
	num    uint64
	ids    []uint64 // ascending
	digest [sealDigest]byte
	seq    uint64 // its message in the tasks stream, once the server has stored it
	open   int    // tasks not yet settled
}

// has reports whether task id travelled in b.
func (b *batch) has(id uint64) bool {
	lo, hi := 0, len(b.ids)
	for lo < hi {
		mid := (lo + hi) / 2
		if b.ids[mid] < id {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo < len(b.ids) && b.ids[lo] == id
}

// sizer learns how long a task takes on the machines (as they say with each outcome) and
// sizes batches from it.
type sizer struct {
	fixed int // Config.MaxBatch, if not 0

	mu      sync.Mutex
	perTask time.Duration // a moving average; 0: no outcome yet
}

func (s *sizer) learn(perTask time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	perTask = max(perTask, time.Microsecond)
	if s.perTask == 0 {
		s.perTask = perTask
		return
	}
	s.perTask = (s.perTask*3 + perTask) / 4
}

// size is how many tasks the next batch may hold, and whether any may go yet: before the
// first outcome, probeMessages messages of one task each.
func (s *sizer) size(out int) (int, bool) {
	if s.fixed > 0 {
		return s.fixed, true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.perTask == 0 {
		return 1, out < probeMessages
	}
	return int(min(maxBatchTasks, max(1, batchWork/s.perTask))), true
}

// flushing publishes the tasks submitted, in batches, until the client closes.
func (c *Client) flushing() {
	defer close(c.flushed)
	for {
		select {
		case <-c.wake:
		case <-c.ctx.Done():
			return
		}
		for c.ctx.Err() == nil {
			if c.filling() {
				// Tasks are coming while others are out: a moment more fills the batch.
				time.Sleep(linger)
			}
			c.pause.Lock() // tests hold it to fill a batch
			b, msg := c.nextBatch()
			c.pause.Unlock()
			if b == nil {
				break
			}
			c.publish(b, msg)
		}
	}
}

// filling reports whether a batch is not full yet while others are out.
func (c *Client) filling() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	most, ok := c.sizer.size(len(c.batches))
	return ok && most > 1 && len(c.queued) < most && len(c.batches) > 0
}

// wakeFlusher tells the flusher there may be tasks to send.
func (c *Client) wakeFlusher() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// nextBatch takes the tasks queued for the next message, and makes it: nil when there are
// none, or none may go yet.
func (c *Client) nextBatch() (*batch, *nats.Msg) {
	c.mu.Lock()
	defer c.mu.Unlock()
	most, ok := c.sizer.size(len(c.batches))
	if !ok || c.closed {
		return nil, nil
	}
	var (
		calls [][]byte
		ids   []uint64
		bytes int
	)
	taken := 0
	for _, id := range c.queued {
		if len(ids) == most {
			break
		}
		p := c.pending[id]
		if p == nil { // cancelled before it went
			taken++
			continue
		}
		if len(ids) > 0 && bytes+len(p.call) > maxBatchBytes {
			break
		}
		calls, ids = append(calls, p.call), append(ids, id)
		bytes += len(p.call)
		taken++
	}
	c.queued = c.queued[taken:]
	if len(c.queued) == 0 {
		c.queued = nil // let the backing array go
	}
	if len(ids) == 0 {
		return nil, nil
	}
	c.batchNum++
	b := &batch{num: c.batchNum, ids: ids, open: len(ids)}
	msg := nats.NewMsg(c.cfg.tasksSubject())
	msg.Header.Set(headerRun, c.run)
	msg.Header.Set(headerSeal, c.keys.pubText)
	msg.Header.Set(headerBatch, strconv.FormatUint(b.num, 10))
	msg.Data = channel.JoinBatch(make([]byte, 0, bytes+5), calls...)
	b.digest = sha256.Sum256(msg.Data)
	c.batches[b.num] = b
	for _, id := range ids {
		p := c.pending[id]
		p.batch, p.call = b, nil
	}
	c.wg.Add(1) // its confirmation
	return b, msg
}

// publish sends batch b's message; a goroutine waits for the server to store it.
func (c *Client) publish(b *batch, msg *nats.Msg) {
	msgID := c.run + ".b" + strconv.FormatUint(b.num, 10)
	ack, err := c.s.js.PublishMsgAsync(msg, natsjs.WithMsgID(msgID))
	go c.confirm(b.num, msg, msgID, ack, err)
}

// confirm waits for the server to store a batch, publishing it again (the same message id, so
// stored once) until it does or the client closes: a server restarting loses nothing sent.
func (c *Client) confirm(num uint64, msg *nats.Msg, msgID string, ack natsjs.PubAckFuture, err error) {
	defer c.wg.Done()
	for attempt := 1; ; attempt++ {
		if err == nil {
			select {
			case pa := <-ack.Ok():
				c.stored(num, pa.Sequence)
				return
			case err = <-ack.Err():
			case <-c.ctx.Done():
				return // Close fails the tasks
			}
		}
		delay := min(2*time.Second, time.Duration(attempt)*100*time.Millisecond)
		c.cfg.Logger.Warn("jetstream: publishing tasks failed; again", "queue", c.cfg.Queue, "batch", num, "attempt", attempt, "err", err, "retry_in", delay)
		select {
		case <-time.After(delay):
		case <-c.ctx.Done():
			return
		}
		ack, err = c.s.js.PublishMsgAsync(msg, natsjs.WithMsgID(msgID))
	}
}
