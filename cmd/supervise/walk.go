package main

import (
	"os"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// file is one line of digest's output: a regular file to hash, or a path that failed.
type file struct {
	path string
	size int64
	err  string // set when the path could not be read (the walk or the worker says why)
	sum  []byte // filled in by a worker
	done bool
}

// walk lists the regular files under roots in sorted walk order: each root in the order given,
// then depth first with a directory's entries sorted by name (bytewise), as find would list
// them with its entries sorted. Paths are spelled as find spells them: the root as given, then
// "/" and the names. Symbolic links met inside a tree are not followed and not listed, nor are
// FIFOs, sockets and devices (find -type f); a root that is a symbolic link is followed
// (find -H), as sha512sum would follow a file named on its command line. Paths that cannot be
// read are listed with their error, in their place in the order.
func walk(roots []string) []file {
	var out []file
	for _, root := range roots {
		var st unix.Stat_t
		if err := unix.Stat(root, &st); err != nil {
			out = append(out, file{path: root, err: describe(err)})
			continue
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			out = append(out, file{path: root, size: st.Size})
		case unix.S_IFDIR:
			out = walkDir(out, root)
		}
	}
	return out
}

// walkDir appends the regular files under dir. It stats entries relative to the open
// directory (fstatat), which spares the kernel a walk of the whole path for every file.
func walkDir(out []file, dir string) []file {
	d, err := os.Open(dir)
	if err != nil {
		return append(out, file{path: dir, err: describe(err)})
	}
	entries, err := d.ReadDir(-1)
	fd := int(d.Fd())
	defer d.Close()
	if err != nil {
		return append(out, file{path: dir, err: describe(err)})
	}
	slices.SortFunc(entries, func(a, b os.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	prefix := dir + "/"
	if strings.HasSuffix(dir, "/") {
		prefix = dir
	}
	for _, e := range entries {
		switch t := e.Type(); {
		case t.IsDir():
			out = walkDir(out, prefix+e.Name())
		case t.IsRegular():
			var st unix.Stat_t
			if err := unix.Fstatat(fd, e.Name(), &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				out = append(out, file{path: prefix + e.Name(), err: describe(err)})
				continue
			}
			out = append(out, file{path: prefix + e.Name(), size: st.Size})
		}
	}
	return out
}
