// Command digest is the library version of `supervise digest`: the SHA-512 of every regular file
// under the paths, hashed by a pool of worker processes with the same worker side as the CLI
// (package internal/digest: four files at a time on CPUs with AVX2, no link followed), in
// batches of 64 files, and printed in walk order as sha512sum prints it. (The CLI adds
// largest-first scheduling of big files, time budgets, and escaping of odd names.)
//
//	go run ./examples/digest DIR... | sha512sum -c --quiet
package main

import (
	"context"
	"fmt"
	"io/fs"
	"iter"
	"log"
	"os"
	"path/filepath"
	"slices"

	"github.com/supervise-dev/supervise/child"
	"github.com/supervise-dev/supervise/internal/digest"
	"github.com/supervise-dev/supervise/supervisor"
)

func main() {
	child.Handle("digest", digest.Files) // runs in a worker
	child.Main()                         // a worker serves here and exits
	var paths []string
	for _, root := range os.Args[1:] {
		if err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				paths = append(paths, path)
			}
			return err
		}); err != nil {
			log.Fatal(err)
		}
	}
	pool, err := supervisor.Start(context.Background(), supervisor.Config{}) // a worker per core
	if err != nil {
		log.Fatal(err)
	}
	status := 0
	batches := slices.Collect(slices.Chunk(paths, 64))
	hash := supervisor.Bind[digest.Request, digest.Answer](pool, "digest")
	for r := range hash.Map(context.Background(), requests(batches)) {
		batch := batches[r.Index]
		if r.Err != nil {
			fmt.Fprintf(os.Stderr, "digest: %d files from %s: %v\n", len(batch), batch[0], r.Err)
			status = 1
			continue
		}
		for i, path := range batch {
			if why, failed := r.Value.Failed[i]; failed {
				fmt.Fprintf(os.Stderr, "digest: %s: %s\n", path, why)
				status = 1
				continue
			}
			fmt.Printf("%x  %s\n", r.Value.Sums[i*64:(i+1)*64], path)
		}
	}
	pool.Close()
	os.Exit(status)
}

// requests asks for each batch to be hashed whole, big files included.
func requests(batches [][]string) iter.Seq[digest.Request] {
	return func(yield func(digest.Request) bool) {
		for _, b := range batches {
			if !yield(digest.Request{Paths: b, Whole: true}) {
				return
			}
		}
	}
}
