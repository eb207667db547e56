package channel

import (
	"errors"
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// pipeWriter puts big payloads into a pipe by reference, with vmsplice(2), instead of copying
// them: the pipe takes the payload's pages and the reader copies straight out of them, so a
// payload crosses with one copy instead of two (and the kernel allocates no pages for it).
//
// The pages must keep their bytes until the reader has taken them. Callers promise not to
// modify a payload they hand to Send (see Message.Bin); the pipeWriter keeps each payload
// reachable, so that the garbage collector cannot give its memory to another object, until
// the bytes the pipe still holds (FIONREAD) show that the reader is past its end.
type pipeWriter struct {
	rc      syscall.RawConn // nil: w is not a pipe, plain writes
	byCopy  bool            // vmsplice was refused (a sandbox without it): plain writes
	flags   int             // SPLICE_F_NONBLOCK when the pipe is non-blocking (the poller waits)
	written uint64          // bytes this Conn has put into the pipe
	held    []heldPayload   // payloads perhaps still in the pipe, oldest first

	// State of the raw-fd calls, bound once so that a write allocates nothing.
	spliceFn func(fd uintptr) bool
	countFn  func(fd uintptr)
	iov      [1]unix.Iovec
	p        []byte // what spliceFn puts in
	done     int    // how much of p it has put in
	err      error  // why it stopped early
	inPipe   int    // what countFn found the pipe holds, or -1
}

type heldPayload struct {
	end  uint64 // value of written just after the payload
	data []byte
}

// newPipeWriter prepares w for writes by reference when it is a pipe.
func newPipeWriter(w io.Writer) *pipeWriter {
	f, ok := w.(*os.File)
	if !ok {
		return &pipeWriter{}
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return &pipeWriter{}
	}
	var fifo bool
	var flags int
	_ = rc.Control(func(fd uintptr) {
		var st unix.Stat_t
		if unix.Fstat(int(fd), &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFIFO {
			fifo = true
		}
		if fl, err := unix.FcntlInt(fd, unix.F_GETFL, 0); err == nil && fl&unix.O_NONBLOCK != 0 {
			flags = unix.SPLICE_F_NONBLOCK
		}
	})
	if !fifo {
		return &pipeWriter{}
	}
	pw := &pipeWriter{rc: rc, flags: flags}
	pw.spliceFn, pw.countFn = pw.spliceSome, pw.count
	return pw
}

// write writes p to w; byRef: p may go by reference.
func (pw *pipeWriter) write(w io.Writer, p []byte, byRef bool) error {
	if pw.rc == nil {
		_, err := w.Write(p)
		return err
	}
	n := 0
	if byRef && !pw.byCopy {
		var err error
		n, err = pw.vmsplice(p)
		pw.written += uint64(n)
		if n > 0 {
			pw.held = append(pw.held, heldPayload{end: pw.written, data: p})
		}
		if err != errNoSplice {
			return err
		}
		pw.byCopy = true // copy the rest, and everything after it
	}
	m, err := w.Write(p[n:])
	pw.written += uint64(m)
	return err
}

var errNoSplice = errors.New("vmsplice refused")

// vmsplice puts p into the pipe by reference, waiting for room as a write does.
func (pw *pipeWriter) vmsplice(p []byte) (int, error) {
	pw.p, pw.done, pw.err = p, 0, nil
	err := pw.rc.Write(pw.spliceFn)
	if err == nil {
		err = pw.err
	}
	n := pw.done
	pw.p, pw.err, pw.iov[0].Base = nil, nil, nil // the payload is held, if at all, in held only
	return n, err
}

// spliceSome is vmsplice's raw-fd call: false asks the poller to wait until there is room.
func (pw *pipeWriter) spliceSome(fd uintptr) bool {
	for pw.done < len(pw.p) {
		pw.iov[0].Base = &pw.p[pw.done]
		pw.iov[0].SetLen(len(pw.p) - pw.done)
		n, err := unix.Vmsplice(int(fd), pw.iov[:], pw.flags)
		switch err {
		case nil:
			pw.done += n
		case unix.EINTR:
		case unix.EAGAIN:
			return false // wait until the reader makes room
		case unix.ENOSYS, unix.EPERM, unix.EINVAL:
			pw.err = errNoSplice
			return true
		default:
			pw.err = err
			return true
		}
	}
	return true
}

// release lets go of the payloads the reader has read: those that end at or before the
// number of bytes written minus the bytes the pipe still holds.
func (pw *pipeWriter) release() {
	if len(pw.held) == 0 {
		return
	}
	pw.inPipe = -1
	_ = pw.rc.Control(pw.countFn)
	if pw.inPipe < 0 {
		return // cannot tell: keep them
	}
	read := pw.written - uint64(pw.inPipe)
	k := 0
	for k < len(pw.held) && pw.held[k].end <= read {
		pw.held[k] = heldPayload{}
		k++
	}
	if k > 0 {
		pw.held = append(pw.held[:0], pw.held[k:]...)
	}
}

// count is release's raw-fd call.
func (pw *pipeWriter) count(fd uintptr) {
	if n, err := unix.IoctlGetInt(int(fd), unix.TIOCINQ); err == nil { // FIONREAD
		pw.inPipe = n
	}
}
