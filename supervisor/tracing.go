package supervisor

import (
	"errors"
	"time"

	"github.com/supervise-dev/supervise/internal/tracectx"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Trace context (docs/protocol.md, section 3): a task submitted with a context that carries
// an OpenTelemetry span passes that span's W3C traceparent to its worker in the call, so the
// handler's own spans join the caller's trace (child.Serve puts it in the handler's context;
// the Python library's traceparent() gives it). With Config.TracerProvider, the pool also
// records a span per task, a child of the caller's, from submission to outcome: its events
// say when the task was sent to a worker (which) and when it started there; its status is
// its error. The traceparent the worker gets is then the task span's.
//
// Without a span in the context and without a tracer provider a task costs one context
// lookup; nothing is sent.

// tracerName is the instrumentation scope of the pool's spans.
const tracerName = "github.com/supervise-dev/supervise/supervisor"

// traceTask starts t's span (Config.TracerProvider) and sets the traceparent its call carries.
func (p *Pool) traceTask(t *task) {
	var sc trace.SpanContext
	if p.tracer != nil {
		_, t.span = p.tracer.Start(t.ctx, "supervise "+t.handler, trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(attribute.String("supervise.handler", t.handler), attribute.Int64("supervise.task.id", int64(t.id))))
		sc = t.span.SpanContext()
	} else {
		sc = trace.SpanContextFromContext(t.ctx)
	}
	t.trace = tracectx.Format(sc)
}

// inputSpans records a span for each input of Map's chunk t, now ended (e): a child of the
// chunk call's span, from the chunk's submission to its end, whose status is the input's
// outcome. An input that goes again alone gets its span from that call instead.
func inputSpans(t *task, e *chunkEnd) {
	tr := t.span.TracerProvider().Tracer(tracerName)
	ctx := trace.ContextWithSpan(t.ctx, t.span)
	for i := range t.chunk {
		o, err := e.input(i)
		if o == nil && err == nil {
			continue
		}
		opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindInternal),
			trace.WithAttributes(attribute.String("supervise.handler", t.handler), attribute.Int("supervise.chunk.input", i+1),
				attribute.Int("supervise.map.index", t.index+i))}
		if !t.submitted.IsZero() {
			opts = append(opts, trace.WithTimestamp(t.submitted))
		}
		_, s := tr.Start(ctx, "supervise "+t.handler+" input", opts...)
		if err == nil && o.Err != nil {
			err = o.Err
		}
		if err != nil {
			s.RecordError(err)
			s.SetStatus(codes.Error, err.Error())
		}
		s.End()
	}
}

// spanSent records that t went to worker w (whose mu the caller holds).
func spanSent(t *task, w *worker) {
	t.span.AddEvent("sent", trace.WithAttributes(attribute.Int("supervise.worker.id", w.id), attribute.Int("supervise.worker.pid", w.pid)))
}

// spanStarted records that t's handler started, for the n-th time.
func spanStarted(t *task, n int32) {
	t.span.AddEvent("started", trace.WithAttributes(attribute.Int("supervise.attempt", int(n))))
}

// endSpan records t's outcome and ends its span.
func endSpan(t *task, err error) {
	attrs := []attribute.KeyValue{attribute.Int("supervise.attempts", int(t.starts.Load()))}
	if took := t.took.Load(); took > 0 {
		attrs = append(attrs, attribute.Float64("supervise.run_seconds", time.Duration(took).Seconds()))
	}
	var te *TaskError
	if errors.As(err, &te) && te.WorkerID != 0 {
		attrs = append(attrs, attribute.Int("supervise.worker.id", te.WorkerID), attribute.Int("supervise.worker.pid", te.Pid))
	}
	t.span.SetAttributes(attrs...)
	if err != nil {
		t.span.RecordError(err)
		t.span.SetStatus(codes.Error, err.Error())
	}
	t.span.End()
}
