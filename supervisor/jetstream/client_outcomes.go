package jetstream

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/supervise-dev/supervise/channel"
	"github.com/vmihailenco/msgpack/v5"
)

// A Client's reading of its run's outcomes: each message a part of a batch's delivery, sealed
// to the run (docs/protocol.md, section 11).

// collect takes one message of this run's outcomes: a part of a batch's delivery.
func (c *Client) collect(msg natsjs.Msg) {
	subject := msg.Subject()
	num, delivery, ok := c.cfg.parseResultSubject(c.run, subject)
	if !ok {
		// Not a batch's: a task in the form of one per message, which this client never sends.
		c.cfg.Logger.Warn("jetstream: ignoring a result on a subject not of a batch", "queue", c.cfg.Queue, "subject", subject)
		return
	}
	c.mu.Lock()
	b := c.batches[num]
	sent := c.batchNum
	c.mu.Unlock()
	if b == nil && num > sent {
		// Not published yet, so no machine has run it: another client published this. The
		// stream keeps one message per subject, so it would shut out the batch's own: remove it.
		c.cfg.Logger.Warn("jetstream: removing a result for a batch this run has not sent", "queue", c.cfg.Queue, "subject", subject)
		if meta, err := msg.Metadata(); err == nil {
			if err := c.s.results.DeleteMsg(c.ctx, meta.Sequence.Stream); err != nil {
				c.cfg.Logger.Error("jetstream: could not remove a result for a batch not sent", "subject", subject, "err", err)
			}
		}
		return
	}
	if b == nil {
		return // settled already (a result seen again after a reconnect)
	}
	if us, err := strconv.ParseUint(msg.Headers().Get(headerTook), 10, 32); err == nil {
		c.sizer.learn(time.Duration(us) * time.Microsecond)
		c.wakeFlusher()
	}
	outcomes, err := c.outcomes(msg, b)
	if err != nil {
		c.failBatch(b, err)
		return
	}
	reports := parseCounts(msg.Headers().Get(headerReports), len(outcomes))
	machine := msg.Headers().Get(headerWorker)
	for i, env := range outcomes {
		c.mu.Lock()
		p := c.pending[env.ID]
		c.mu.Unlock()
		if p == nil || p.batch != b {
			continue // settled, or not this batch's: ignored
		}
		result, err := c.outcome(env, p, subject, machine, int(delivery))
		c.finish(env.ID, p, delivery, reports[i], func() { p.done(result, err) })
	}
}

// outcomes opens a message of batch b's outcomes: sealed to the run for b's bytes, a batch of
// results and errors.
func (c *Client) outcomes(msg natsjs.Msg, b *batch) ([]channel.Message, error) {
	subject := msg.Subject()
	data, err := c.unseal(msg, b)
	if err != nil {
		c.cfg.Logger.Warn("jetstream: a result not for this run's task", "queue", c.cfg.Queue, "subject", subject, "machine", msg.Headers().Get(headerWorker), "err", err)
		return nil, fmt.Errorf("result %s: %w: %v", subject, ErrForged, err)
	}
	outcomes, err := channel.ParseBatch(data)
	if err != nil {
		c.s.deadLetter(c.ctx, data, subject, "malformed result: "+err.Error())
		return nil, fmt.Errorf("result %s: %w", subject, err)
	}
	return outcomes, nil
}

// failBatch settles every task of b not yet settled with err: its outcomes were forged, or
// malformed, and the real ones will not come.
func (c *Client) failBatch(b *batch, err error) {
	for _, id := range b.ids {
		c.mu.Lock()
		p := c.pending[id]
		if p == nil || p.batch != b {
			c.mu.Unlock()
			continue
		}
		c.take(id)
		c.mu.Unlock()
		p.done(nil, &TaskError{Queue: c.cfg.Queue, ID: id, Handler: p.handler, Err: err})
	}
}

// outcome reads task p's outcome: its result, or the error it stands for.
func (c *Client) outcome(env channel.Message, p *pendingTask, subject, machine string, deliveries int) (msgpack.RawMessage, error) {
	te := &TaskError{Queue: c.cfg.Queue, ID: env.ID, Handler: p.handler, Machine: machine, Deliveries: deliveries}
	switch {
	case env.Kind == channel.KindResult:
		return env.Payload, nil
	case env.Kind == channel.KindError && env.Err != nil:
		te.Err = env.Err
	default:
		te.Err = fmt.Errorf("result %s: a %s message, not a result or an error", subject, env.Kind)
		c.s.deadLetter(c.ctx, channel.AppendMessage(nil, env), subject, "malformed result: "+te.Err.Error())
	}
	return nil, te
}

// unseal opens a message sealed to the run and checks that it was sealed for batch b's bytes.
func (c *Client) unseal(msg natsjs.Msg, b *batch) ([]byte, error) {
	by := msg.Headers().Get(headerSealedBy)
	if by == "" {
		return nil, errors.New("it is not sealed")
	}
	peer, err := parseKey(by)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", headerSealedBy, err)
	}
	digest, env, err := c.keys.open(peer, msg.Data())
	if err != nil {
		return nil, err
	}
	if digest != b.digest {
		return nil, errors.New("it was sealed for tasks with other bytes than this run's")
	}
	return env, nil
}

// parseCounts reads a header of n counts, separated by commas; an empty or malformed one is n
// zeros (a count too low only means an outcome does not wait for a report).
func parseCounts(h string, n int) []int {
	counts := make([]int, n)
	if h == "" {
		return counts
	}
	for i, f := range strings.SplitN(h, ",", n) {
		v, err := strconv.Atoi(f)
		if err != nil || v < 0 {
			return make([]int, n)
		}
		counts[i] = v
	}
	return counts
}
