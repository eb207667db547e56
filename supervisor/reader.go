package supervisor

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/supervise-dev/supervise/channel"
	"github.com/vmihailenco/msgpack/v5"
)

// read handles frames from the worker until its stdout ends or it breaks the protocol.
func (w *worker) read(conn *channel.Conn) error {
	for {
		msgs, err := conn.Recv()
		if err != nil {
			return err
		}
		now := w.p.clock.now()
		w.lastSeen.Store(now.UnixNano())
		if (!w.answeredAny.Load() || w.p.streak.Load() != 0) && answers(msgs) {
			w.answeredAny.Store(true) // it works: a death under a call is the call's doing
			w.p.streak.Store(0)       // the pool makes progress: see RestartPolicy
		}
		for i := range msgs {
			m := &msgs[i]
			switch m.Kind {
			case channel.KindResult, channel.KindError:
				if m.ID == 0 && m.Kind == channel.KindError {
					w.log.Error("supervise: worker reports an error", "err", m.Err)
					continue
				}
				t, timedOut, closing := w.answered(m.ID, now)
				if t == nil { // a duplicate, or a late answer to a call it was killed for
					w.stray(m)
					continue
				}
				var remote error
				if m.Kind == channel.KindError {
					remote = m.Err
					if m.Err == nil {
						remote = &RemoteError{Type: "error", Message: "the worker reported an error without details"}
					}
				}
				w.settleAnswer(t, timedOut, closing, m.Payload, remote)
			case channel.KindPut, channel.KindReport:
				t := w.holding(m.ID)
				if t == nil || t.settled.Load() {
					w.stray(m)
					continue
				}
				switch {
				case m.Kind == channel.KindReport && (t.queue != nil || t.gather != nil):
					t.badReport = true // a queue's results carry no reports: refused, not dropped (a chunk's inputs go again alone)
				case m.Kind == channel.KindReport:
					if _, ok := t.reports.Add(m.Payload, w.p.cfg.MaxReportBytes); !ok {
						w.overflow(t, len(m.Payload))
					}
				case t.gather != nil:
					t.gather.put(w, t, m.Payload)
				case t.queue != nil:
					if t.puts++; t.queue.cfg.MaxFollowUps > 0 && t.puts > t.queue.cfg.MaxFollowUps {
						err := &FollowUpOverflowError{TaskID: t.id, Limit: t.queue.cfg.MaxFollowUps}
						t.fail(w, err)
						w.terminate(err.Error(), err) // it may go on putting
						continue
					}
					t.queue.followUp(t, m.Payload)
				case t.putTo != nil:
					t.putTo(m.Payload)
				case t.chunk > 0: // only the input that put fails; an unreadable put fails the chunk's inputs that ran
					if k, _, err := channel.ParseChunkPut(m.Payload, t.chunk); err == nil {
						t.badPuts = append(t.badPuts, k)
					} else {
						t.badPut = true
					}
				default:
					t.badPut = true
				}
			case channel.KindHello:
				return errors.New("a second hello")
			case channel.KindLog:
				var rec map[string]any
				if channel.Unmarshal(m.Payload, &rec) == nil {
					msg, _ := rec["msg"].(string)
					w.log.Info(msg, "record", rec)
				}
			}
		}
	}
}

// answered removes task id from those held and frees its slot. timedOut and closing report
// that the task was cancelled for its time limit or by Shutdown.
func (w *worker) answered(id uint64, now time.Time) (t *task, timedOut, closing bool) {
	w.mu.Lock()
	t = w.ledger.answer(id, now)
	if w.ledger.len() == 0 && len(w.pinned) == 0 {
		w.setIdle(true)
	}
	if t != nil {
		timedOut, closing = t.timedOut, t.closing
		took := now.Sub(t.runningSince)
		t.took.Store(int64(took))
		w.slowest = keepSlowest(w.slowest, TaskTiming{ID: t.id, Handler: t.handler, WorkerID: w.id, Took: took})
	}
	started := w.ledger.takeStarted()
	w.mu.Unlock()
	recordStarts(started, now)
	select {
	case w.room <- struct{}{}:
	default:
	}
	return t, timedOut, closing
}

