package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/sha512"
	"errors"
	"fmt"
	"github.com/supervise-dev/supervise/internal/digest"
	"io"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/spf13/cobra"
	"github.com/supervise-dev/supervise/supervisor"
)

func digestCommand(pf *poolFlags) *cobra.Command {
	b := defaultBatching
	var cf clusterFlags
	var lf logFlags
	var format lineFormat
	var list listFlags
	var check checkFlags
	cmd := &cobra.Command{
		Use:   "digest [flags] PATH...\n  supervise digest -c [flags] [FILE...]",
		Short: "Print the SHA-512 of every regular file under the paths, as sha512sum does",
		Long: `digest prints one line per regular file under the given paths, byte for byte what
sha512sum prints for it: "<128 hex digits>  <path>", with a leading backslash and the name
escaped (\\, \n, \r) when the name holds a backslash, newline or carriage return. --tag
prints sha512sum --tag's "SHA512 (<path>) = <hex>"; -z ends lines with NUL and escapes
nothing, as sha512sum -z. A PATH of - is standard input.

Files are listed in sorted walk order (each PATH in turn, directories depth first, entries
sorted by name), so two runs print the same bytes. Symbolic links inside the trees, FIFOs,
sockets and devices are skipped, as 'find -type f' skips them; a PATH that is a symbolic link
is followed. A PATH that is not a directory or a plain regular file (a FIFO, a device,
/dev/stdin, a link to a file) is read by supervise itself, to its end. Every file is read to
its end (a short read, as files in /proc give, is not the end), and workers open only what is
still a regular file, without following links: a file swapped for a FIFO or a link after the
walk listed it fails, saying so. A file that cannot be read prints "supervise: PATH: reason"
on stderr, the rest go on, and the exit status is 1. A file that takes longer than --timeout
fails alone ("time limit exceeded (1s)"): the files batched with it go again, each in a task
of its own.

The workers open and read the files themselves: the parent sends them paths, small files
batched together; files of 1 MiB or more go largest first, ahead of the small batches, so that
one big file does not finish last. On x86-64 CPUs with AVX2 a worker hashes four files at
once, one in each lane of a vector SHA-512 (about twice the bytes a core hashes one file at a
time with AVX2, three times with AVX-512VL), and big files go four to a task. Elsewhere files are hashed one at a time and big files
get a task each; files over 256 KiB then use OpenSSL's libcrypto when the system has one
(libcrypto.so.3 or .1.1, loaded at run time), else Go's crypto/sha512. SUPERVISE_HASH=openssl
or SUPERVISE_HASH=go forces one file at a time, with that SHA-512 for big files or Go's for
all.

Memory: the parent keeps only what is in flight, not the tree. The walk stays at most 16,384
files ahead of the output, and printed lines are dropped; a big file slow to hash holds the
output, and with it the walk, back until it is done (the workers finish what they have
meanwhile). A directory's entries are read whole, to be sorted, as find | sort would.

With -c (--check), digest reads sums from each FILE (- or none: standard input), in
sha512sum's form or its --tag form, and checks them as sha512sum -c does, the files hashed in
parallel on the pool: it prints "NAME: OK", "NAME: FAILED" or "NAME: FAILED open or read" for
each line in order, the same warnings on stderr, and exits 1 when a file failed, could not be
read, or a FILE had no sums. --quiet leaves out the OK lines, --status prints nothing, -w warns
of each improperly formatted line (of these three, the last given wins), --strict fails on
improperly formatted lines, and --ignore-missing passes over files that do not exist. Output
and exit status are sha512sum -c's (GNU coreutils 9.1), byte for byte, but for the program's
name in messages, and for a line longer than 1 MiB, whose name is not printed: it is counted as
a file that could not be read (its name is too long to open). A name in a sums file is opened
as sha512sum opens it: a link is followed; what is not a regular file is read by supervise.

With --connect URL the files are hashed by the worker machines of a queue on a NATS
JetStream server (supervise serve; supervise worker --connect URL on each machine): every path
must name the same file on every machine, as on a shared file system (relative paths are
sent made absolute, from this directory, and printed as given).
The pool flags then belong to the machines.

Exit status: 0 all files hashed (or checked out), 1 some could not be read (or did not check
out), 2 the run itself failed.`,
		Example: `  supervise digest .
  supervise --workers 8 digest ./dir other/file.iso
  supervise digest ./dir > SUMS && supervise digest -c --quiet SUMS
  find . -name '*.iso' -print0 | supervise digest --files-from - -0`,
		Args: func(cmd *cobra.Command, paths []string) error {
			if err := check.validate(cmd.Flags()); err != nil {
				return err
			}
			if check.on {
				return nil // no FILE: standard input
			}
			if list.from != "" {
				if len(paths) > 0 {
					return fmt.Errorf("digest --files-from %s: no PATH beside it (%q)", list.from, paths)
				}
				return nil
			}
			return cobra.MinimumNArgs(1)(cmd, paths)
		},
		RunE: func(cmd *cobra.Command, paths []string) error {
			if check.on {
				if len(paths) == 0 {
					paths = []string{"-"}
				}
				check.resolve(pf.quiet, pf.quietAt)
				src := func(ctx context.Context, batch int, _ bool, out chan<- []walkItem) {
					sumsLines(ctx, paths, batch, check, cmd.InOrStdin(), out)
				}
				ck := &checker{flags: check, loc: utf8Locale()}
				return untilSignal(cmd, "files not checked", func(ctx context.Context) error {
					return digestTrees(ctx, pf, &cf, lf, format, src, ck, b, cmd.OutOrStdout(), cmd.ErrOrStderr())
				})
			}
			roots, closeList, err := list.roots(paths, cmd.InOrStdin())
			if err != nil {
				return err
			}
			defer closeList()
			src := func(ctx context.Context, batch int, sizes bool, out chan<- []walkItem) {
				walk(ctx, roots, batch, sizes, list, out)
			}
			return untilSignal(cmd, "files not hashed", func(ctx context.Context) error {
				return digestTrees(ctx, pf, &cf, lf, format, src, nil, b, cmd.OutOrStdout(), cmd.ErrOrStderr())
			})
		},
	}
	cf.add(cmd.Flags(), "hash the files")
	lf.add(cmd.Flags(), "file")
	cmd.Flags().StringVar(&list.from, "files-from", "", "hash the paths listed in `FILE`, one a line (- for stdin), instead of PATHs")
	cmd.Flags().StringArrayVar(&list.exclude, "exclude", nil, "skip what `PATTERN` matches, a .gitignore line matched from each PATH (repeatable; a PATH itself is never skipped)")
	cmd.Flags().BoolVarP(&list.oneFS, "one-file-system", "x", false, "do not descend into directories on other file systems (find -xdev): digest / skips /proc")
	cmd.Flags().BoolVarP(&list.null, "null", "0", false, "--files-from's paths end with NUL, not newline (find -print0)")
	cmd.Flags().BoolVar(&format.tag, "tag", false, "print BSD-style lines: SHA512 (PATH) = HEX, as sha512sum --tag")
	cmd.Flags().BoolVarP(&format.zero, "zero", "z", false, "end each line with NUL, not newline, and do not escape names (sha512sum -z)")
	check.add(cmd.Flags())
	// Tuning knobs, hidden: the tests use them to force the re-queueing of budget-cut tasks.
	cmd.Flags().IntVar(&b.files, "batch-files", b.files, "files per task")
	cmd.Flags().Int64Var(&b.bytes, "batch-bytes", b.bytes, "bytes a task hashes before it hands back the rest")
	cmd.Flags().IntVar(&b.ahead, "max-ahead", b.ahead, "items walked and not yet printed, at most")
	_ = cmd.Flags().MarkHidden("max-ahead")
	_ = cmd.Flags().MarkHidden("batch-files")
	_ = cmd.Flags().MarkHidden("batch-bytes")
	return cmd
}

