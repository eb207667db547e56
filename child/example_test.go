package child_test

import (
	"context"
	"crypto/sha256"

	"github.com/supervise-dev/supervise/child"
)

// A program that is its own worker registers its handlers, then calls Main first thing: when
// a pool started the process, Main serves the handlers and exits; otherwise it returns and the
// program goes on (typically to start a supervisor.Pool that re-executes it).
func ExampleHandle() {
	child.Handle("sha256", func(ctx context.Context, data []byte) ([]byte, error) {
		sum := sha256.Sum256(data)
		return sum[:], nil
	})
	child.Main()
	// ... the program proper: supervisor.Start(ctx, supervisor.Config{}) and so on.
}
