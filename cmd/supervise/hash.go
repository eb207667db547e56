package main

import (
	"context"
	"crypto/sha512"
	"errors"
	"strings"
	"sync"
	"syscall"
)

// fileSum is the digest handler's answer for one file: the 64-byte SHA-512, or why not.
type fileSum struct {
	Sum []byte `msgpack:"s,omitempty"`
	Err string `msgpack:"e,omitempty"`
}

var readBuffers = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// digestFiles is the worker side of `supervise digest`: it hashes each path in turn. A file
// that cannot be read gets its error; the others are unaffected.
func digestFiles(ctx context.Context, paths []string) ([]fileSum, error) {
	bufp := readBuffers.Get().(*[]byte)
	defer readBuffers.Put(bufp)
	out := make([]fileSum, len(paths))
	h := sha512.New()
	for i, p := range paths {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		h.Reset()
		if err := hashFile(h, p, *bufp); err != nil {
			out[i].Err = describe(err)
			continue
		}
		out[i].Sum = h.Sum(make([]byte, 0, sha512.Size))
	}
	return out, nil
}

// hashFile reads path to its end into h with plain system calls: for tiny files the cost is
// in the calls, and os.File adds a few (poller registration, fstat).
func hashFile(h interface{ Write([]byte) (int, error) }, path string, buf []byte) error {
	fd, err := retry(func() (int, error) { return syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0) })
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	for {
		n, err := retry(func() (int, error) { return syscall.Read(fd, buf) })
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		h.Write(buf[:n])
	}
}

// retry repeats a system call interrupted by a signal (the Go runtime preempts with SIGURG).
func retry(call func() (int, error)) (int, error) {
	for {
		n, err := call()
		if !errors.Is(err, syscall.EINTR) {
			return n, err
		}
	}
}

// describe words an error as coreutils does (strerror): "Permission denied".
func describe(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		s := errno.Error()
		return strings.ToUpper(s[:1]) + s[1:]
	}
	return err.Error()
}