// settleAnswer settles t with its worker's answer: result, or the error remote. timedOut and
// closing say why it was cancelled, if it was (see answered).
func (w *worker) settleAnswer(t *task, timedOut, closing bool, result msgpack.RawMessage, remote error) {
	if t.chunk > 0 {
		t.answerer = w // before settle, which wakes whoever reads its inputs' outcomes
	}
	if remote == nil {
		w.callsDone.Add(1)
	}
	switch {
	case t.badPut && t.chunk > 0:
		t.record = &channel.ChunkRecord{Started: t.chunk} // its inputs ran: none goes again
		t.fail(w, fmt.Errorf("%w: a put during chunk call %d names no input of it", ErrNotInQueue, t.id))
	case t.badPut:
		t.fail(w, errNotInQueue)
	case t.badReport:
		t.fail(w, ErrQueueReport)
	case t.gather != nil && t.gather.failing() != nil:
		// Its follow-ups broke a rule and were dropped: the inputs that ran fail with why
		// (none may run twice); those the worker did not reach go again.
		rec := &channel.ChunkRecord{Started: t.chunk}
		if outs, err := channel.ParseChunkOutcomes(result, t.chunk); err == nil && remote == nil {
			rec.Started = len(outs)
		}
		t.record = rec
		t.fail(w, t.gather.failing())
	case remote == nil && t.chunk > 0: // its inputs are counted one by one (chunkEnded)
		t.settle(result, nil)
	case remote == nil:
		w.tasksDone.Add(1) // counted before settle wakes the caller, who may read Stats next
		if !t.settle(result, nil) {
			w.tasksDone.Add(-1)
		}
	case timedOut: // the handler gave up when cancelled for its time limit
		t.fail(w, &TimeoutError{Limit: w.p.cfg.TaskTimeout, Cause: remote})
	case closing:
		t.fail(w, fmt.Errorf("%w: cancelled by Shutdown: %w", ErrPoolClosed, remote))
	case t.ctx.Err() != nil && isCanceled(remote): // the handler gave up when its context ended
		t.fail(w, fmt.Errorf("%w: %w", context.Cause(t.ctx), remote))
	default:
		t.fail(w, remote)
	}
}

// errNotInQueue fails a call whose handler put a follow-up, from no queue.
var errNotInQueue = fmt.Errorf("%w: the handler put follow-up work, but the task was submitted to the pool", ErrNotInQueue)

// stray logs a message about a task the worker does not hold (a duplicate answer, a report
// after the answer, an answer to a call it was killed for) and otherwise ignores it: failing
// the worker for it would fail the innocent calls it holds. Only the first few are logged.
func (w *worker) stray(m *channel.Message) {
	w.strays++
	switch {
	case w.strays <= 10:
		w.log.Warn("supervise: ignoring a message about a task this worker does not hold", "kind", m.Kind.String(), "task", m.ID)
	case w.strays == 11:
		w.log.Warn("supervise: ignoring more messages about tasks this worker does not hold; not logging them")
	}
}

// overflow fails t, whose caller has not taken its reports as fast as its handler sends them,
// and kills its worker, which sent them.
func (w *worker) overflow(t *task, size int) {
	err := &ReportOverflowError{TaskID: t.id, Held: t.reports.Held(), Report: size, Limit: w.p.cfg.MaxReportBytes}
	t.fail(w, err)
	w.terminate(err.Error(), err)
}

// answers reports whether msgs holds an answer to a call.
func answers(msgs []channel.Message) bool {
	for i := range msgs {
		if k := msgs[i].Kind; (k == channel.KindResult || k == channel.KindError) && msgs[i].ID != 0 {
			return true
		}
	}
	return false
}

// isCanceled reports whether a worker's error says its handler was cancelled (type Canceled,
// docs/protocol.md, section 9).
func isCanceled(err error) bool {
	var re *RemoteError
	return errors.As(err, &re) && re.Type == "Canceled"
}
