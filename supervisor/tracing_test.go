package supervisor_test

import (
	"context"
	"errors"
	"testing"

	"github.com/supervise-dev/supervise/supervisor"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// callerSpan is a context carrying a sampled span, as a traced service's request has.
func callerSpan(t *testing.T) (context.Context, trace.SpanContext) {
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled})
	return trace.ContextWithSpanContext(context.Background(), sc), sc
}

// Without a tracer provider, a worker's handler sees the caller's span as its parent; a task
// submitted without one sees none.
func TestHandlerSeesCallersTrace(t *testing.T) {
	p, _ := startPool(t, supervisor.Config{Workers: 1})
	ctx, caller := callerSpan(t)
	traced := supervisor.Bind[struct{}, [2]string](p, "traced")
	got, err := traced.Submit(ctx, struct{}{}).Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := [2]string{caller.TraceID().String(), caller.SpanID().String()}; got != want {
		t.Errorf("the handler saw trace %v, want the caller's %v", got, want)
	}
	if got, err := traced.Submit(context.Background(), struct{}{}).Get(context.Background()); err != nil || got != [2]string{} {
		t.Errorf("without a span, the handler saw %v (%v), want none", got, err)
	}
}

// With a tracer provider, each task is a span, a child of the caller's; its worker's handler
// sees the task's span as its parent; a failure is the span's status.
func TestTaskSpans(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	p, _ := startPool(t, supervisor.Config{Workers: 1, TracerProvider: tp})
	ctx, caller := callerSpan(t)
	got, err := supervisor.Bind[struct{}, [2]string](p, "traced").Submit(ctx, struct{}{}).Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := supervisor.Bind[string, int](p, "fail").Submit(ctx, "no").Get(ctx); err == nil {
		t.Fatal("fail did not fail")
	}
	spans := rec.Ended() // a span ends before its task's Get returns
	if len(spans) != 2 {
		t.Fatalf("%d spans ended, want 2", len(spans))
	}
	for i, s := range spans {
		if s.Parent().SpanID() != caller.SpanID() || s.SpanContext().TraceID() != caller.TraceID() {
			t.Errorf("span %d (%s): parent %v, want the caller's %v", i, s.Name(), s.Parent(), caller)
		}
		var events []string
		for _, e := range s.Events() {
			events = append(events, e.Name)
		}
		if len(events) < 2 || events[0] != "sent" || events[1] != "started" {
			t.Errorf("span %d (%s): events %v, want sent, started first", i, s.Name(), events)
		}
	}
	ok, failed := spans[0], spans[1]
	if want := [2]string{caller.TraceID().String(), ok.SpanContext().SpanID().String()}; got != want || ok.Name() != "supervise traced" {
		t.Errorf("the handler saw %v, want the task span %q's %v", got, ok.Name(), want)
	}
	if ok.Status().Code != codes.Unset {
		t.Errorf("a task that succeeded has status %v", ok.Status())
	}
	if failed.Status().Code != codes.Error || failed.Status().Description == "" {
		t.Errorf("a task that failed has status %v, want an error", failed.Status())
	}
	var te *supervisor.TaskError
	if _, err := supervisor.Bind[string, int](p, "fail").Submit(context.Background(), "x").Get(context.Background()); !errors.As(err, &te) {
		t.Fatalf("fail: %v", err)
	}
	if spans := rec.Ended(); len(spans) != 3 || spans[2].Parent().IsValid() {
		t.Errorf("a task submitted without a span: %d spans, the last with parent %v; want a root span", len(spans), spans[len(spans)-1].Parent())
	}
}

// A Map's chunked inputs each get a span (a child of their chunk call's), with its outcome:
// 200 inputs in chunks of 16 gave 133 spans, a chunk's one for all its inputs.
func TestMapInputSpans(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	p, _ := startPool(t, supervisor.Config{Workers: 1, TracerProvider: tp})
	ctx, _ := callerSpan(t)
	for r := range supervisor.Bind[int, int](p, "square").WithChunk(16).Map(ctx, ints(200)) {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	seen := map[int64]int{}
	for _, s := range rec.Ended() {
		for _, a := range s.Attributes() {
			if a.Key == "supervise.map.index" {
				seen[a.Value.AsInt64()]++
			}
		}
	}
	for i := range int64(200) {
		if seen[i] != 1 {
			t.Fatalf("input %d has %d spans, want 1 (%d inputs with a span)", i, seen[i], len(seen))
		}
	}
}
