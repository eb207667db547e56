package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
)

// record is one input of exec: its number (from 1), its text, its size with separator.
type record struct {
	seq  int
	text string
	size int
	err  error // reading failed here: no more records
	bad  error // this record cannot be a job: the job fails
}

// readRecords sends the records of r, separated by sep, in batches, until EOF, a read error,
// or ctx ends.
func readRecords(ctx context.Context, r io.Reader, sep byte, out chan<- []record) {
	defer close(out)
	br := bufio.NewReaderSize(r, 64<<10)
	var batch []record
	flush := func() bool {
		if len(batch) == 0 {
			return true
		}
		select {
		case out <- batch:
			batch = nil
			return true
		case <-ctx.Done():
			return false
		}
	}
	defer flush()
	for seq := 1; ; seq++ {
		if len(batch) >= 256 || br.Buffered() == 0 { // a slow pipe's records are not held back
			if !flush() {
				return
			}
		}
		b, long, err := readRecord(br, sep)
		if len(b) == 0 && long == 0 && err != nil {
			if err != io.EOF {
				batch = append(batch, record{seq: seq, err: fmt.Errorf("reading input at record %d: %w", seq, err)})
			}
			return
		}
		if long > 0 { // no command takes an argument that long (Linux: 128 KiB)
			batch = append(batch, record{seq: seq, size: long, bad: fmt.Errorf("longer than %d bytes", maxRecord)})
			continue
		}
		batch = append(batch, record{seq: seq, text: string(bytes.TrimSuffix(b, []byte{sep})), size: len(b)})
	}
}

// maxRecord is the longest input exec takes.
const maxRecord = 1 << 20

// readRecord reads one record up to sep. One longer than maxRecord is read to its end and
// dropped: long is then its length.
func readRecord(br *bufio.Reader, sep byte) (b []byte, long int, err error) {
	for {
		chunk, err := br.ReadSlice(sep)
		if long == 0 && len(b)+len(chunk) <= maxRecord {
			b = append(b, chunk...)
		} else {
			long += len(b) + len(chunk)
			b = nil
		}
		if err != bufio.ErrBufferFull {
			return b, long, err
		}
	}
}

// sendArgs sends the inputs given after ::: as records.
func sendArgs(ctx context.Context, args []string, out chan<- []record) {
	defer close(out)
	batch := make([]record, len(args))
	for i, a := range args {
		batch[i] = record{seq: i + 1, text: a, size: len(a) + 1}
	}
	select {
	case out <- batch:
	case <-ctx.Done():
	}
}

// replacements are GNU parallel's replacement strings exec knows, longest first (a
// strings.Replacer tries its patterns in order at each place).
var replacements = []string{"{//}", "{/.}", "{/}", "{.}", "{#}", "{}"}

// hasReplacement is whether any of args holds a replacement string.
func hasReplacement(args []string) bool {
	for _, a := range args {
		for _, r := range replacements {
			if strings.Contains(a, r) {
				return true
			}
		}
	}
	return false
}

// commandFor is the argv of the job for input number seq: args with the replacement strings
// replaced (the input appended as one more argument where there are none), or with shell,
// args joined by spaces, the input shell-quoted, run by /bin/sh -c.
func commandFor(args []string, input string, seq int, shell, replace bool) []string {
	quote := func(s string) string { return s }
	if shell {
		quote = shellQuote
	}
	base := filepath.Base(input)
	r := strings.NewReplacer(
		"{//}", quote(filepath.Dir(input)),
		"{/.}", quote(strings.TrimSuffix(base, filepath.Ext(base))),
		"{/}", quote(base),
		"{.}", quote(strings.TrimSuffix(input, filepath.Ext(input))),
		"{#}", strconv.Itoa(seq),
		"{}", quote(input))
	argv := make([]string, 0, len(args)+1)
	for _, a := range args {
		if replace {
			a = r.Replace(a)
		}
		argv = append(argv, a)
	}
	if !replace {
		argv = append(argv, quote(input))
	}
	if shell {
		return []string{"/bin/sh", "-c", strings.Join(argv, " ")}
	}
	return argv
}

// shellQuote quotes s for a POSIX shell: as one word, taken literally.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./=:,+@%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// commandLine is argv as the job log shows it.
func commandLine(argv []string) string {
	if len(argv) == 3 && argv[0] == "/bin/sh" && argv[1] == "-c" {
		return argv[2]
	}
	return strings.Join(argv, " ")
}
