package supervisor

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The pool's Prometheus metrics (Config.Metrics), named after Prometheus' conventions and
// listed in docs/metrics.md. Counters of tasks are kept as tasks go; the figures of Stats
// (workers, cores, CPU, memory) are read when the registry is scraped. Without
// Config.Metrics none of this runs: a task costs one nil check.
type poolMetrics struct {
	submitted, started, succeeded *prometheus.CounterVec // by handler
	failed                        *prometheus.CounterVec // by handler and kind
	duration, wait                *prometheus.HistogramVec
	kills                         *prometheus.CounterVec // by reason
	registered                    []prometheus.Collector
}

func newPoolMetrics(reg prometheus.Registerer, p *Pool) (*poolMetrics, error) {
	handler := []string{"handler"}
	m := &poolMetrics{
		submitted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "supervise_tasks_submitted_total",
			Help: "Tasks submitted to the pool."}, handler),
		started: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "supervise_tasks_started_total",
			Help: "Times a worker started a task's handler (a task retried on another worker starts again)."}, handler),
		succeeded: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "supervise_tasks_succeeded_total",
			Help: "Tasks that ended with a result."}, handler),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "supervise_tasks_failed_total",
			Help: "Tasks that ended with an error, by kind: timeout, memory, hung, died, cancelled, too-large, closed, follow-ups, the handler's error type (error-TYPE), other."},
			[]string{"handler", "kind"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "supervise_task_duration_seconds",
			Help: "How long a task's handler ran, from its start on a worker to its answer.", Buckets: prometheus.ExponentialBuckets(0.0001, 4, 12)}, handler),
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "supervise_task_queue_wait_seconds",
			Help: "How long a task waited, from its submission to its first start on a worker.", Buckets: prometheus.ExponentialBuckets(0.0001, 4, 12)}, handler),
		kills: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "supervise_worker_kills_total",
			Help: "Workers the pool killed, by reason: timeout, memory, hung, protocol, reports, follow-ups, other."}, []string{"reason"}),
	}
	for _, c := range []prometheus.Collector{m.submitted, m.started, m.succeeded, m.failed, m.duration, m.wait, m.kills, statsCollector{p}} {
		if err := reg.Register(c); err != nil {
			m.unregister(reg)
			return nil, fmt.Errorf("Config.Metrics: %w", err)
		}
		m.registered = append(m.registered, c)
	}
	return m, nil
}

// unregister takes the metrics out of reg again: a Start that fails leaves the registry as it
// found it, so that a Start with the same registry can follow.
func (m *poolMetrics) unregister(reg prometheus.Registerer) {
	for _, c := range m.registered {
		reg.Unregister(c)
	}
	m.registered = nil
}

// submit counts a task submitted; the task remembers when, for its queue wait.
func (m *poolMetrics) submit(t *task) {
	m.submitted.WithLabelValues(t.handler).Add(float64(max(1, t.chunk))) // a chunk's inputs count one by one
	t.submitted = time.Now()
}

// start counts a start of t's handler at now. A chunk's inputs are counted as they turn out
// to have started, when it ends (inputsStarted).
func (m *poolMetrics) start(t *task, now time.Time) {
	if t.chunk == 0 {
		m.started.WithLabelValues(t.handler).Inc()
	}
	if t.starts.Load() == 1 && !t.submitted.IsZero() {
		m.wait.WithLabelValues(t.handler).Observe(now.Sub(t.submitted).Seconds())
	}
}

// settle counts t's outcome; kind is its failure's (failures.count), if it failed.
func (m *poolMetrics) settle(t *task, err error, kind string) {
	if took := t.took.Load(); took > 0 {
		m.duration.WithLabelValues(t.handler).Observe(time.Duration(took).Seconds())
	}
	if err == nil {
		m.succeeded.WithLabelValues(t.handler).Inc()
		return
	}
	m.failed.WithLabelValues(t.handler, kind).Inc()
}

