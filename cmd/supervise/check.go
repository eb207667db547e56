package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync/atomic"

	"github.com/spf13/pflag"
	"github.com/supervise-dev/supervise/internal/digest"
	"golang.org/x/sys/unix"
)

// checkMode is what digest -c prints: sha512sum's --quiet, --status and --warn set it, the
// last one given winning, as in sha512sum.
type checkMode int

const (
	checkNormal checkMode = iota // every file's line, and the warnings
	checkQuiet                   // not the OK lines
	checkStatus                  // nothing but the exit status (and open errors)
	checkWarn                    // the warnings, and one for each improperly formatted line
)

// checkFlags are digest -c's.
type checkFlags struct {
	on            bool
	mode          checkMode
	modeAt        int64 // when --status or --warn was given (flagSeq)
	strict        bool
	ignoreMissing bool
}

func (c *checkFlags) add(fs *pflag.FlagSet) {
	fs.BoolVarP(&c.on, "check", "c", false, "read SHA-512 sums from the FILEs and check them, as sha512sum -c (its output, byte for byte)")
	c.modeFlag(fs, "status", "", checkStatus, "with -c: print nothing; the exit status says")
	c.modeFlag(fs, "warn", "w", checkWarn, "with -c: warn about each improperly formatted line")
	fs.BoolVar(&c.strict, "strict", false, "with -c: exit 1 on improperly formatted lines")
	fs.BoolVar(&c.ignoreMissing, "ignore-missing", false, "with -c: say nothing of missing files")
}

func (c *checkFlags) modeFlag(fs *pflag.FlagSet, name, short string, m checkMode, usage string) {
	set := func(on bool) {
		if on {
			c.mode, c.modeAt = m, flagSeq.Add(1)
		}
	}
	fs.VarPF(funcBool(set), name, short, usage).NoOptDefVal = "true"
}

// resolve settles the mode: the pool's --quiet (no live view) is sha512sum's --quiet too,
// and of --quiet, --status and --warn, the last given wins, as in sha512sum.
func (c *checkFlags) resolve(quiet bool, quietAt int64) {
	if quiet && quietAt > c.modeAt {
		c.mode = checkQuiet
	}
}

// flagSeq numbers the flags that must know which came last, as they are parsed.
var flagSeq atomic.Int64

// orderedBool is a boolean flag that notes when it was set (flagSeq).
type orderedBool struct {
	v  *bool
	at *int64
}

func (b orderedBool) String() string {
	if b.v != nil && *b.v {
		return "true"
	}
	return "false"
}
func (b orderedBool) Type() string { return "bool" }
func (b orderedBool) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err == nil {
		*b.v, *b.at = v, flagSeq.Add(1)
	}
	return err
}

// funcBool is a boolean flag that calls a function when set.
type funcBool func(bool)

func (f funcBool) String() string { return "false" }
func (f funcBool) Type() string   { return "bool" }
func (f funcBool) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err == nil {
		f(v)
	}
	return err
}

// validate refuses what sha512sum refuses, and what -c cannot mean.
func (c *checkFlags) validate(fs *pflag.FlagSet) error {
	checkOnly := []string{"status", "warn", "strict", "ignore-missing"}
	if !c.on {
		for _, f := range checkOnly {
			if fs.Changed(f) {
				return fmt.Errorf("digest --%s: meaningful only with -c (when checking sums)", f)
			}
		}
		return nil
	}
	for _, f := range []string{"tag", "zero", "files-from", "exclude", "one-file-system", "null", "resume", "resume-failed"} {
		if fs.Changed(f) {
			return fmt.Errorf("digest -c: --%s means nothing when checking sums", f)
		}
	}
	return nil
}

// sumsFile is one FILE of digest -c: what its lines came to, for its summary.
type sumsFile struct {
	shown                               string // its name, quoted for messages
	misformatted, unreadable, different int
	formatted, matched                  bool
}

