package jetstream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
)

// streams are a queue's three streams on a server, created if missing:
//   - tasks: a work queue (a task is removed once acked), read by the durable pull consumer
//     "workers" that every worker machine shares;
//   - results: one message per task id at most (a second one for the same subject is refused,
//     so a task run twice is recorded once), kept ResultTTL;
//   - dead: messages no worker could take (malformed, oversized), kept 7 days for a person
//     to look at.
type streams struct {
	cfg     Config
	nc      *nats.Conn
	js      natsjs.JetStream
	tasks   natsjs.Stream
	results natsjs.Stream
	limit   int // the largest message the server takes
}

func openStreams(ctx context.Context, nc *nats.Conn, cfg Config) (*streams, error) {
	js, err := natsjs.New(nc)
	if err != nil {
		return nil, err
	}
	s := &streams{cfg: cfg, nc: nc, js: js, limit: int(nc.MaxPayload())}
	s.tasks, err = ensureStream(ctx, js, natsjs.StreamConfig{
		Name:        cfg.tasksStream(),
		Description: "supervise: the tasks of queue " + cfg.Queue,
		Subjects:    []string{cfg.tasksSubject()},
		Retention:   natsjs.WorkQueuePolicy,
		Storage:     natsjs.FileStorage,
		Duplicates:  2 * time.Minute, // a publish retried after a lost ack is stored once
	})
	if err != nil {
		return nil, fmt.Errorf("creating stream %s on %s: %w", cfg.tasksStream(), nc.ConnectedUrlRedacted(), err)
	}
	s.results, err = ensureStream(ctx, js, natsjs.StreamConfig{
		Name:                 cfg.resultsStream(),
		Description:          "supervise: the results of queue " + cfg.Queue + ", one per task",
		Subjects:             []string{"supervise." + cfg.Queue + ".results.>"},
		Storage:              natsjs.FileStorage,
		MaxAge:               cfg.ResultTTL,
		MaxMsgsPerSubject:    1,
		Discard:              natsjs.DiscardNew,
		DiscardNewPerSubject: true,
		Duplicates:           2 * time.Minute,
	})
	if err != nil {
		return nil, fmt.Errorf("creating stream %s on %s: %w", cfg.resultsStream(), nc.ConnectedUrlRedacted(), err)
	}
	_, err = ensureStream(ctx, js, natsjs.StreamConfig{
		Name:        cfg.deadStream(),
		Description: "supervise: messages of queue " + cfg.Queue + " that no worker could take",
		Subjects:    []string{cfg.deadSubject()},
		Storage:     natsjs.FileStorage,
		MaxAge:      7 * 24 * time.Hour,
		Duplicates:  2 * time.Minute, // a task's dead letter, written again by a redelivery, is kept once
	})
	if err != nil {
		return nil, fmt.Errorf("creating stream %s on %s: %w", cfg.deadStream(), nc.ConnectedUrlRedacted(), err)
	}
	return s, nil
}

// ensureStream creates a stream as cfg says if it is missing, and updates it only if it is
// configured otherwise. Every client and machine opens the streams as it starts, and an
// update each time is a write the server need not do: NATS 2.9.10 was seen to crash on
// stream updates beside one another (a nil dereference in updateWithAdvisory, under load).
// A create with the configuration a stream already has succeeds and changes nothing; one
// beside another's create of the same stream may fail (2.9.10: "subjects overlap"), and
// then the stream is read, again after a moment if it is not there yet.
func ensureStream(ctx context.Context, js natsjs.JetStream, cfg natsjs.StreamConfig) (natsjs.Stream, error) {
	for attempt := 1; ; attempt++ {
		s, err := js.CreateStream(ctx, cfg)
		if err == nil {
			return s, nil
		}
		if s, gerr := js.Stream(ctx, cfg.Name); gerr == nil {
			if sameStream(s.CachedInfo().Config, cfg) {
				return s, nil
			}
			return js.UpdateStream(ctx, cfg)
		}
		if attempt == 3 {
			return nil, err
		}
		select { // another's create under way: a moment for it to finish
		case <-time.After(time.Duration(attempt) * 100 * time.Millisecond):
		case <-ctx.Done():
			return nil, err
		}
	}
}