// input counts the outcome of one input of a chunk call; kind is its failure's.
func (m *poolMetrics) input(handler string, err error, kind string) {
	if err == nil {
		m.succeeded.WithLabelValues(handler).Inc()
		return
	}
	m.failed.WithLabelValues(handler, kind).Inc()
}

// inputsStarted counts n inputs of a chunk of handler's that started.
func (m *poolMetrics) inputsStarted(handler string, n int) {
	m.started.WithLabelValues(handler).Add(float64(n))
}

// kill counts a worker killed.
func (m *poolMetrics) kill(e EventWorkerKilled) {
	reason, err := "other", e.Err
	switch {
	case errors.Is(err, ErrTimeout):
		reason = "timeout"
	case errors.Is(err, ErrMemoryLimit):
		reason = "memory"
	case errors.Is(err, ErrHung):
		reason = "hung"
	case errors.Is(err, ErrReportOverflow):
		reason = "reports"
	case errors.Is(err, ErrFollowUpOverflow):
		reason = "follow-ups"
	case strings.HasPrefix(e.Reason, "protocol error"):
		reason = "protocol"
	}
	m.kills.WithLabelValues(reason).Inc()
}

// statsCollector gives the figures of Stats at each scrape.
type statsCollector struct{ p *Pool }

var (
	descWorkers  = prometheus.NewDesc("supervise_workers", "Worker slots by the state of their process.", []string{"state"}, nil)
	descRestarts = prometheus.NewDesc("supervise_worker_restarts_total", "Processes that took a worker slot after its first.", []string{"slot"}, nil)
	descCPU      = prometheus.NewDesc("supervise_worker_cpu_seconds_total", "CPU time (user and system) of a slot's workers and their descendants.", []string{"slot"}, nil)
	descRSS      = prometheus.NewDesc("supervise_worker_resident_memory_bytes", "Resident memory of a slot's worker and its descendants, now.", []string{"slot"}, nil)
	descBytesIn  = prometheus.NewDesc("supervise_worker_received_bytes_total", "Bytes of frames the pool read from a slot's workers' stdout.", []string{"slot"}, nil)
	descBytesOut = prometheus.NewDesc("supervise_worker_sent_bytes_total", "Bytes of frames the pool wrote to a slot's workers' stdin.", []string{"slot"}, nil)
	descCore     = prometheus.NewDesc("supervise_core_utilization_ratio", "Share of the last sampling interval a logical CPU was busy (not idle).", []string{"core"}, nil)
)

func (c statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descWorkers, descRestarts, descCPU, descRSS, descBytesIn, descBytesOut, descCore} {
		ch <- d
	}
}

func (c statsCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.p.Stats()
	states := map[WorkerState]int{WorkerIdle: 0, WorkerBusy: 0, WorkerStopping: 0, WorkerDown: 0}
	for _, w := range st.Workers {
		states[w.State]++
		slot := strconv.Itoa(w.Slot)
		ch <- prometheus.MustNewConstMetric(descRestarts, prometheus.CounterValue, float64(w.Restarts), slot)
		ch <- prometheus.MustNewConstMetric(descCPU, prometheus.CounterValue, w.CPU.Seconds(), slot)
		ch <- prometheus.MustNewConstMetric(descRSS, prometheus.GaugeValue, float64(w.RSS), slot)
		ch <- prometheus.MustNewConstMetric(descBytesIn, prometheus.CounterValue, float64(w.BytesIn), slot)
		ch <- prometheus.MustNewConstMetric(descBytesOut, prometheus.CounterValue, float64(w.BytesOut), slot)
	}
	for state, n := range states {
		ch <- prometheus.MustNewConstMetric(descWorkers, prometheus.GaugeValue, float64(n), string(state))
	}
	for i, core := range st.Cores {
		ch <- prometheus.MustNewConstMetric(descCore, prometheus.GaugeValue, core.Busy(), strconv.Itoa(i))
	}
}
