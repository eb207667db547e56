package supervisor_test

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/supervise-dev/supervise/supervisor"
)

// BenchmarkRoundTrip sends b.N echo tasks, one call message each, through a pool of 2 workers
// and checks every answer. Compare with ../shared/bench/py_pool_echo.py map1 (bench/echo.sh
// runs both).
func BenchmarkRoundTrip(b *testing.B) {
	for _, size := range []struct {
		name string
		n    int
	}{{"64B", 64}, {"1MiB", 1 << 20}} {
		b.Run(size.name, func(b *testing.B) {
			p, err := supervisor.Start(context.Background(), supervisor.Config{Workers: 2,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			echo := supervisor.Bind[[]byte, []byte](p, "echo")
			payload := make([]byte, size.n)
			inputs := func(yield func([]byte) bool) {
				for range b.N {
					if !yield(payload) {
						return
					}
				}
			}
			b.SetBytes(int64(size.n))
			b.ReportAllocs()
			b.ResetTimer()
			for r := range echo.MapUnordered(context.Background(), inputs) {
				if r.Err != nil || len(r.Value) != size.n {
					b.Fatalf("task %d: %v", r.Index, r.Err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tasks/s")
		})
	}
}
