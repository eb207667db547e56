package channel

import (
	"errors"
	"fmt"
)

// Sentinel errors wrapped by [FrameError]; test with errors.Is.
var (
	ErrFrameTooLarge = errors.New("frame too large")
	ErrTruncated     = errors.New("truncated frame")
	ErrDecode        = errors.New("cannot decode frame")
	ErrBatchSize     = errors.New("batch size out of range")
)

// FrameError is any failure to read or write a frame. It names the peer (as given in
// [Options.Peer], e.g. "worker 3 (pid 4242)") and the frame's number in its direction,
// counted from 1.
type FrameError struct {
	Peer   string
	Op     string // "read" or "write"
	Frame  uint64
	Err    error  // ErrFrameTooLarge, ErrTruncated, ErrDecode, or an I/O error
	Detail string // what was seen, e.g. the offending length or msgpack code
}

func (e *FrameError) Error() string {
	s := fmt.Sprintf("%s: %s frame %d: %v", e.Peer, e.Op, e.Frame, e.Err)
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

func (e *FrameError) Unwrap() error { return e.Err }