// checkItem is what a walkItem of digest -c carries: a line to verify (want set), an
// improperly formatted line, or the end of a sums file (its summary).
type checkItem struct {
	file         *sumsFile
	want         []byte
	misformatted bool
	tooLong      bool   // a line longer than maxSumsLine: its file cannot be opened
	note         string // printed on stderr in its place: a warning, or why the file stopped
	end          bool
}

// maxSumsLine is the longest line of a sums file read: of a longer one, only the start is
// kept, to tell whether it is improperly formatted, or names a file that cannot be opened
// (sha512sum's answer too, but it prints the whole name).
const maxSumsLine = 1 << 20

// sumsLines sends the lines of the sums files, in order, as walk sends files: a line's file
// is hashed by the workers when it is a regular file, else here (a link is followed, a
// directory fails as it does for sha512sum: "Is a directory").
func sumsLines(ctx context.Context, files []string, batch int, cf checkFlags, stdin io.Reader, out chan<- []walkItem) {
	defer close(out)
	w := walker{ctx: ctx, out: out, batch: batch}
	p := newSumsParser()
	loc := utf8Locale()
	for _, name := range files {
		if ctx.Err() != nil {
			break
		}
		f := &sumsFile{shown: quoteName(name, loc)}
		if name == "-" {
			f.shown = quoteName("standard input", loc)
		}
		w.add(sumsEnd(f, sumsFileLines(&w, p, f, name, stdin, cf.mode == checkWarn)))
	}
	w.flush()
}

// sumsFileLines opens sums file name (- is stdin) and sends its lines; it returns why it
// could not be read, or "".
func sumsFileLines(w *walker, p *sumsParser, f *sumsFile, name string, stdin io.Reader, warn bool) string {
	if name == "-" {
		return sumsOf(w, p, f, stdin, true, warn)
	}
	file, err := os.Open(name)
	if err != nil {
		return fmt.Sprintf("%s: %s", f.shown, digest.Describe(err))
	}
	defer file.Close()
	return sumsOf(w, p, f, file, false, warn)
}

// sumsEnd is the item that ends a sums file: its summary, or (note set) why it stopped.
func sumsEnd(f *sumsFile, note string) walkItem {
	return walkItem{size: -1, sum: resumed, check: &checkItem{file: f, note: note, end: true}}
}

// sumsOf sends the lines of one sums file; it returns why the file could not be read on.
func sumsOf(w *walker, p *sumsParser, f *sumsFile, r io.Reader, stdin, warn bool) string {
	br := bufio.NewReaderSize(r, 64<<10)
	for n := 1; w.ctx.Err() == nil; n++ {
		line, long, err := readLine(br)
		if err != nil && err != io.EOF {
			return f.shown + ": read error" // sha512sum's words: no errno
		}
		if len(line) == 0 && err == io.EOF {
			return ""
		}
		if line[0] != '#' {
			line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
			if len(line) > 0 {
				w.add(checkLine(p, f, line, long, n, stdin, warn))
			}
		}
		if err == io.EOF {
			return ""
		}
	}
	return ""
}

// readLine reads a line, its "\n" included; of a line longer than maxSumsLine, it returns
// the start, long set, and drops the rest.
func readLine(br *bufio.Reader) (line []byte, long bool, err error) {
	for {
		part, err := br.ReadSlice('\n')
		if len(line) < maxSumsLine {
			line = append(line, part[:min(len(part), maxSumsLine-len(line))]...)
		} else {
			long = true
		}
		if err != bufio.ErrBufferFull {
			return line, long || len(line) >= maxSumsLine && !bytes.HasSuffix(line, []byte("\n")), err
		}
	}
}

