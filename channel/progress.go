package channel

import (
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"
)

// The progress page (docs/protocol.md, section 3, "The chunk record") is memory that the
// parent shares with a worker: a file the parent makes, passed to the worker as an open file
// descriptor (ProgressFDKey names it, ProgressSizeKey gives its size) that both map. A worker
// that runs chunk calls records in it, as it goes, which input of the chunk it is running and
// the outcome of each input that finished. That costs a few stores per input, no system call;
// and if the worker dies or is killed in the middle of a chunk, or the chunk reaches its time
// limit, the parent reads the page and knows exactly which inputs finished (with their
// outcomes), which one was running, and which never started: only those go again, so that no
// input of a chunk ever starts twice.
//
// Layout, all integers little-endian (the byte order of every platform supervise runs on),
// at these offsets:
//
//	0   uint64  the id of the chunk call recorded (0: none yet)
//	8   uint32  started: the inputs of that chunk that started (input k starts: k+1)
//	12  uint32  finished: the inputs that finished (finished <= started <= finished+1)
//	16  uint32  bytes: the bytes of outcomes written from offset 64
//	20  44 bytes reserved (zero)
//	64  the outcomes of the finished inputs, in order, each [0, value] or [1, error] as in a
//	    chunk's answer, one after the other (no array header)

// Environment variables that give a worker its progress page.
const (
	ProgressFDKey   = "SUPERVISE_PROGRESS_FD"
	ProgressSizeKey = "SUPERVISE_PROGRESS_BYTES"
)

// ProgressHeader is the size of the page's header: outcomes start there.
const ProgressHeader = 64

// DefaultProgressSize is the size of the page a pool makes for each worker.
const DefaultProgressSize = 1 << 20

// LittleEndian reports whether this machine stores integers little-endian, as the page's
// layout says; a pool on another machine makes no page.
var LittleEndian = func() bool { x := uint16(1); return *(*byte)(unsafe.Pointer(&x)) == 1 }()

// ProgressPage is a worker's side of its progress page. Only the goroutine running chunks
// uses it.
type ProgressPage struct {
	b    []byte
	used int
}

// NewProgressPage wraps a mapped page (its address aligned to 8 bytes, as a mapping is), or
// returns nil if b is too small to be one.
func NewProgressPage(b []byte) *ProgressPage {
	if len(b) < ProgressHeader+16 || uintptr(unsafe.Pointer(&b[0]))%8 != 0 || !LittleEndian {
		return nil
	}
	return &ProgressPage{b: b}
}

func word64(b []byte, off int) *atomic.Uint64 { return (*atomic.Uint64)(unsafe.Pointer(&b[off])) }
func word32(b []byte, off int) *atomic.Uint32 { return (*atomic.Uint32)(unsafe.Pointer(&b[off])) }

// Begin starts the record of chunk call id: nothing started yet.
func (p *ProgressPage) Begin(id uint64) {
	word64(p.b, 0).Store(0) // a reader that sees id below sees the zeros too
	word32(p.b, 8).Store(0)
	word32(p.b, 12).Store(0)
	word32(p.b, 16).Store(0)
	p.used = 0
	word64(p.b, 0).Store(id)
}

// Starting records that input k (from 0) starts.
func (p *ProgressPage) Starting(k int) { word32(p.b, 8).Store(uint32(k + 1)) }

// Finished records the outcome of the input running, and reports false if it does not fit
// in the page: the worker must then end the chunk after this input (its answer holds the
// outcome; until it is written, the page shows the input running).
func (p *ProgressPage) Finished(o ChunkOutcome) bool {
	data := p.b[ProgressHeader:]
	end := len(AppendChunkOutcome(data[p.used:p.used], o)) + p.used
	if end > len(data) { // did not fit (append wrote a copy elsewhere)
		return false
	}
	p.used = end
	word32(p.b, 16).Store(uint32(end)) // the bytes before the count: a reader sees them whole
	word32(p.b, 12).Add(1)
	return true
}

// ChunkRecord is what a progress page says of a chunk call: Started of its inputs started, and
// the first len(Outcomes) of them finished, with these outcomes (values alias nothing: they
// were copied from the page).
type ChunkRecord struct {
	Started  int
	Outcomes []ChunkOutcome
}

// ErrProgress is a progress page that does not hold a record the protocol allows.
var ErrProgress = errors.New("a garbled progress page")

// ReadProgress reads the record of chunk call id, of items inputs, from a page the worker
// may still be writing. ok is false if the page records another call (the chunk did not
// start, or the worker went on to the next call). A worker's page is as hostile as its frames:
// a record it could not have written is ErrProgress.
func ReadProgress(page []byte, id uint64, items int) (rec ChunkRecord, ok bool, err error) {
	if len(page) < ProgressHeader || word64(page, 0).Load() != id {
		return rec, false, nil
	}
	finished := int(word32(page, 12).Load())
	used := int(word32(page, 16).Load())
	started := int(word32(page, 8).Load())
	if used > len(page)-ProgressHeader {
		return rec, true, fmt.Errorf("%w: %d bytes of outcomes in a page of %d", ErrProgress, used, len(page))
	}
	data := append([]byte(nil), page[ProgressHeader:ProgressHeader+used]...)
	if word64(page, 0).Load() != id { // it went on while we read: that chunk is answered
		return rec, false, nil
	}
	if finished > items || started > items || started < finished || started > finished+1 {
		return rec, true, fmt.Errorf("%w: chunk call %d of %d inputs: %d started, %d finished", ErrProgress, id, items, started, finished)
	}
	rec.Started = started
	rec.Outcomes = make([]ChunkOutcome, finished)
	r := reader{b: data}
	for i := range rec.Outcomes {
		if err := r.outcome(&rec.Outcomes[i]); err != nil {
			return ChunkRecord{}, true, fmt.Errorf("%w: chunk call %d, outcome %d: %v", ErrProgress, id, i, err)
		}
	}
	return rec, true, nil
}
