package main

import (
	"context"
	"os"
	"testing"
)

// BenchmarkWalk walks the tree named by $SUPERVISE_WALK_TREE (e.g. a gen_tree.py small tree).
func BenchmarkWalk(b *testing.B) {
	root := os.Getenv("SUPERVISE_WALK_TREE")
	if root == "" {
		b.Skip("set SUPERVISE_WALK_TREE to a directory")
	}
	for b.Loop() {
		out := make(chan []walkItem, 64)
		go walk(context.Background(), func(yield func(string, error) bool) { yield(root, nil) }, defaultBatching.files, false, listFlags{}, out)
		n := 0
		for batch := range out {
			n += len(batch)
		}
		b.ReportMetric(float64(n), "files")
	}
}
