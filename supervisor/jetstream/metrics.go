package jetstream

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// queueCollector gives a queue's depth and dead letters at each scrape (ServeConfig.Metrics),
// as the server counts them: what waits in the tasks stream (delivered or not), and the dead
// letters kept.
type queueCollector struct{ s *streams }

var (
	descQueued = prometheus.NewDesc("supervise_queue_messages", "Messages of tasks (a task, or a batch) in the queue's stream, taken or not.", []string{"queue"}, nil)
	descDead   = prometheus.NewDesc("supervise_queue_dead_letters", "Messages on the queue's dead-letter subject, kept 7 days.", []string{"queue"}, nil)
)

func (c queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descQueued
	ch <- descDead
}

func (c queueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for desc, name := range map[*prometheus.Desc]string{descQueued: c.s.cfg.tasksStream(), descDead: c.s.cfg.deadStream()} {
		n, err := c.s.messages(ctx, name)
		if err != nil {
			ch <- prometheus.NewInvalidMetric(desc, err)
			continue
		}
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, float64(n), c.s.cfg.Queue)
	}
}

// messages is how many messages stream name holds, as the server counts them: for the tasks
// stream, the queue's depth (taken or not); for the dead-letter stream, its dead letters.
func (s *streams) messages(ctx context.Context, name string) (int64, error) {
	st, err := s.js.Stream(ctx, name)
	if err != nil {
		return 0, err
	}
	return int64(st.CachedInfo().State.Msgs), nil
}
