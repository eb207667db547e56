package jetstream_test

import (
	"context"
	"testing"
	"time"

	"github.com/supervise-dev/supervise/supervisor/jetstream"
	"go.opentelemetry.io/otel/trace"
)

// A task submitted with a span in its context carries its trace across the queue: the
// handler on the machine sees the submitter's trace id.
func TestTraceCrossesTheQueue(t *testing.T) {
	s := startServer(t)
	startMachines(t, s, 1)
	c := newClient(t, s, testConfig())
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}))
	wait, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	got, err := jetstream.Submit[struct{}, string](ctx, c, "traced", struct{}{}).Get(wait)
	if err != nil || got != tid.String() {
		t.Errorf("the handler saw trace %q (%v), want the submitter's %s", got, err, tid)
	}
	if got, err := jetstream.Submit[struct{}, string](context.Background(), c, "traced", struct{}{}).Get(wait); err != nil || got != (trace.TraceID{}).String() {
		t.Errorf("without a span, the handler saw trace %q (%v), want none", got, err)
	}
}