// Batching. The walk puts up to batching.files files in a task, whose worker stops once it
// has hashed batching.bytes (files of unknown size: the rest go back to the queue). Fewer, bigger
// tasks cost less: on 20,000 small files, 1,024 files a task is 12-15% faster than 256
// (fewer wake-ups, GCs and preemptions in the workers); the byte budget keeps a task of
// larger files from running long at the end of the job.
type batching struct {
	files int
	bytes int64
	ahead int // how many items the walk may be ahead of the output (maxAhead)
}

var defaultBatching = batching{files: 1024, bytes: 32 << 20, ahead: maxAhead}

// task is one digest task in flight: the files it covers, by index in walk order.
type task struct {
	files []int
	whole bool
}

type taskDone struct {
	task
	ans      digest.Answer
	err      error
	reported int64 // bytes already counted from the task's progress reports
}

// digestTrees runs the whole job. The walk streams batches of paths in walk order; each batch is
// one task. Workers defer files of digest.BigFile bytes or more, which come back with their size and
// are hashed digest.BigPerTask to a task, largest first, ahead of the small batches still waiting: a
// big file starts as soon as it is known, so that it does not finish last. Lines are printed in
// walk order as soon as every line before them is known.
// The items come from src: a walk of trees, or the lines of sums files to check (ck set).
func digestTrees(ctx context.Context, pf *poolFlags, cf *clusterFlags, lf logFlags, format lineFormat, src itemSource, ck *checker, b batching, stdout, stderr io.Writer) error {
	cfg, err := pf.config()
	if err != nil {
		return err
	}
	rule, past, jl, err := lf.open()
	if err != nil {
		return err
	}
	defer jl.close()
	if rule.percent > 0 {
		return errors.New("digest --halt: a percentage needs the number of files, not known before the walk ends: give a count")
	}
	log := cfg.Logger
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	t0 := time.Now()
	view := pf.liveView(stderr, "digest", "files")
	defer view.stop() // before the pool closes: the bars go first
	msgs := view.above(stderr)
	walked := make(chan []walkItem, 2)                // the walk is ahead by at most maxAhead items, and these
	go src(ctx, max(1, b.files), view != nil, walked) // while the pool starts

	job, err := startJob(ctx, pf, cf, cfg, view)
	if err != nil {
		return err
	}
	tasks, cancelTasks := context.WithCancel(ctx) // --halt now cancels the tasks out
	defer cancelTasks()
	ends := &jobEnds{log: jl, halt: halter{rule: rule}, cancel: cancelTasks}
	// Cancelling ctx (a signal, or an early return) shuts the pool down: queued tasks fail,
	// running ones are cancelled; Close then waits for the workers to exit.
	defer func() {
		cancel()
		job.close()
	}()
	log.Debug("pool started", "workers", pf.workers, "took", time.Since(t0))

	var (
		items     []walkItem // the paths walked and not yet printed (and some printed), in walk order
		sums      [][]byte   // by item; nil until known
		base      = 0        // the number in walk order of items[0]: item i is items[i-base]
		waiting   []task     // small batches not yet submitted
		big       []int      // deferred big files, largest first
		sizes     = map[int]int64{}
		window    = job.window(pf.workers*pf.inFlight + pf.workers) // tasks outstanding at most
		pending   = 0
		done      = make(chan taskDone, window)
		printed   = 0
		failed    = 0
		hashed    = int64(0)
		what      *taskNames // the tasks' files, for the report's slowest tasks
		abandoned bool
	)
	if job.means != nil {
		what = newTaskNames()
	}
	results, finish := view.results(stdout, stderr)
	out := bufio.NewWriterSize(results, 256<<10)
	// Machines of a queue open the paths themselves, from their own working directories: a
	// relative path goes to them made absolute (unchanged: no cleaning, which would change
	// what ".." means under a symbolic link), and is printed as given.
	var cwd string
	if job.client != nil {
		if cwd, err = os.Getwd(); err != nil {
			return fmt.Errorf("digest --connect: relative paths need the working directory: %w", err)
		}
	}
	submit := func(t task) {
		req := digest.Request{Paths: make([]string, len(t.files)), Whole: t.whole}
		if !t.whole {
			req.Budget = b.bytes
		}
		for k, i := range t.files {
			req.Paths[k] = items[i-base].path
			if cwd != "" && !filepath.IsAbs(req.Paths[k]) {
				req.Paths[k] = cwd + string(filepath.Separator) + req.Paths[k]
			}
		}
		req.Progress = view != nil && t.whole // a big file's bytes, as they are read (from other machines too)
		f := submitTo[digest.Request, digest.Answer](tasks, job, "digest", req)
		pending++
		if job.means != nil {
			what.started(f.ID(), describeTask(req.Paths))
		}
		if !req.Progress { // done never blocks: at most window tasks are pending
			f.OnDone(func() {
				ans, err := f.Get(context.Background()) // it is done: no wait
				what.ended(f)
				done <- taskDone{t, ans, err, 0}
			})
			return
		}
		go func() { // a big file's bytes for the live view, as they are read
			var reported int64
			for r := range f.(reporting).Reports(context.Background()) {
				var n int64
				if r.Decode(&n) == nil {
					view.hashed(0, n-reported)
					reported = n
				}
			}
			ans, err := f.Get(context.Background()) // every task ends, even when ctx is cancelled
			what.ended(f)
			done <- taskDone{t, ans, err, reported}
		}()
	}
	// ended logs a file's line (a job per file, keyed by its path for --resume; hashed in
	// batches, its run time is not its own: 0) and counts it against --halt.
	ended := func(i int, failed bool) {
		e := jobEntry{Seq: i + 1, Start: time.Now(), Send: max(0, items[i-base].size), Command: items[i-base].path}
		if failed {
			e.Exit = 1
		}
		ends.ended(e)
	}
	printReady := func() {
		for ; !ends.halted && printed < base+len(items) && (items[printed-base].err != "" || sums[printed-base] != nil); printed++ {
			it := &items[printed-base]
			switch {
			case it.check != nil:
				if bad := ck.print(it, sums[printed-base], out, msgs); it.check.want != nil {
					ended(printed, bad)
				}
			case it.err != "":
				out.Flush() // keep stdout and stderr in walk order on a terminal
				fmt.Fprintf(msgs, "supervise: %s: %s\n", it.path, it.err)
				failed++
				ended(printed, true)
			case len(sums[printed-base]) > 0: // not one --resume skips
				out.Write(format.line(sums[printed-base], it.path))
				ended(printed, false)
			}
		}
		// What is printed is dropped: memory follows the window, not the tree. The slices
		// are copied once half of them is printed, so that their arrays shrink too.
		if k := printed - base; k > 0 && k >= len(items)/2 {
			items, sums, base = slices.Clone(items[k:]), slices.Clone(sums[k:]), printed
		}
	}
	for {
		if ctx.Err() != nil && !abandoned { // interrupted: submit nothing more, collect what is out
			big, waiting, abandoned = nil, nil, true
			job.abandon()
		}
		if ends.halted { // --halt: submit nothing more, walk no further
			big, waiting, walked = nil, nil, nil
		}
		if walked == nil && pending == 0 && len(waiting) == 0 && len(big) == 0 {
			break
		}
		for pending < window && (len(big) > 0 || len(waiting) > 0) {
			if len(big) > 0 {
				k := min(len(big), digest.BigPerTask)
				submit(task{files: big[:k:k], whole: true})
				big = big[k:]
			} else {
				submit(waiting[0])
				waiting = waiting[1:]
			}
		}
		// The walk waits while maxAhead items are walked and not printed: a big file slow to
		// hash holds the output back, and the walk with it, rather than memory growing.
		var walkedIn <-chan []walkItem
		if base+len(items)-printed < max(1, b.ahead) {
			walkedIn = walked
		}
		select {
		case batch, ok := <-walkedIn:
			if !ok {
				walked = nil
				view.walked()
				log.Debug("walked", "files", base+len(items), "took", time.Since(t0))
				continue
			}
			var t task
			var size int64
			for _, it := range batch {
				if it.err == "" && it.sum == nil && past.skip(0, it.path, true, lf.resumeFailed) {
					it.sum = resumed // --resume: hashed before
				}
				if it.err == "" && it.sum == nil {
					t.files = append(t.files, base+len(items))
					size += max(0, it.size)
				}
				items = append(items, it)
				sums = append(sums, it.sum)
			}
			view.found(len(t.files), size)
			if len(t.files) > 0 {
				waiting = append(waiting, t)
			}
		case d := <-done:
			pending--
			hashed += d.ans.Bytes
			view.hashed(0, max(0, d.ans.Bytes-d.reported)) // a failed task: counted as far as read
			if d.err != nil && (ctx.Err() != nil || ends.halted && tasks.Err() != nil) {
				continue // interrupted or halted: these files are left undone, not failed
			}
			if d.err != nil && len(d.files) > 1 && errors.Is(d.err, supervisor.ErrTimeout) {
				// One of its files overran --timeout: each goes again in a task of its own,
				// first in line, so that only the one that overran fails.
				log.Debug("digest task over its time limit: its files go again one by one", "files", len(d.files))
				alone := make([]task, len(d.files))
				for k, i := range d.files {
					alone[k] = task{files: []int{i}, whole: d.whole}
				}
				waiting = append(alone, waiting...)
				continue
			}
			switch {
			case d.err != nil && errors.Is(d.err, supervisor.ErrTimeout): // its file's line says it all
				log.Debug("digest task over its time limit", "files", len(d.files), "err", d.err)
			case d.err != nil: // the whole story (a dead worker's stderr tail) beside the files' lines
				log.Error("digest task failed", "files", len(d.files), "err", d.err)
			}
			if d.err == nil && d.ans.Done < len(d.files) { // over budget: the rest, first in line
				if d.ans.Done <= 0 {
					d.err = fmt.Errorf("the worker attempted none of %d files", len(d.files))
				} else {
					waiting = slices.Insert(waiting, 0, task{files: d.files[d.ans.Done:]})
					d.files = d.files[:d.ans.Done]
				}
			}
			finished := 0
			for k, i := range d.files {
				delete(sizes, i) // a big file's size, needed only while it waits
				finished++
				switch {
				case d.err != nil:
					items[i-base].err = taskFailure(d.err)
				case len(d.ans.Sums) != sha512.Size*len(d.files):
					items[i-base].err = fmt.Sprintf("the worker returned %d bytes of sums for %d files", len(d.ans.Sums), len(d.files))
				case d.ans.Failed[k] != "":
					items[i-base].err = d.ans.Failed[k]
				case d.ans.Deferred != nil && d.ans.Deferred[k] > 0 && !d.whole:
					sizes[i] = d.ans.Deferred[k]
					at, _ := slices.BinarySearchFunc(big, sizes[i], func(j int, size int64) int { return cmp.Compare(size, sizes[j]) })
					big = slices.Insert(big, at, i)
					finished--
				default:
					// Its own copy: a slice of the answer would keep the whole answer alive.
					sums[i-base] = bytes.Clone(d.ans.Sums[k*sha512.Size : (k+1)*sha512.Size])
				}
			}
			view.hashed(finished, 0)
			printReady()
		}
	}
	printReady()
	view.stop()
	log.Debug("hashed", "files", base+len(items), "took", time.Since(t0))
	if err := out.Flush(); err != nil {
		return err
	}
	if err := finish(); err != nil {
		return err
	}
	if ctx.Err() != nil {
		left := 0
		for i := range items {
			if sums[i] == nil && items[i].err == "" { // the window: the walk stopped there
				left++
			}
		}
		return interruptedError{left: left, total: base + len(items)}
	}
	if err := job.close(); err != nil {
		return err
	}
	if job.means != nil {
		r := newReport("digest", job.pool, time.Since(t0), job.means, what.name)
		r.Items, r.Bytes, r.Failed = base+len(items), hashed, failed
		if err := writeReports(pf, r, stderr); err != nil {
			return err
		}
	}
	if ends.err != nil {
		return ends.err
	}
	if failed > 0 || ck != nil && ck.bad {
		return exitError{1}
	}
	return nil
}

// reporting is a future with reports: a pool's, or a queue's.
type reporting interface {
	Reports(context.Context) iter.Seq[supervisor.Report]
}

// itemSource sends digest's items in order on out, in slices of up to batch items, and
// closes it: walk, or sumsLines. sizes asks for files' sizes, for the live view.
type itemSource func(ctx context.Context, batch int, sizes bool, out chan<- []walkItem)

// maxAhead is how many items the walk may be ahead of the output: the parent's memory is
// bounded by it (some 600 bytes an item, the answers of the tasks out included), not by the tree.
const maxAhead = 1 << 14

// resumed is the sum of a file --resume skips: known, and printed as nothing.
var resumed = []byte{}
