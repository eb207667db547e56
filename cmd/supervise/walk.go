package main

import (
	"bufio"
	"context"
	"crypto/sha512"
	"fmt"
	"github.com/go-git/go-git/v5/plumbing/format/gitignore"
	"github.com/supervise-dev/supervise/internal/digest"
	"io"
	"iter"
	"os"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// walkItem is one line of digest's output in walk order: a regular file to hash, a path that
// could not be read (err set), or one hashed already (sum set: hashHere).
type walkItem struct {
	path string
	err  string
	size int64 // -1: not known (the walk stats files only when asked)
	sum  []byte
	// check is what digest -c checks of this item; nil when hashing.
	check *checkItem
}

// walk lists the regular files under roots in sorted walk order and sends them on out in
// slices of up to batch items, then closes out. The order: each root in the order given, then
// depth first with a directory's entries sorted by name (bytewise), as find would list them
// with its entries sorted. Paths are spelled as find spells them: the root as given, then "/"
// and the names. Symbolic links met inside a tree are not followed and not listed, nor are
// FIFOs, sockets and devices (find -type f); a root that is a symbolic link is followed
// (find -H), as sha512sum would follow a file named on its command line. Paths that cannot be
// read are listed with their error, in their place in the order.
//
// The walk only reads directories (their entries carry the file type): unless sizes is set
// (for the live view's byte count) it stats nothing but the roots, and leaves opening files,
// and learning their sizes, to the workers.
func walk(ctx context.Context, roots iter.Seq2[string, error], batch int, sizes bool, list listFlags, out chan<- []walkItem) {
	defer close(out)
	w := walker{ctx: ctx, out: out, batch: batch, sizes: sizes, oneFS: list.oneFS, skip: list.matcher()}
	for root, err := range roots {
		if err != nil { // the list of roots could not be read on
			w.add(walkItem{path: root, err: err.Error(), size: -1})
			continue
		}
		if ctx.Err() != nil {
			break
		}
		if root == "-" { // standard input, as sha512sum reads it
			w.add(hashReader("-", os.Stdin))
			continue
		}
		var st unix.Stat_t
		err := unix.Lstat(root, &st)
		if err == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
			err = unix.Stat(root, &st) // a root that is a link is followed
			if err == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
				st.Mode = unix.S_IFLNK // not a directory: hashed here (hashHere)
			}
		}
		if err != nil {
			w.add(walkItem{path: root, err: digest.Describe(err), size: -1})
			continue
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			w.add(walkItem{path: root, size: st.Size})
		case unix.S_IFDIR:
			w.dev = uint64(st.Dev)
			w.dir(root, nil)
		default:
			w.add(hashHere(root))
		}
	}
	w.flush()
}

// hashHere hashes a root that is not a plain regular file or a directory in the parent, as
// sha512sum would, to its end, following a link: a FIFO, a device, a link to a file. A
// worker could not: /dev/stdin and /proc/self/... name the parent's own, and a worker opens
// only regular files, not following links, so that nothing a walk listed can be swapped for
// a FIFO or a link to /dev/zero. Reading a FIFO or a device blocks the walk meanwhile.
func hashHere(path string) walkItem {
	f, err := os.Open(path)
	if err != nil {
		return walkItem{path: path, err: digest.Describe(err), size: -1}
	}
	defer f.Close()
	return hashReader(path, f)
}

// hashReader hashes what r reads, to its end, as the item path.
func hashReader(path string, r io.Reader) walkItem {
	h := sha512.New()
	n, err := io.Copy(h, r)
	if err != nil {
		return walkItem{path: path, err: digest.Describe(err), size: -1}
	}
	return walkItem{path: path, size: n, sum: h.Sum(nil)}
}

type walker struct {
	ctx   context.Context
	out   chan<- []walkItem
	batch int
	sizes bool
	cur   []walkItem
	oneFS bool   // -x: stay on the file system of the root
	dev   uint64 // the root's file system
	skip  gitignore.Matcher
}

// sameFS is whether dir is on the root's file system (a stat a directory: -x costs nothing
// per file).
func (w *walker) sameFS(dir string) bool {
	var st unix.Stat_t
	return unix.Lstat(dir, &st) != nil || uint64(st.Dev) == w.dev // unreadable: dir says why
}

