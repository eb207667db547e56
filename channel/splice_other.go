//go:build !linux

package channel

import "io"

// pipeWriter writes by copy: vmsplice(2) is Linux's (see splice_linux.go).
type pipeWriter struct{}

func newPipeWriter(io.Writer) *pipeWriter { return &pipeWriter{} }

func (*pipeWriter) write(w io.Writer, p []byte, _ bool) error {
	_, err := w.Write(p)
	return err
}

func (*pipeWriter) release() {}
