// Command digest is the library version of `supervise digest`: the SHA-512 of every regular file
// under the paths, hashed by a pool of worker processes and printed in walk order, as sha512sum
// prints it. (The CLI adds batching, largest-first scheduling and escaping of odd names.)
//
//	go run ./examples/digest DIR... | sha512sum -c --quiet
package main

import (
	"context"
	"crypto/sha512"
	"fmt"
	"io"
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"slices"

	"github.com/supervise-dev/supervise/child"
	"github.com/supervise-dev/supervise/supervisor"
)

func main() {
	child.Handle("sha512", func(_ context.Context, path string) ([]byte, error) { // runs in a worker
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		h := sha512.New()
		_, err = io.Copy(h, f)
		return h.Sum(nil), err
	})
	child.Main() // a worker serves here and exits
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
	for r := range supervisor.Bind[string, []byte](pool, "sha512").Map(context.Background(), slices.Values(paths)) {
		if r.Err != nil {
			fmt.Fprintln(os.Stderr, "digest:", r.Err)
			status = 1
			continue
		}
		fmt.Printf("%x  %s\n", r.Value, paths[r.Index])
	}
	pool.Close()
	os.Exit(status)
}
