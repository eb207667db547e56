package main

import (
	"bytes"
	"io"
	"os"
)

// spoolMemory is how many bytes of a job's output a spool keeps in memory; the rest goes to
// a temporary file, so a job that prints gigabytes costs the parent a file, not its memory.
const spoolMemory = 1 << 20

// spool holds one stream of a job's output until the job's turn to print it: in memory up to
// spoolMemory, past that in an unlinked temporary file.
type spool struct {
	mem  bytes.Buffer
	file *os.File
	err  error // the temporary file failed: what is written is lost, and printing says so
	n    int64
}

func (s *spool) Write(p []byte) (int, error) {
	s.n += int64(len(p))
	if s.file == nil && s.err == nil && s.mem.Len()+len(p) <= spoolMemory {
		return s.mem.Write(p)
	}
	if s.file == nil && s.err == nil {
		if s.file, s.err = os.CreateTemp("", "supervise-exec-*"); s.err == nil {
			os.Remove(s.file.Name()) // gone with the last descriptor, whatever happens
		}
	}
	if s.err == nil {
		_, s.err = s.file.Write(p)
	}
	return len(p), nil
}

// WriteTo copies what the spool holds to w, and frees it.
func (s *spool) WriteTo(w io.Writer) (int64, error) {
	n, err := s.mem.WriteTo(w)
	if s.file != nil {
		if s.err == nil {
			var m int64
			if _, s.err = s.file.Seek(0, io.SeekStart); s.err == nil {
				m, s.err = io.Copy(w, s.file)
			}
			n += m
		}
		s.file.Close()
		s.file = nil
	}
	if err == nil {
		err = s.err
	}
	return n, err
}

// tagWriter prefixes every line written through it with tag (exec --tag).
type tagWriter struct {
	w       io.Writer
	tag     []byte
	midLine bool
}

func (t *tagWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if !t.midLine {
			if _, err := t.w.Write(t.tag); err != nil {
				return 0, err
			}
		}
		line := p
		if i := bytes.IndexByte(p, '\n'); i >= 0 {
			line = p[:i+1]
		}
		if _, err := t.w.Write(line); err != nil {
			return 0, err
		}
		t.midLine = line[len(line)-1] != '\n'
		p = p[len(line):]
	}
	return n, nil
}
