package jetstream

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/vmihailenco/msgpack/v5"
)

// liveness lets a machine's tasks go on elsewhere within seconds of its death, not after
// AckWait: every machine says every Heartbeat that it is alive and which deliveries it holds
// (their ack subjects), on supervise.QUEUE.machines.ID, kept by a stream (the last message of
// each machine) so that a machine started after another died still learns of it. When one
// falls silent for three heartbeats, the live machine with the lowest id hands its deliveries
// back (a NAK on each ack subject), and the server delivers them again at once.
//
// A NAK is sent only while the silence is under AckWait/2: past that, the server may have
// delivered the task again, and a NAK on an old delivery would reach the new one.
type liveness struct {
	m     *machine
	id    string // the subject token of this machine
	every time.Duration
	now   func() time.Time

	mu    sync.Mutex
	held  map[string]bool // this machine's deliveries, by ack subject
	peers map[string]*peer

	// changed says a delivery was taken since the last heartbeat: the beat goes out at once,
	// not at the next tick. With short tasks the deliveries a machine holds change within a
	// second; a heartbeat a second old named deliveries long acked, and the ones a dead
	// machine really held waited for AckWait.
	changed chan struct{}
}

// peer is another machine, as its last heartbeat said.
type peer struct {
	name string
	seen time.Time
	held []string
	gone bool
}

// beat is a heartbeat's body.
type beat struct {
	Name string   `msgpack:"n"` // host/pid, for people
	Held []string `msgpack:"h"` // ack subjects
	Gone bool     `msgpack:"g"` // stopped: nothing to hand back
}

// Bounds on what other machines may make this one keep.
const (
	maxPeers     = 1024
	maxBeatBytes = 64 << 10 // some 500 deliveries: 64 MiB at most in all
)

func newLiveness(m *machine, every time.Duration) *liveness {
	return &liveness{m: m, id: nuid.Next(), every: every, now: time.Now, held: map[string]bool{}, peers: map[string]*peer{},
		changed: make(chan struct{}, 1)}
}

func (l *liveness) lapse() time.Duration { return 3 * l.every }

// start follows the heartbeats of the queue's machines (the last of each, then the new ones)
// and beats until ctx ends, then says it is gone. stop waits for it.
func (l *liveness) start(ctx context.Context) (stop func(), err error) {
	cfg := l.m.cfg
	s, err := ensureStream(ctx, l.m.s.js, natsjs.StreamConfig{
		Name:              cfg.machinesStream(),
		Description:       "supervise: the worker machines of queue " + cfg.Queue + ", each one's last heartbeat",
		Subjects:          []string{cfg.machinesSubject("*")},
		Storage:           natsjs.MemoryStorage,
		MaxMsgsPerSubject: 1,
		MaxAge:            10 * time.Minute,
	})
	if err != nil {
		return nil, fmt.Errorf("creating stream %s: %w", cfg.machinesStream(), err)
	}
	cons, err := s.OrderedConsumer(ctx, natsjs.OrderedConsumerConfig{
		FilterSubjects: []string{cfg.machinesSubject("*")}, // which last-per-subject needs (NATS 2.9)
		DeliverPolicy:  natsjs.DeliverLastPerSubjectPolicy,
	})
	if err != nil {
		return nil, err
	}
	cc, err := cons.Consume(l.heard)
	if err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		beat, look := time.NewTicker(l.every), time.NewTicker(l.every/4)
		defer beat.Stop()
		defer look.Stop()
		for l.publish(false); ; {
			select {
			case <-ctx.Done():
				return
			case <-beat.C:
				l.publish(false)
			case <-l.changed: // bursts of holds coalesce into one beat
				l.publish(false)
			case <-look.C:
				l.reap()
			}
		}
	}()
	return func() { <-done; l.publish(true); cc.Stop() }, nil
}

// hold and release keep the list of deliveries this machine holds. A delivery taken is
// announced at once (changed); one let go waits for the next beat (a NAK on a delivery acked
// already does nothing).
func (l *liveness) hold(reply string) {
	l.mu.Lock()
	l.held[reply] = true
	l.mu.Unlock()
	select {
	case l.changed <- struct{}{}:
	default:
	}
}

func (l *liveness) release(reply string) {
	l.mu.Lock()
	delete(l.held, reply)
	l.mu.Unlock()
}

func (l *liveness) publish(gone bool) {
	l.mu.Lock()
	b := beat{Name: l.m.name, Gone: gone}
	if !gone {
		for r := range l.held {
			b.Held = append(b.Held, r)
		}
	}
	l.mu.Unlock()
	data, err := msgpack.Marshal(b)
	if err == nil {
		err = l.m.s.nc.Publish(l.m.cfg.machinesSubject(l.id), data)
	}
	if err != nil {
		l.m.cfg.Logger.Warn("jetstream: heartbeat", "queue", l.m.cfg.Queue, "err", err)
	}
}

// heard takes another machine's heartbeat. A heartbeat older than the lapse (the last of a
// machine, replayed) counts from when the server stored it; a recent one from now, so that a
// clock a little off the server's does not make machines look dead.
func (l *liveness) heard(msg natsjs.Msg) {
	id := msg.Subject()[strings.LastIndexByte(msg.Subject(), '.')+1:]
	meta, err := msg.Metadata()
	if id == l.id || err != nil || len(msg.Data()) > maxBeatBytes {
		return
	}
	var b beat
	if msgpack.Unmarshal(msg.Data(), &b) != nil {
		return
	}
	prefix := "$JS.ACK." + l.m.cfg.tasksStream() + "." + consumerName + "."
	b.Held = slices.DeleteFunc(b.Held, func(r string) bool { return !strings.HasPrefix(r, prefix) })
	now := l.now()
	seen := now
	if now.Sub(meta.Timestamp) > l.lapse() {
		seen = meta.Timestamp
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.peers[id]; !ok && len(l.peers) >= maxPeers {
		return
	}
	l.peers[id] = &peer{name: b.Name, seen: seen, held: b.Held, gone: b.Gone}
}

// reap hands back the deliveries of machines silent for the lapse, if this machine is the
// live one with the lowest id, and forgets machines gone or silent.
func (l *liveness) reap() {
	l.mu.Lock()
	now := l.now()
	leader := true
	var dead []*peer
	for id, p := range l.peers {
		silent := now.Sub(p.seen)
		switch {
		case p.gone || silent > l.m.cfg.AckWait:
			delete(l.peers, id)
		case silent > l.lapse():
			if silent < l.m.cfg.AckWait/2 && len(p.held) > 0 {
				dead = append(dead, p)
			}
			delete(l.peers, id)
		case id < l.id:
			leader = false
		}
	}
	l.mu.Unlock()
	if !leader {
		return
	}
	for _, p := range dead {
		l.m.cfg.Logger.Warn("jetstream: a machine fell silent: handing back its tasks", "queue", l.m.cfg.Queue, "machine", p.name, "tasks", len(p.held))
		for _, r := range p.held {
			_ = l.m.s.nc.Publish(r, []byte("-NAK"))
		}
	}
}
