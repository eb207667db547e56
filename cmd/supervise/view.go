package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"
)

// liveView is the live view on a terminal's stderr: one bar for the job (bytes done of the
// total, items such as files or lines, rate, ETA) and one per core (its busy share over the last sample), drawn by
// mpb a few times a second. Every bar is removed when the view stops, on success, error or
// Ctrl-C alike, so the terminal is left as it was but for the lines the job printed.
//
// A nil *liveView is a view that shows nothing: every method does nothing.
type liveView struct {
	out      io.Writer // the terminal
	progress *mpb.Progress
	job      *mpb.Bar
	cores    []*mpb.Bar
	busy     []atomic.Int64 // per core, per mille
	files    atomic.Int64   // items done (files hashed, lines answered)
	total    atomic.Int64   // items found so far
	bytes    atomic.Int64   // bytes found so far
	walking  atomic.Bool
	refresh  chan any      // a value draws the bars
	quit     chan struct{} // closed by stop: the ticker ends
	ticking  sync.WaitGroup
	stopOnce sync.Once
}

// console is stderr for messages (log records, signals, files that cannot be read): while a
// live view shows on stderr, lines written here are printed above its bars instead of being
// drawn over at the next refresh.
var console = &consoleWriter{out: os.Stderr}

type consoleWriter struct {
	mu   sync.Mutex
	out  io.Writer
	view *mpb.Progress // set while a live view shows on out
}

func (c *consoleWriter) Write(b []byte) (int, error) {
	c.mu.Lock()
	view := c.view
	c.mu.Unlock()
	if view != nil {
		if n, err := view.Write(b); err == nil {
			return n, nil
		}
	}
	return c.out.Write(b)
}

// above returns a writer for lines about the job: above the bars while the view shows, to w
// otherwise.
func (v *liveView) above(w io.Writer) io.Writer {
	if v == nil {
		return w
	}
	return &consoleWriter{out: w, view: v.progress}
}

func (c *consoleWriter) attach(view *mpb.Progress) {
	c.mu.Lock()
	c.view = view
	c.mu.Unlock()
}

// viewRefresh is how often the bars are drawn; the per-core figures are sampled as often.
const viewRefresh = 250 * time.Millisecond

// perMille scales a core's busy share to the range of its bar, kept below the bar's total:
// mpb treats a full bar as done.
const perMille = 1000

// The bars are drawn on our own ticks (mpb.WithManualRefresh), not mpb's: that draws them
// whatever w is (--progress into a file), and lets stop remove them at once, where with mpb's
// own ticker three aborted bars took 400 ms to go (each waits for a tick while others run).
// newLiveView starts the view of a job ("digest") on items of a kind ("files").
func newLiveView(w io.Writer, cores int, job, items string) *liveView {
	v := &liveView{
		out:     w,
		busy:    make([]atomic.Int64, cores),
		refresh: make(chan any),
		quit:    make(chan struct{}),
	}
	v.progress = mpb.New(mpb.WithOutput(w), mpb.WithManualRefresh(v.refresh), mpb.WithWidth(40))
	v.ticking.Add(1)
	go func() {
		defer v.ticking.Done()
		t := time.NewTicker(viewRefresh)
		defer t.Stop()
		for {
			select {
			case now := <-t.C:
				// The terminal echoes ^C where the cursor waits, under the bars; the redraw
				// moves up from that column, and would leave the start of a bar behind.
				_, _ = io.WriteString(w, "\r")
				select {
				case v.refresh <- now:
				case <-v.quit:
					return
				}
			case <-v.quit:
				return
			}
		}
	}()
	v.walking.Store(true)
	if w == os.Stderr {
		console.attach(v.progress)
	}
	shownView.Store(v)
	v.job = v.progress.AddBar(0,
		mpb.BarRemoveOnComplete(),
		mpb.PrependDecorators(
			decor.Name(job+" ", decor.WC{W: 8, C: decor.DindentRight}),
			decor.Any(func(decor.Statistics) string {
				more := ""
				if v.walking.Load() {
					more = "+"
				}
				return fmt.Sprintf("%d/%d%s %s", v.files.Load(), v.total.Load(), more, items)
			}, decor.WC{W: 22, C: decor.DindentRight}),
		),
		mpb.AppendDecorators(
			decor.Counters(decor.SizeB1024(0), "% .1f / % .1f", decor.WC{W: 24}),
			decor.AverageSpeed(decor.SizeB1024(0), " % .1f", decor.WC{W: 14}),
			decor.Name(" ETA "),
			decor.AverageETA(decor.ET_STYLE_GO),
		),
	)
	for i := range cores {
		v.cores = append(v.cores, v.progress.AddBar(perMille+1,
			mpb.BarRemoveOnComplete(),
			mpb.PrependDecorators(decor.Name(fmt.Sprintf("cpu%-3d", i), decor.WC{W: 8, C: decor.DindentRight})),
			mpb.AppendDecorators(decor.Any(func(decor.Statistics) string {
				return fmt.Sprintf("%3d%%", (v.busy[i].Load()+5)/10)
			})),
		))
	}
	return v
}

