package supervisor

import (
	"context"
	"testing"
)

// BenchmarkSample is the cost of one Stats sample of the machine's cores and two idle
// workers: at the default StatsInterval of 1s, ns/op / 1e9 is the share of a core that
// sampling takes.
func BenchmarkSample(b *testing.B) {
	p, err := Start(context.Background(), Config{Workers: 2})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	b.ReportAllocs()
	for b.Loop() {
		p.sample()
	}
}
