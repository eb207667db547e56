// Package tracectx carries OpenTelemetry trace context as a call's W3C traceparent
// (docs/protocol.md, section 3), both ways: out of a context into a call, and out of a call
// into a handler's context.
package tracectx

import (
	"context"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// FromContext is the traceparent of the span ctx carries, or "" if it carries none.
func FromContext(ctx context.Context) string {
	return Format(trace.SpanContextFromContext(ctx))
}

// Format is sc as a traceparent of version 00 ("00-<trace id>-<span id>-<flags>"), or "" if
// sc is not valid.
func Format(sc trace.SpanContext) string {
	if !sc.IsValid() {
		return ""
	}
	const hex = "0123456789abcdef"
	tid, sid := sc.TraceID(), sc.SpanID()
	b := make([]byte, 0, 55)
	b = append(b, "00-"...)
	b = append(b, tid.String()...)
	b = append(b, '-')
	b = append(b, sid.String()...)
	flags := byte(sc.TraceFlags())
	return string(append(b, '-', hex[flags>>4], hex[flags&15]))
}

// Into is ctx carrying, as its remote span context, the span traceparent names; ctx as it
// is when traceparent is "" or does not parse.
func Into(ctx context.Context, traceparent string) context.Context {
	if traceparent == "" {
		return ctx
	}
	return propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{"traceparent": traceparent})
}
