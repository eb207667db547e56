package child

import (
	"context"

	"go.opentelemetry.io/otel/propagation"
)

// withTrace is ctx carrying, as its remote span context, the span a call's traceparent names
// (docs/protocol.md, section 3), so that a handler's spans join its caller's trace:
// trace.SpanContextFromContext(ctx) in the handler gives it, and a span the handler starts
// from ctx is its child. A traceparent that does not parse leaves ctx as it is.
func withTrace(ctx context.Context, traceparent string) context.Context {
	if traceparent == "" {
		return ctx
	}
	return propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{"traceparent": traceparent})
}
