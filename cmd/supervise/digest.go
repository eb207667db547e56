package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"iter"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/supervise-dev/supervise/supervisor"
)

func digestCommand(pf *poolFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "digest [flags] PATH...",
		Short: "Print the SHA-512 of every regular file under the paths, as sha512sum does",
		Long: `digest prints one line per regular file under the given paths, byte for byte what
sha512sum prints for it: "<128 hex digits>  <path>", with a leading backslash and the name
escaped (\\, \n, \r) when the name holds a backslash, newline or carriage return.

Files are listed in sorted walk order (each PATH in turn, directories depth first, entries
sorted by name), so two runs print the same bytes. Symbolic links inside the trees, FIFOs,
sockets and devices are skipped, as 'find -type f' skips them; a PATH that is a symbolic link
is followed. A file that cannot be read prints "supervise: PATH: reason" on stderr, the rest
go on, and the exit status is 1.

The workers open and read the files themselves: the parent sends them paths, small files
batched together, the largest files first so that one big file does not finish last.

Exit status: 0 all files hashed, 1 some could not be read, 2 the run itself failed.`,
		Example: `  supervise digest .
  supervise --workers 8 digest ./dir other/file.iso
  supervise digest ./dir | sha512sum -c --quiet`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, paths []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return digest(ctx, pf, paths, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
}

// Batching: files at least this large travel alone; smaller ones share a task up to these caps.
const (
	batchBytes = 4 << 20
	batchFiles = 256
)

func digest(ctx context.Context, pf *poolFlags, paths []string, stdout, stderr io.Writer) error {
	log, err := pf.logger()
	if err != nil {
		return err
	}
	files := walk(paths)
	batches := plan(files)

	pool, err := supervisor.Start(ctx, supervisor.Config{Workers: pf.workers, InFlight: pf.inFlight, Logger: log})
	if err != nil {
		return err
	}
	defer pool.Close()

	out := bufio.NewWriterSize(stdout, 256<<10)
	failed := false
	next := 0 // files[:next] are printed
	flush := func() {
		for ; next < len(files) && (files[next].done || files[next].err != ""); next++ {
			f := &files[next]
			if f.err != "" {
				out.Flush() // keep stdout and stderr in walk order on a terminal
				fmt.Fprintf(stderr, "supervise: %s: %s\n", f.path, f.err)
				failed = true
				continue
			}
			out.Write(sumLine(f.sum, f.path))
		}
	}
	flush()
	hash := supervisor.Bind[[]string, []fileSum](pool, "digest")
	for r := range hash.MapUnordered(ctx, batchPaths(files, batches)) {
		for k, i := range batches[r.Index] {
			f := &files[i]
			switch {
			case r.Err != nil:
				f.err = r.Err.Error()
			case k >= len(r.Value):
				f.err = fmt.Sprintf("the worker returned %d sums for %d files", len(r.Value), len(batches[r.Index]))
			case r.Value[k].Err != "":
				f.err = r.Value[k].Err
			default:
				f.sum, f.done = r.Value[k].Sum, true
			}
		}
		flush()
	}
	if err := out.Flush(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := pool.Shutdown(ctx); err != nil {
		return err
	}
	if failed {
		return exitError{1}
	}
	return nil
}

// plan groups the files to hash into tasks, largest files first: a file of batchBytes or more
// is a task of its own; smaller ones are grouped up to batchBytes or batchFiles per task.
func plan(files []file) [][]int {
	order := make([]int, 0, len(files))
	for i, f := range files {
		if f.err == "" {
			order = append(order, i)
		}
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(files[b].size, files[a].size) })
	var batches [][]int
	var cur []int
	var bytes int64
	for _, i := range order {
		cur = append(cur, i)
		bytes += files[i].size
		if bytes >= batchBytes || len(cur) >= batchFiles {
			batches = append(batches, cur)
			cur, bytes = nil, 0
		}
	}
	if len(cur) > 0 {
		batches = append(batches, cur)
	}
	return batches
}

func batchPaths(files []file, batches [][]int) iter.Seq[[]string] {
	return func(yield func([]string) bool) {
		for _, b := range batches {
			paths := make([]string, len(b))
			for k, i := range b {
				paths[k] = files[i].path
			}
			if !yield(paths) {
				return
			}
		}
	}
}

// sumLine formats one line as sha512sum does: names holding a backslash, newline or carriage
// return are escaped, and the line then starts with a backslash.
func sumLine(sum []byte, name string) []byte {
	line := make([]byte, 0, 1+2*len(sum)+2+len(name)+1)
	escape := strings.ContainsAny(name, "\\\n\r")
	if escape {
		line = append(line, '\\')
	}
	line = hex.AppendEncode(line, sum)
	line = append(line, ' ', ' ')
	if !escape {
		line = append(line, name...)
	} else {
		for i := 0; i < len(name); i++ {
			switch c := name[i]; c {
			case '\\':
				line = append(line, '\\', '\\')
			case '\n':
				line = append(line, '\\', 'n')
			case '\r':
				line = append(line, '\\', 'r')
			default:
				line = append(line, c)
			}
		}
	}
	return append(line, '\n')
}