// found counts files the walk found, and their bytes.
func (v *liveView) found(files int, bytes int64) {
	if v == nil {
		return
	}
	v.total.Add(int64(files))
	v.job.SetTotal(v.bytes.Add(bytes), false)
}

// walked says the walk has ended: the totals are final.
func (v *liveView) walked() {
	if v == nil {
		return
	}
	v.walking.Store(false)
}

// hashed counts files done and bytes read (a big file's bytes come as they are read).
func (v *liveView) hashed(files int, bytes int64) {
	if v == nil {
		return
	}
	v.files.Add(int64(files))
	v.job.IncrInt64(bytes)
}

// coreUse shows each core's busy share.
func (v *liveView) coreUse(busy []float64) {
	if v == nil {
		return
	}
	for i, b := range busy[:min(len(busy), len(v.cores))] {
		v.busy[i].Store(int64(b * perMille))
		v.cores[i].SetCurrent(int64(b * perMille))
	}
}

// shownView is the live view on the terminal, if one is: a second signal, which exits at
// once, takes its bars off first (eraseView).
var shownView atomic.Pointer[liveView]

// eraseView stops the live view shown, if any, waiting for it at most within.
func eraseView(within time.Duration) {
	v := shownView.Load()
	if v == nil {
		return
	}
	done := make(chan struct{})
	go func() { defer close(done); v.stop() }()
	select {
	case <-done:
	case <-time.After(within): // mpb does not draw: exit all the same
	}
}

// stop removes every bar and waits until the terminal shows none.
func (v *liveView) stop() {
	if v == nil {
		return
	}
	v.stopOnce.Do(func() {
		shownView.CompareAndSwap(v, nil)
		console.attach(nil)
		v.job.Abort(true)
		for _, b := range v.cores {
			b.Abort(true)
		}
		close(v.quit)
		v.ticking.Wait()
		// Two draws: the first takes the aborted bars out, the second draws none, clearing
		// their lines. A third request returns only once mpb has taken the second, so both
		// have run before Wait shuts mpb down (mpb draws a last time on its own only with its
		// own ticker).
		draw := func() bool {
			_, _ = io.WriteString(v.out, "\r") // as the ticker does
			select {
			case v.refresh <- time.Now():
				return true
			case <-time.After(10 * time.Second):
				// mpb stopped drawing (an error from the terminal). Not a second: a loaded
				// machine may take that long to run mpb's goroutine, and lines still waiting
				// in mpb to go above the bars would be lost with the draw given up.
				return false
			}
		}
		for range 3 {
			if !draw() {
				break
			}
		}
		v.progress.Wait()
	})
}

// results is where a command prints its results (sums, result lines, jobs' output) to
// stdout: straight there, or, while a live view shows on the same terminal, above the bars,
// in whole lines. Printed past the bars, a line was drawn over by the next refresh: on a
// terminal, run lost 3 of 100,000 lines and left stale bars behind. finish writes what is
// left of a last line without its newline; call it after the view has stopped.
func (v *liveView) results(stdout, stderr io.Writer) (w io.Writer, finish func() error) {
	if v == nil || !sameTerminal(stdout, stderr) {
		return stdout, func() error { return nil }
	}
	lw := &lineWriter{w: v.above(stdout)}
	return lw, func() error {
		if len(lw.partial) == 0 {
			return nil
		}
		_, err := stdout.Write(lw.partial)
		lw.partial = nil
		return err
	}
}

// sameTerminal is whether a and b are the same terminal.
func sameTerminal(a, b io.Writer) bool {
	fa, ok := a.(*os.File)
	fb, ok2 := b.(*os.File)
	if !ok || !ok2 || !term.IsTerminal(int(fa.Fd())) || !term.IsTerminal(int(fb.Fd())) {
		return false
	}
	sa, err := fa.Stat()
	sb, err2 := fb.Stat()
	return err == nil && err2 == nil && os.SameFile(sa, sb)
}

// maxPartial is the most of one line a lineWriter keeps waiting for its end.
const maxPartial = 1 << 20

// lineWriter passes on whole lines only, keeping the start of a line until its end comes:
// text above the bars must end in a newline, or the next draw of the bars erases it.
type lineWriter struct {
	w       io.Writer
	partial []byte
}

func (l *lineWriter) Write(p []byte) (int, error) {
	i := bytes.LastIndexByte(p, '\n')
	if i < 0 && len(l.partial)+len(p) <= maxPartial {
		l.partial = append(l.partial, p...)
		return len(p), nil
	}
	if i < 0 { // a line past maxPartial goes as it is: a redraw may cut it, memory stays bounded
		i = len(p) - 1
	}
	chunk := p[:i+1]
	if len(l.partial) > 0 {
		chunk = append(l.partial, chunk...)
	}
	_, err := l.w.Write(chunk)
	l.partial = append(l.partial[:0:0], p[i+1:]...)
	return len(p), err
}
