package supervisor_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/supervise-dev/supervise/supervisor"
)

// scrape reads a metrics endpoint as Prometheus would.
func scrape(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s, %v", url, resp.Status, err)
	}
	return body
}

// value is the sample of metric name with labels (name=value pairs) in a scrape; -1 if none.
// A histogram's is its count of observations; name_sum gives their sum.
func value(t *testing.T, body []byte, name string, labels ...string) float64 {
	t.Helper()
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	base, sum := strings.CutSuffix(name, "_sum")
	f := families[name]
	if f == nil && sum {
		f = families[base]
	}
	if f == nil {
		return -1
	}
next:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(labels); i += 2 {
			if label(m, labels[i]) != labels[i+1] {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil && sum:
			return m.Histogram.GetSampleSum()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return -1
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.Label {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// A pool with Config.Metrics counts what happened to its tasks, by handler and by the kind
// of failure, and its kills by reason, and a scrape of it passes Prometheus' lint (and
// promtool check metrics, where Debian's prometheus package is installed).
func TestMetricsCountWhatHappened(t *testing.T) {
	reg := prometheus.NewRegistry()
	p, logs := startPool(t, supervisor.Config{Workers: 2, Metrics: reg, StatsInterval: 50 * time.Millisecond,
		TaskTimeout: 500 * time.Millisecond, CancelGrace: 200 * time.Millisecond})
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	ctx := context.Background()

	echo := supervisor.Bind[[]byte, []byte](p, "echo")
	for range 5 {
		if _, err := echo.Submit(ctx, []byte("hi")).Get(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := supervisor.Bind[string, int](p, "fail").Submit(ctx, "no").Get(ctx); err == nil {
		t.Fatal("fail did not fail")
	}
	if _, err := supervisor.Bind[string, int](p, "panic").Submit(ctx, "boom").Get(ctx); !errors.Is(err, supervisor.ErrPanic) {
		t.Fatalf("panic: %v", err)
	}
	// deaf ignores its context: its time limit ends in a kill.
	if _, err := supervisor.Bind[int, int](p, "deaf").Submit(ctx, 5000).Get(ctx); !errors.Is(err, supervisor.ErrTimeout) {
		t.Fatalf("deaf: %v, want ErrTimeout", err)
	}
	marker := filepath.Join(t.TempDir(), "crashed")
	if _, err := supervisor.Bind[string, string](p, "crashonce").Submit(ctx, marker).Get(ctx); !errors.Is(err, supervisor.ErrWorkerDied) {
		t.Fatalf("crashonce: %v, want ErrWorkerDied", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := supervisor.Bind[int, int](p, "sleep").Submit(cancelled, 10).Get(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("sleep, cancelled: %v", err)
	}

	// Both workers are replaced (the killed one, the crashed one): 4 started in all.
	for i, k := -1, 0; k < 4; k++ {
		i = logs.WaitFor(t, i+1, "worker started", func(e supervisor.Event) bool {
			_, ok := e.(supervisor.EventWorkerStarted)
			return ok
		})
	}
	// The figures of Stats are the pool's latest sample, one StatsInterval old at most: the
	// scrapes poll (nothing signals a sample) until the replacements are in one.
	body := scrape(t, srv.URL)
	restarts := func() float64 {
		return value(t, body, "supervise_worker_restarts_total", "slot", "0") + value(t, body, "supervise_worker_restarts_total", "slot", "1")
	}
	for deadline := time.Now().Add(time.Minute); restarts() != 2 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		body = scrape(t, srv.URL)
	}
	for _, c := range []struct {
		want   float64
		name   string
		labels []string
	}{
		{5, "supervise_tasks_submitted_total", []string{"handler", "echo"}},
		{5, "supervise_tasks_succeeded_total", []string{"handler", "echo"}},
		{5, "supervise_tasks_started_total", []string{"handler", "echo"}},
		{5, "supervise_task_duration_seconds", []string{"handler", "echo"}},
		{5, "supervise_task_queue_wait_seconds", []string{"handler", "echo"}},
		{1, "supervise_tasks_failed_total", []string{"handler", "fail", "kind", "error-error"}},
		{1, "supervise_tasks_failed_total", []string{"handler", "panic", "kind", "error-panic"}},
		{1, "supervise_tasks_failed_total", []string{"handler", "deaf", "kind", "timeout"}},
		{1, "supervise_tasks_failed_total", []string{"handler", "crashonce", "kind", "died"}},
		{1, "supervise_tasks_failed_total", []string{"handler", "sleep", "kind", "cancelled"}},
		{0, "supervise_tasks_started_total", []string{"handler", "sleep"}},
		{1, "supervise_worker_kills_total", []string{"reason", "timeout"}},
	} {
		got := value(t, body, c.name, c.labels...)
		if c.name == "supervise_tasks_started_total" && c.want == 0 && got == -1 {
			got = 0 // never started: no series
		}
		if got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if got, want := p.Stats().Failures, map[string]int{"error-error": 1, "error-panic": 1, "timeout": 1, "died": 1, "cancelled": 1}; !maps.Equal(got, want) {
		t.Errorf("Stats().Failures = %v, want %v", got, want)
	}
	if n := restarts(); n != 2 {
		t.Errorf("supervise_worker_restarts_total, slots summed: %v, want 2", n)
	}
	if n := value(t, body, "supervise_workers", "state", "idle") + value(t, body, "supervise_workers", "state", "busy"); n < 1 {
		t.Errorf("workers idle or busy: %v", n)
	}
	if value(t, body, "supervise_worker_resident_memory_bytes", "slot", "0") <= 0 {
		t.Error("no resident memory for slot 0")
	}
	// Every call went out in a frame of at least 9 bytes (length, array, kind, id, name) and
	// every answer came back in one; the hellos came too.
	slots := func(name string) float64 {
		return value(t, body, name, "slot", "0") + value(t, body, name, "slot", "1")
	}
	if sent, calls := slots("supervise_worker_sent_bytes_total"), 11.0; sent < 9*calls {
		t.Errorf("supervise_worker_sent_bytes_total, slots summed: %v, want at least %v", sent, 9*calls)
	}
	if got := slots("supervise_worker_received_bytes_total"); got < 9*10 {
		t.Errorf("supervise_worker_received_bytes_total, slots summed: %v, want at least 90", got)
	}
	if value(t, body, "supervise_core_utilization_ratio", "core", "0") < 0 {
		t.Error("no utilization of core 0")
	}

	problems, err := promlint.New(bytes.NewReader(body)).Lint()
	if err != nil || len(problems) > 0 {
		t.Errorf("promlint: %v %v", problems, err)
	}
	if promtool, err := exec.LookPath("promtool"); err == nil {
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = bytes.NewReader(body)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics: %v\n%s", err, out)
		}
	} else if os.Getenv("SUPERVISE_REQUIRE_PROMTOOL") != "" {
		t.Error("promtool is not installed, and SUPERVISE_REQUIRE_PROMTOOL is set")
	} else {
		t.Log("promtool is not installed (.ci/run installs Debian's prometheus)")
	}
	if t.Failed() {
		t.Logf("scrape:\n%s", strings.Join(grepLines(string(body), "supervise_"), "\n"))
	}
}

func grepLines(s, sub string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

// A Start that fails leaves the registry as it found it: a Start with the same registry can
// follow. The metrics used to stay registered, and the second Start failed with "duplicate
// metrics collector registration attempted".
func TestFailedStartUnregistersMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := supervisor.Config{Workers: 1, Metrics: reg, Command: []string{filepath.Join(t.TempDir(), "no-such-worker")}, Logger: slog.New(slog.DiscardHandler)}
	cfg.Restart.MaxStartFailures = 1
	if p, err := supervisor.Start(context.Background(), cfg); err == nil {
		p.Close()
		t.Fatal("a pool started on a command that does not exist")
	}
	p, _ := startPool(t, supervisor.Config{Workers: 1, Metrics: reg})
	if _, err := supervisor.Bind[int, int](p, "square").Call(context.Background(), 3); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	if got := value(t, scrape(t, srv.URL), "supervise_tasks_succeeded_total", "handler", "square"); got != 1 {
		t.Errorf("the second pool's succeeded tasks: %v, want 1", got)
	}
	// A registry holding one of the names already: Start fails, and takes out what it put in.
	clash := prometheus.NewRegistry()
	clash.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "supervise_tasks_failed_total", Help: "another"}))
	if p, err := supervisor.Start(context.Background(), supervisor.Config{Workers: 1, Metrics: clash}); err == nil {
		p.Close()
		t.Fatal("a pool started on a registry that has one of its metrics")
	}
	if n := len(mustGather(t, clash)); n != 1 {
		t.Errorf("%d metric families left in the registry, want the 1 it had", n)
	}
}

func mustGather(t *testing.T, g prometheus.Gatherer) []*dto.MetricFamily {
	t.Helper()
	fs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return fs
}
