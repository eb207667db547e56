package digest

import (
	"context"
	"crypto/sha512"
	"errors"
	"strings"
	"sync"
	"syscall"

	"github.com/supervise-dev/supervise/child"
)

// Request is one task of `supervise digest`: files to hash, in walk order.
type Request struct {
	Paths []string `msgpack:"p"`
	// Whole asks for every file to be hashed, however large. Otherwise a file of BigFile bytes
	// or more is not hashed but reported in Deferred, so that the parent can give it a task
	// of its own, largest first.
	Whole bool `msgpack:"w,omitempty"`
	// Budget, when above zero, stops the task once it has hashed that many bytes: the paths
	// not attempted are left to another task (Answer.Done says where it stopped), so
	// that a batch of many files of unknown size cannot run for long.
	Budget int64 `msgpack:"b,omitempty"`
	// Progress asks for a report (child.Report) of the bytes hashed so far every
	// progressEvery bytes of a big file, for the live view.
	Progress bool `msgpack:"r,omitempty"`
}

// Answer is the worker's answer: one 64-byte SHA-512 per path, in order (zeros where
// the path failed or was deferred), and the exceptions by index.
type Answer struct {
	Done     int            `msgpack:"n"` // paths attempted: Paths[:Done]
	Sums     []byte         `msgpack:"s"`
	Failed   map[int]string `msgpack:"f,omitempty"`
	Deferred map[int]int64  `msgpack:"d,omitempty"`
	Bytes    int64          `msgpack:"y"` // bytes hashed
}

// progressEvery is how many bytes of a big file a worker hashes between progress reports.
const progressEvery = 16 << 20

// BigFile is the size from which a file is hashed in a task of its own.
const BigFile = 1 << 20

var readBuffers = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// Files is the worker side of `supervise digest`. A file that cannot be read gets its
// error; the others are unaffected. On CPUs that have it, files are hashed four at a time
// (digestLanes); else one after another, here.
func Files(ctx context.Context, req Request) (Answer, error) {
	var progress func(bytes int64)
	if req.Progress {
		progress = func(n int64) { _ = child.Report(ctx, n) }
	}
	if useLanes() {
		return digestLanes(ctx, req, progress)
	}
	bufp := readBuffers.Get().(*[]byte)
	defer readBuffers.Put(bufp)
	ans := Answer{Sums: make([]byte, 0, sha512.Size*len(req.Paths))}
	hs := hashers{ctx: ctx, small: goSHA512{sha512.New()}, progress: progress}
	defer hs.close()
	var dirs dirCache
	defer dirs.close()
	var hashed int64
	for i, p := range req.Paths {
		if err := ctx.Err(); err != nil {
			return Answer{}, err
		}
		if req.Budget > 0 && hashed >= req.Budget {
			break
		}
		ans.Done++
		h, size, err := hs.file(&dirs, p, *bufp, req.Whole)
		if ctxErr := ctx.Err(); ctxErr != nil && err != nil { // cancelled inside a big file
			return Answer{}, ctxErr
		}
		switch {
		case err != nil:
			if ans.Failed == nil {
				ans.Failed = map[int]string{}
			}
			ans.Failed[i] = Describe(err)
			ans.Sums = append(ans.Sums, make([]byte, sha512.Size)...)
		case h == nil:
			if ans.Deferred == nil {
				ans.Deferred = map[int]int64{}
			}
			ans.Deferred[i] = size
			ans.Sums = append(ans.Sums, make([]byte, sha512.Size)...)
		default:
			ans.Sums = h.sum(ans.Sums)
			hashed += size
		}
	}
	ans.Bytes = hashed
	return ans, nil
}

// hashers are the two SHA-512s of a worker: Go's for files that fit in one read (a call into
// libcrypto costs more than it saves on a few KiB), and the fastest there is for the rest,
// made on first use (loading libcrypto takes milliseconds a tree of small files need not pay).
type hashers struct {
	ctx        context.Context // checked every progressEvery bytes of a big file: a cancel stops it
	small, big digester
	progress   func(bytes int64) // called every progressEvery bytes of a big file, if set
}

func (hs *hashers) close() {
	if hs.big != nil {
		hs.big.close()
	}
}

// file reads path to its end into one of the hashers and returns it, ready for sum, and the
// bytes it read. Unless whole, a file of BigFile bytes or more is left alone: the hasher is
// nil and size its size.
//
// It uses plain system calls: for tiny files the cost is in the calls. The file is opened
// relative to its directory, kept open across consecutive files of the same directory, which
// spares the kernel a walk of the whole path. Only a regular file is read (openRegular), to
// its end (atEnd): a short read at the size fstat gave saves the read that would return 0.
func (hs *hashers) file(dirs *dirCache, path string, buf []byte, whole bool) (h digester, size int64, err error) {
	dirfd, name := dirs.at(path)
	fd, want, err := openRegular(dirfd, name)
	if err != nil {
		return nil, 0, err
	}
	defer closeFile(fd)
	if !whole && want >= BigFile {
		return nil, want, nil
	}
	n, err := Retry(func() (int, error) { return readFile(fd, buf) })
	if err != nil {
		return nil, 0, err
	}
	if atEnd(n, len(buf), int64(n), want) { // the whole file in one read
		hs.small.reset()
		hs.small.write(buf[:n])
		return hs.small, int64(n), nil
	}
	if hs.big == nil {
		hs.big = newDigester()
	}
	h, size = hs.big, 0
	h.reset()
	for {
		h.write(buf[:n])
		size += int64(n)
		if size%progressEvery < int64(n) {
			if err := hs.ctx.Err(); err != nil {
				return nil, 0, err
			}
			if hs.progress != nil {
				hs.progress(size)
			}
		}
		if n == 0 || atEnd(n, len(buf), size, want) {
			return h, size, nil
		}
		if n, err = Retry(func() (int, error) { return readFile(fd, buf) }); err != nil {
			return nil, 0, err
		}
	}
}

// dirCache keeps the directory of the last file open.
type dirCache struct {
	dir string
	fd  int
	ok  bool
}

// at returns a directory descriptor and the name of path within it (AT_FDCWD and path itself
// when the directory cannot be opened: the open of the file will say why).
func (c *dirCache) at(path string) (int, string) {
	slash := strings.LastIndexByte(path, '/')
	if slash < 0 {
		return atFDCWD, path
	}
	dir, name := path[:slash+1], path[slash+1:]
	if !c.ok || c.dir != dir {
		c.close()
		fd, err := Retry(func() (int, error) { return OpenDir(dir) })
		if err != nil {
			return atFDCWD, path
		}
		c.dir, c.fd, c.ok = dir, fd, true
	}
	return c.fd, name
}

func (c *dirCache) close() {
	if c.ok {
		syscall.Close(c.fd)
		c.ok = false
	}
}

// Retry repeats a system call interrupted by a signal (the Go runtime preempts with SIGURG).
func Retry(call func() (int, error)) (int, error) {
	for {
		n, err := call()
		if !errors.Is(err, syscall.EINTR) {
			return n, err
		}
	}
}

// Describe words an error as coreutils does (strerror): "Permission denied".
func Describe(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		s := errno.Error()
		return strings.ToUpper(s[:1]) + s[1:]
	}
	return err.Error()
}
