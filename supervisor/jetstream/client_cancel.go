package jetstream

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
)

// A task's cancel, at the submitter: the task ends with the cause, the machines hear of it,
// and its message leaves the queue (see docs/protocol.md, section 11, "Cancels").

// stored notes where the server stored batch num, and takes it out of the queue if its last
// task was cancelled meanwhile.
func (c *Client) stored(num, seq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if b := c.batches[num]; b != nil {
		b.seq = seq
	} else if c.unstored[num] {
		delete(c.unstored, num)
		c.wg.Add(1)
		go func() { defer c.wg.Done(); c.withdraw(c.ctx, seq) }()
	}
}

// cancelTask ends task id with the cause of its context's end and, if it went to the queue,
// tells the machines (the one holding it cancels it), and removes its batch from the queue
// once none of the batch's tasks is left.
func (c *Client) cancelTask(id uint64, cause error) {
	c.mu.Lock()
	p := c.take(id)
	if p == nil || c.closed {
		c.mu.Unlock()
		return
	}
	var withdraw uint64
	if b := p.batch; b != nil {
		if withdraw = b.seq; b.open == 0 && withdraw == 0 {
			c.unstored[b.num] = true // not stored yet: stored removes it
		} else if b.open != 0 {
			withdraw = 0 // other tasks of it are still to run
		}
		c.wg.Add(1)
	}
	c.mu.Unlock()
	if p.batch != nil {
		go func() {
			defer c.wg.Done()
			c.announceCancel(strconv.FormatUint(id, 10))
			if withdraw != 0 {
				c.withdraw(c.ctx, withdraw)
			}
		}()
	}
	p.done(nil, &TaskError{Queue: c.cfg.Queue, ID: id, Handler: p.handler, Err: cause})
}

// announceCancel tells the machines that tasks of this run are cancelled: an id, or "*".
func (c *Client) announceCancel(what string) {
	if err := c.s.nc.Publish(c.cfg.cancelSubject(c.run), []byte(what)); err != nil {
		c.cfg.Logger.Warn("jetstream: could not announce a cancel", "queue", c.cfg.Queue, "run", c.run, "task", what, "err", err)
	}
}

// errCodeDeleteFailed is JetStream's error code for a delete that failed
// (JSStreamMsgDeleteFailedF): "no message found" when the message is gone already.
const errCodeDeleteFailed = 10057

// withdraw removes a task from the queue: no machine takes it, nor takes it again.
func (c *Client) withdraw(ctx context.Context, seq uint64) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := c.s.tasks.DeleteMsg(ctx, seq)
	var apiErr *natsjs.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == natsjs.JSErrCodeMessageNotFound || apiErr.ErrorCode == errCodeDeleteFailed && strings.Contains(apiErr.Description, "no message found")) {
		return // acked meanwhile, or deleted already
	}
	if err != nil && !errors.Is(err, natsjs.ErrMsgNotFound) {
		c.cfg.Logger.Warn("jetstream: could not remove a cancelled task from the queue", "queue", c.cfg.Queue, "seq", seq, "err", err)
	}
}

// withdrawAll removes tasks from the queue, a few at a time.
func (c *Client) withdrawAll(seqs []uint64) {
	var wg sync.WaitGroup
	next := make(chan uint64)
	for range min(len(seqs), 16) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := range next {
				c.withdraw(c.ctx, seq)
			}
		}()
	}
	for _, seq := range seqs {
		next <- seq
	}
	close(next)
	wg.Wait()
}