// sameStream reports whether stream configuration has what want sets (a MaxMsgsPerSubject
// not set reads back as -1, no limit; a Duplicates not set, as the server's default).
func sameStream(has, want natsjs.StreamConfig) bool {
	return slices.Equal(has.Subjects, want.Subjects) && has.Description == want.Description &&
		has.Retention == want.Retention && has.Storage == want.Storage && (has.Duplicates == want.Duplicates || want.Duplicates == 0) &&
		has.MaxAge == want.MaxAge && (has.MaxMsgsPerSubject == want.MaxMsgsPerSubject || want.MaxMsgsPerSubject == 0 && has.MaxMsgsPerSubject < 0) &&
		has.Discard == want.Discard && has.DiscardNewPerSubject == want.DiscardNewPerSubject
}

// consumer returns the workers' durable pull consumer, created if missing, updated only if
// it is configured otherwise (as ensureStream does streams).
func (s *streams) consumer(ctx context.Context) (natsjs.Consumer, error) {
	cfg := natsjs.ConsumerConfig{
		Durable:       consumerName,
		Description:   "supervise: the worker machines of queue " + s.cfg.Queue,
		AckPolicy:     natsjs.AckExplicitPolicy,
		AckWait:       s.cfg.AckWait,
		MaxDeliver:    s.cfg.MaxDeliver,
		MaxAckPending: -1,
	}
	c, err := s.tasks.CreateConsumer(ctx, cfg)
	if errors.Is(err, natsjs.ErrConsumerExists) {
		c, err = s.tasks.UpdateConsumer(ctx, cfg)
	}
	if err != nil {
		return nil, fmt.Errorf("creating consumer %s on stream %s: %w", consumerName, s.cfg.tasksStream(), err)
	}
	return c, nil
}

// recorded reports whether the result of a task is already stored.
func (s *streams) recorded(ctx context.Context, subject string) bool {
	_, err := s.results.GetLastMsgForSubject(ctx, subject)
	return err == nil
}

// storeResult stores a task's outcome under its subject, once: a result stored already by an
// earlier run of the task is success too.
func (s *streams) storeResult(ctx context.Context, msg *nats.Msg) error {
	_, err := s.js.PublishMsg(ctx, msg, natsjs.WithMsgID(msg.Subject))
	var apiErr *natsjs.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeStoreFailed && strings.Contains(apiErr.Description, "maximum messages per subject") {
		return nil // a result is there already: this run of the task is the extra one
	}
	return err
}

// errCodeStoreFailed is JetStream's error code for a message the stream refused to store
// (JSStreamStoreFailedF); with DiscardNewPerSubject it says the subject has its message.
const errCodeStoreFailed = 10077

// deadLetter puts data on the dead-letter subject, saying why and where it came from.
func (s *streams) deadLetter(ctx context.Context, data []byte, from, reason string) {
	msg := nats.NewMsg(s.cfg.deadSubject())
	msg.Header.Set(headerReason, reason)
	msg.Header.Set(headerFrom, from)
	// The same dead letter from another delivery of the task (one whose first delivery outran
	// its ack wait on a slow server, say) has the same id, and the server keeps one.
	where, _, _ := strings.Cut(from, " (delivery ")
	msg.Header.Set(nats.MsgIdHdr, where+": "+reason)
	if len(data) > s.limit-headerRoom {
		data = data[:max(0, s.limit-headerRoom)]
		msg.Header.Set("Supervise-Truncated", "true")
	}
	msg.Data = data
	// A busy server may take longer than a publish waits: again, three times in all (the
	// message id keeps one copy).
	var err error
	for attempt := 0; attempt < 3 && ctx.Err() == nil; attempt++ {
		if _, err = s.js.PublishMsg(ctx, msg); err == nil || !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrTimeout) {
			break
		}
	}
	if err != nil {
		s.cfg.Logger.Error("jetstream: could not write a dead letter", "queue", s.cfg.Queue, "reason", reason, "from", from, "err", err)
		return
	}
	s.cfg.Logger.Warn("jetstream: dead letter", "queue", s.cfg.Queue, "subject", s.cfg.deadSubject(), "reason", reason, "from", from)
}