func checkLine(p *sumsParser, f *sumsFile, line []byte, long bool, n int, stdin, warn bool) walkItem {
	name, want, ok := p.parse(line)
	if long && ok { // its name is too long to open: no file system takes one this long
		note := fmt.Sprintf("%s: %d: a line longer than %d bytes: its file cannot be opened (%s)", f.shown, n, maxSumsLine, digest.Describe(unix.ENAMETOOLONG))
		return walkItem{size: -1, sum: resumed, check: &checkItem{file: f, tooLong: true, note: note}}
	}
	if !ok || stdin && name == "-" {
		note := ""
		if warn {
			note = fmt.Sprintf("%s: %d: improperly formatted SHA512 checksum line", f.shown, n)
		}
		return walkItem{size: -1, sum: resumed, check: &checkItem{file: f, misformatted: true, note: note}}
	}
	it := checkTarget(name)
	it.check = &checkItem{file: f, want: want}
	return it
}

// checkTarget is the item for a file a sums line names: a regular file goes to the workers;
// anything else is read here, as sha512sum would read it (following a link).
func checkTarget(name string) walkItem {
	if name == "-" {
		return hashReader("-", os.Stdin)
	}
	var st unix.Stat_t
	if err := unix.Lstat(name, &st); err == nil && st.Mode&unix.S_IFMT == unix.S_IFREG {
		return walkItem{path: name, size: st.Size}
	}
	return hashHere(name)
}

// checker prints digest -c's lines as the items come in order, and keeps the count of what
// failed, as sha512sum -c does for each sums file.
type checker struct {
	flags checkFlags
	loc   bool
	bad   bool // some sums file did not check out: exit status 1
}

var noSuchFile = digest.Describe(unix.ENOENT)

// print writes an item's line (stdout) and messages (errs, flushing out first); it returns
// whether the item is a file that failed.
func (c *checker) print(it *walkItem, sum []byte, out *bufio.Writer, errs io.Writer) bool {
	ck, f := it.check, it.check.file
	warn := func(format string, args ...any) {
		out.Flush() // stdout and stderr in order on a terminal
		fmt.Fprintf(errs, "supervise: "+format+"\n", args...)
	}
	switch {
	case ck.end:
		if ck.note != "" { // the sums file could not be opened or read on
			warn("%s", ck.note)
			c.bad = true
			return false
		}
		c.summary(f, warn)
		return false
	case ck.tooLong:
		f.formatted = true
		f.unreadable++
		warn("%s", ck.note)
		return false
	case ck.misformatted:
		f.misformatted++
		if ck.note != "" {
			warn("%s", ck.note)
		}
		return false
	}
	f.formatted = true
	status := c.flags.mode == checkStatus
	switch {
	case it.err != "" && c.flags.ignoreMissing && it.err == noSuchFile:
		return false
	case it.err != "":
		f.unreadable++
		warn("%s: %s", quoteName(it.path, c.loc), it.err)
		if !status {
			out.WriteString(checkedName(it.path) + ": FAILED open or read\n")
		}
		return true
	case bytes.Equal(sum, ck.want):
		f.matched = true
		if !status && c.flags.mode != checkQuiet {
			out.WriteString(checkedName(it.path) + ": OK\n")
		}
		return false
	default:
		f.different++
		if !status {
			out.WriteString(checkedName(it.path) + ": FAILED\n")
		}
		return true
	}
}

// summary is what sha512sum -c says at the end of a sums file, and whether it checked out.
func (c *checker) summary(f *sumsFile, warn func(string, ...any)) {
	if !f.formatted {
		warn("%s: no properly formatted checksum lines found", f.shown)
		c.bad = true
		return
	}
	if c.flags.mode != checkStatus {
		plural := func(n int, one, many string) {
			if n == 1 {
				warn("WARNING: 1 %s", one)
			} else if n > 1 {
				warn("WARNING: %d "+many, n)
			}
		}
		plural(f.misformatted, "line is improperly formatted", "lines are improperly formatted")
		plural(f.unreadable, "listed file could not be read", "listed files could not be read")
		plural(f.different, "computed checksum did NOT match", "computed checksums did NOT match")
		if c.flags.ignoreMissing && !f.matched {
			warn("%s: no file was verified", f.shown)
		}
	}
	if f.different > 0 || f.unreadable > 0 || c.flags.strict && f.misformatted > 0 || c.flags.ignoreMissing && !f.matched {
		c.bad = true
	}
}