func (w *walker) add(it walkItem) {
	w.cur = append(w.cur, it)
	if len(w.cur) >= w.batch {
		w.flush()
	}
}

func (w *walker) flush() {
	if len(w.cur) == 0 {
		return
	}
	select {
	case w.out <- w.cur:
	case <-w.ctx.Done():
	}
	w.cur = nil
}

// dir walks dir, whose path from its root is rel (for --exclude).
func (w *walker) dir(dir string, rel []string) {
	if w.ctx.Err() != nil {
		return
	}
	fd, err := digest.Retry(func() (int, error) { return digest.OpenDir(dir) })
	if err != nil {
		w.add(walkItem{path: dir, err: digest.Describe(err), size: -1})
		return
	}
	d := os.NewFile(uintptr(fd), dir)
	entries, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		w.add(walkItem{path: dir, err: digest.Describe(err), size: -1})
		return
	}
	slices.SortFunc(entries, func(a, b os.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	prefix := dir + "/"
	if strings.HasSuffix(dir, "/") {
		prefix = dir
	}
	for _, e := range entries {
		t := e.Type()
		var path []string
		if w.skip != nil {
			path = append(rel[:len(rel):len(rel)], e.Name())
			if w.skip.Match(path, t.IsDir()) {
				continue // --exclude: a directory is not entered
			}
		}
		switch {
		case t.IsDir():
			if w.oneFS && !w.sameFS(prefix+e.Name()) {
				continue // a mount point: find -xdev does not descend either
			}
			w.dir(prefix+e.Name(), path)
		case t.IsRegular():
			size := int64(-1)
			if w.sizes {
				if info, err := e.Info(); err == nil {
					size = info.Size()
				}
			}
			w.add(walkItem{path: prefix + e.Name(), size: size})
		}
	}
}

// listFlags are digest's --files-from and -0: where its roots come from.
type listFlags struct {
	from    string   // a file listing the roots, - for stdin
	null    bool     // the list's entries end with NUL
	oneFS   bool     // -x: the walk stays on each root's file system
	exclude []string // gitignore patterns, matched from each root
}

// matcher is --exclude's patterns as git reads a .gitignore at the root of a tree (go-git's
// implementation of its rules: globs with **, a trailing / for directories only, a leading
// / to anchor, ! to take a path back), or nil for none.
func (l listFlags) matcher() gitignore.Matcher {
	if len(l.exclude) == 0 {
		return nil
	}
	var ps []gitignore.Pattern
	for _, p := range l.exclude {
		ps = append(ps, gitignore.ParsePattern(p, nil))
	}
	return gitignore.NewMatcher(ps)
}

// roots are the paths given, or those --files-from lists, read as the walk asks for them (a
// list of millions of paths is not held). An empty entry is an error in its place, as du
// --files0-from says; so is a list that cannot be read on.
func (l listFlags) roots(paths []string, stdin io.Reader) (iter.Seq2[string, error], func(), error) {
	if l.from == "" {
		return func(yield func(string, error) bool) {
			for _, p := range paths {
				if !yield(p, nil) {
					return
				}
			}
		}, func() {}, nil
	}
	r, closeList := stdin, func() {}
	if l.from != "-" {
		f, err := os.Open(l.from)
		if err != nil {
			return nil, nil, fmt.Errorf("--files-from: %w", err)
		}
		r, closeList = f, func() { f.Close() }
	}
	sep := byte('\n')
	if l.null {
		sep = 0
	}
	return func(yield func(string, error) bool) {
		br := bufio.NewReaderSize(r, 64<<10)
		for n := 1; ; n++ {
			line, err := br.ReadString(sep)
			if err != nil && err != io.EOF {
				yield(l.from, fmt.Errorf("reading the list at entry %d: %v", n, err))
				return
			}
			if line == "" && err == io.EOF {
				return
			}
			p := strings.TrimSuffix(line, string(sep))
			var bad error
			if p == "" {
				p, bad = l.from, fmt.Errorf("entry %d of the list: an empty file name", n)
			}
			if !yield(p, bad) || err == io.EOF {
				return
			}
		}
	}, closeList, nil
}
