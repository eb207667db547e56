// Command walk is a parallel directory walker built on a joinable queue: each directory is an
// item, the worker that lists it puts its subdirectories back on the queue (child.Put), and
// the parent joins the queue, which returns once every directory, found ones included, is
// listed. It prints how many directories, files and bytes are under each path.
//
//	go run ./examples/walk [-workers N] [-serial] [-names] [-top N] DIR...
//
// -serial walks in the parent alone (filepath.WalkDir), for comparison; the time either way
// goes to stderr. -names counts files without a stat each (no bytes): the walk that
// `supervise digest` does. -top N also prints the N directories holding the most bytes.
package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/supervise-dev/supervise/child"
	"github.com/supervise-dev/supervise/supervisor"
)

// Listing is what a worker finds in one directory (not below it).
type Listing struct {
	Dir   string
	Dirs  int
	Files int
	Bytes int64
}

// Dir is a queue item: a directory to list, and whether to stat its files for their sizes.
type Dir struct {
	Path  string
	Sizes bool
}

// list reads one directory, puts its subdirectories on the queue and counts its regular files.
// Symbolic links are not followed.
func list(ctx context.Context, dir Dir) (Listing, error) {
	l := Listing{Dir: dir.Path}
	entries, err := os.ReadDir(dir.Path)
	if err != nil {
		return l, err
	}
	for _, e := range entries {
		path := filepath.Join(dir.Path, e.Name())
		switch {
		case e.IsDir():
			if err := child.Put(ctx, Dir{Path: path, Sizes: dir.Sizes}); err != nil {
				return l, err
			}
			l.Dirs++
		case e.Type().IsRegular():
			l.Files++
			if !dir.Sizes {
				continue
			}
			info, err := e.Info()
			if err != nil {
				return l, err
			}
			l.Bytes += info.Size()
		}
	}
	return l, nil
}

func main() {
	child.Handle("list", list)
	child.Main() // a worker serves "list" here and exits

	workers := flag.Int("workers", 0, "worker processes (0: one per core)")
	serial := flag.Bool("serial", false, "walk in this process alone, for comparison")
	names := flag.Bool("names", false, "count files without a stat each (no bytes)")
	top := flag.Int("top", 0, "also print the `N` directories holding the most bytes")
	flag.Parse()
	if flag.NArg() == 0 {
		log.Fatal("usage: walk [-workers N] [-serial] [-top N] DIR...")
	}
	ctx := context.Background()
	failed := false
	for _, root := range flag.Args() {
		if fi, err := os.Stat(root); err != nil || !fi.IsDir() {
			log.Fatalf("walk: %s is not a directory", root)
		}
		t0 := time.Now()
		var listings []Listing
		var errs []error
		if *serial {
			listings, errs = walkSerial(Dir{Path: root, Sizes: !*names})
		} else {
			var err error
			listings, errs, err = walkPool(ctx, *workers, Dir{Path: root, Sizes: !*names})
			if err != nil {
				log.Fatal(err)
			}
		}
		took := time.Since(t0)
		for _, err := range errs {
			fmt.Fprintln(os.Stderr, "walk:", err)
			failed = true
		}
		sum := Listing{Dirs: 1} // root, and every directory found under it, listed or not
		for _, l := range listings {
			sum.Dirs, sum.Files, sum.Bytes = sum.Dirs+l.Dirs, sum.Files+l.Files, sum.Bytes+l.Bytes
		}
		fmt.Printf("%s: %d directories, %d files, %d bytes\n", root, sum.Dirs, sum.Files, sum.Bytes)
		slices.SortFunc(listings, func(a, b Listing) int { return cmp.Or(cmp.Compare(b.Bytes, a.Bytes), cmp.Compare(a.Dir, b.Dir)) })
		for _, l := range listings[:min(*top, len(listings))] {
			fmt.Printf("  %12d bytes %6d files  %s\n", l.Bytes, l.Files, l.Dir)
		}
		fmt.Fprintf(os.Stderr, "walk: %s listed in %v\n", root, took.Round(time.Millisecond))
	}
	if failed {
		os.Exit(1)
	}
}

// walkPool walks root with a pool of worker processes and a joinable queue of directories.
func walkPool(ctx context.Context, workers int, root Dir) ([]Listing, []error, error) {
	pool, err := supervisor.Start(ctx, supervisor.Config{Workers: workers})
	if err != nil {
		return nil, nil, err
	}
	defer pool.Close()
	q := supervisor.NewQueue[Dir, Listing](pool, "list", supervisor.QueueConfig{})
	type outcome struct {
		listings []Listing
		errs     []error
	}
	done := make(chan outcome)
	go func() { // every directory's outcome comes out of Results once
		var o outcome
		for r := range q.Results(ctx) {
			if r.Err != nil {
				o.errs = append(o.errs, r.Err)
				continue
			}
			o.listings = append(o.listings, r.Value)
		}
		done <- o
	}()
	if err := q.Put(ctx, root); err != nil {
		return nil, nil, err
	}
	if err := q.Join(ctx); err != nil { // root and every subdirectory put since
		return nil, nil, err
	}
	q.Close()
	o := <-done
	return o.listings, o.errs, pool.Close()
}

// walkSerial does the same work as the pool's workers, in this process, one directory at a
// time.
func walkSerial(root Dir) ([]Listing, []error) {
	var listings []Listing
	var errs []error
	byDir := map[string]int{}
	err := filepath.WalkDir(root.Path, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			errs = append(errs, err)
			return nil
		}
		parent := byDir[filepath.Dir(path)]
		switch {
		case e.IsDir():
			if path != root.Path {
				listings[parent].Dirs++
			}
			byDir[path] = len(listings)
			listings = append(listings, Listing{Dir: path})
		case e.Type().IsRegular():
			listings[parent].Files++
			if !root.Sizes {
				return nil
			}
			info, err := e.Info()
			if err != nil {
				errs = append(errs, err)
				return nil
			}
			listings[parent].Bytes += info.Size()
		}
		return nil
	})
	if err != nil {
		errs = append(errs, err)
	}
	return listings, errs
}
