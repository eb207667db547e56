package jetstream

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/supervise-dev/supervise/supervisor"
)

// MachineStats is what a worker machine publishes every ServeConfig.StatsInterval, as JSON,
// on supervise.QUEUE.stats.ID (core NATS: nothing is stored): its pool's Stats and its queue's
// depth, for a live view of every machine (supervise serve --ui; WatchMachines).
type MachineStats struct {
	Machine string           `json:"machine"` // host/pid
	ID      string           `json:"id"`      // the subject token of the machine
	Queue   string           `json:"queue"`
	Stats   supervisor.Stats `json:"stats"`
	// Queued is the messages of tasks in the queue's stream (taken or not), DeadLetters its
	// dead letters, as the server counted them; -1 when the machine could not ask.
	Queued      int64         `json:"queued"`
	DeadLetters int64         `json:"deadLetters"`
	Interval    time.Duration `json:"interval"` // until the next
	Gone        bool          `json:"gone"`     // the machine stopped: no more will come
}

// statsSubject is where machine id publishes its MachineStats; id may be "*".
func (c Config) statsSubject(id string) string { return "supervise." + c.Queue + ".stats." + id }

// publishStats publishes the machine's MachineStats every interval until ctx ends, then once
// more, gone. stop waits for it.
func (m *machine) publishStats(ctx context.Context, interval time.Duration) (stop func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				m.publishOnce(context.Background(), interval, true)
				return
			case <-tick.C:
				m.publishOnce(ctx, interval, false)
			}
		}
	}()
	return func() { <-done }
}

func (m *machine) publishOnce(ctx context.Context, interval time.Duration, gone bool) {
	ms := MachineStats{Machine: m.name, ID: m.live.id, Queue: m.cfg.Queue, Stats: m.pool.Stats(), Interval: interval, Gone: gone, Queued: -1, DeadLetters: -1}
	ask, cancel := context.WithTimeout(ctx, interval)
	defer cancel()
	if n, err := m.s.messages(ask, m.cfg.tasksStream()); err == nil {
		ms.Queued = n
	}
	if n, err := m.s.messages(ask, m.cfg.deadStream()); err == nil {
		ms.DeadLetters = n
	}
	body, err := json.Marshal(ms)
	if err != nil {
		return
	}
	if err := m.s.nc.Publish(m.cfg.statsSubject(m.live.id), body); err != nil {
		m.cfg.Logger.Debug("jetstream: publishing the machine's stats", "err", err)
	}
}

// Machines follows the MachineStats of the worker machines of one queue, or of all.
type Machines struct {
	sub *nats.Subscription
	now func() time.Time

	mu   sync.Mutex
	seen map[string]*seenMachine // by subject
}

type seenMachine struct {
	stats MachineStats
	at    time.Time
}

// Bounds on what machines may make a watcher keep.
const (
	maxWatched      = 1024
	maxStatsBytes   = 1 << 20
	goneKeptFor     = 30 * time.Second // a stopped machine stays on the view this long
	minStatsLapse   = 3 * time.Second
	maxStatsLapse   = 3 * time.Minute
	statsLapseTimes = 3 // a machine silent for this many of its intervals is dropped
)

// WatchMachines follows the machines of queue ("" or "*": every queue) on nc until ctx ends.
// It needs to subscribe to supervise.QUEUE.stats.* only. What a machine sends is bounded: a
// message over 1 MiB, or not a MachineStats, is dropped, and at most 1,024 machines are kept.
func WatchMachines(ctx context.Context, nc *nats.Conn, queue string) (*Machines, error) {
	if queue == "" {
		queue = "*"
	}
	w := &Machines{now: time.Now, seen: map[string]*seenMachine{}}
	sub, err := nc.Subscribe(Config{Queue: queue}.statsSubject("*"), w.receive)
	if err != nil {
		return nil, err
	}
	w.sub = sub
	context.AfterFunc(ctx, func() { _ = sub.Unsubscribe() })
	return w, nil
}

func (w *Machines) receive(msg *nats.Msg) {
	if len(msg.Data) > maxStatsBytes {
		return
	}
	var ms MachineStats
	if err := json.Unmarshal(msg.Data, &ms); err != nil {
		return
	}
	// The subject, not the body, says which queue and machine: a machine allowed on one
	// queue cannot speak for another's.
	parts := strings.Split(msg.Subject, ".")
	if len(parts) != 4 {
		return
	}
	ms.Queue, ms.ID = parts[1], parts[3]
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, known := w.seen[msg.Subject]; !known && len(w.seen) >= maxWatched {
		w.expire()
		if len(w.seen) >= maxWatched {
			return
		}
	}
	w.seen[msg.Subject] = &seenMachine{stats: ms, at: w.now()}
}

// expire drops the machines silent too long, and those stopped a while ago (w.mu held).
func (w *Machines) expire() {
	now := w.now()
	for subject, s := range w.seen {
		lapse := min(max(statsLapseTimes*s.stats.Interval, minStatsLapse), maxStatsLapse)
		if s.stats.Gone {
			lapse = goneKeptFor
		}
		if now.Sub(s.at) > lapse {
			delete(w.seen, subject)
		}
	}
}

// List is the last MachineStats of each machine heard from lately.
func (w *Machines) List() []MachineStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.expire()
	out := make([]MachineStats, 0, len(w.seen))
	for _, s := range w.seen {
		out = append(out, s.stats)
	}
	return out
}
