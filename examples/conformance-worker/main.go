// Command conformance-worker is a Go worker serving the handlers that `supervise conformance`
// exercises (echo, fail, sleep, report, traceparent), written with the child package:
//
//	go build -o /tmp/cw ./examples/conformance-worker
//	supervise conformance -- /tmp/cw
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/supervise-dev/supervise/child"
	"github.com/vmihailenco/msgpack/v5"
	"go.opentelemetry.io/otel/trace"
)

func main() {
	// echo returns its input unchanged, whatever msgpack value it is.
	child.Handle("echo", func(_ context.Context, in msgpack.RawMessage) (msgpack.RawMessage, error) {
		return in, nil
	})
	child.Handle("fail", func(_ context.Context, msg string) (struct{}, error) {
		return struct{}{}, errors.New(msg)
	})
	child.Handle("sleep", func(ctx context.Context, seconds float64) (float64, error) {
		select {
		case <-time.After(time.Duration(seconds * float64(time.Second))):
			return seconds, nil
		case <-ctx.Done(): // cancelled: answered with an error of type "Canceled"
			return 0, ctx.Err()
		}
	})
	child.Handle("report", func(ctx context.Context, n int) (int, error) {
		for i := range n {
			if err := child.Report(ctx, i); err != nil {
				return 0, err
			}
		}
		return n, nil
	})
	// put puts each of its items on the queue its call came from (child.Put).
	child.Handle("put", func(ctx context.Context, items []any) (int, error) {
		for _, it := range items {
			if err := child.Put(ctx, it); err != nil {
				return 0, err
			}
		}
		return len(items), nil
	})
	// traceparent gives back the trace the call carried (docs/protocol.md, section 3), which
	// child puts in the handler's context as its remote span context; nil for none.
	child.Handle("traceparent", func(ctx context.Context, _ any) (*string, error) {
		sc := trace.SpanContextFromContext(ctx)
		if !sc.IsValid() {
			return nil, nil
		}
		tp := "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-" + sc.TraceFlags().String()
		return &tp, nil
	})
	// Only a worker: Serve refuses, with the protocol's message, when no pool started us.
	if err := child.Serve(); err != nil {
		fmt.Fprintln(os.Stderr, "conformance-worker:", err)
		os.Exit(1)
	}
}
