package tracectx

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/trace"
)

func TestRoundTrip(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	ctx := Into(context.Background(), tp)
	if got := FromContext(ctx); got != tp {
		t.Errorf("FromContext(Into(%q)) = %q", tp, got)
	}
	if !trace.SpanContextFromContext(ctx).IsRemote() {
		t.Error("the span context is not remote")
	}
	for _, bad := range []string{"", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", "junk", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"} {
		if got := FromContext(Into(context.Background(), bad)); got != "" {
			t.Errorf("Into(%q) carries %q, want nothing", bad, got)
		}
	}
	unsampled := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
	if got := FromContext(Into(context.Background(), unsampled)); got != unsampled {
		t.Errorf("unsampled: %q", got)
	}
}
