package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"github.com/supervise-dev/supervise/internal/conformance"
)

func conformanceCommand(pf *poolFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "conformance [flags] -- CMD [ARGS...]",
		Short: "Check that a worker command speaks the supervise protocol",
		Long: `conformance runs a battery of protocol checks (docs/protocol.md) against a worker command
and prints PASS, FAIL or SKIP per check: the handshake and the cookie, echo of every msgpack
type, batches and pipelining, message shapes, payloads near the frame limit and a frame over
it, error answers, cancel of running and queued calls, heartbeats while a handler is busy,
reports, the shutdown message, and exit on stdin EOF.

Each check starts the command afresh, in a process group of its own, and kills the group when
it is done. The worker must serve a handler "echo" that returns its input; the checks that need
"fail" (raises an error with the given message), "sleep" (sleeps the given seconds, stopping
when cancelled) or "report" (reports 0 .. n-1, then returns n) are skipped if it has none.

The first check is the hello: a command that cannot start, or sends no hello within
--start-timeout (3s here unless given), is no worker, and nothing else is checked.

Exit status: 0 every check passed or was skipped, 1 some failed, 2 the command could not run
or sent no hello.`,
		Example: `  supervise conformance -- python3 child/python/conformance_worker.py
  go build -o /tmp/cw ./examples/conformance-worker && supervise conformance -- /tmp/cw`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, _, stop := withSignals(cmd.Context())
			defer stop()
			var hello time.Duration // conformance's own default, unless given
			if cmd.Flag("start-timeout").Changed {
				hello = pf.startTimeout
			}
			failed, noWorker := runConformance(conformance.Checks(ctx, args, hello), cmd.OutOrStdout())
			switch {
			case ctx.Err() != nil:
				return exitError{130}
			case noWorker:
				return exitError{2}
			case failed > 0:
				return exitError{1}
			}
			return nil
		},
	}
}

// runConformance prints each result as it comes and a summary; it returns how many failed,
// and whether the command failed the hello (it is no worker).
func runConformance(results func(func(conformance.Result) bool), out io.Writer) (failed int, noWorker bool) {
	counts := map[conformance.Status]int{}
	for r := range results {
		counts[r.Status]++
		noWorker = noWorker || r.Check == "hello" && r.Status == conformance.Fail
		fmt.Fprintf(out, "%-4s  %-33s %s (%v)\n", r.Status, r.Check, r.Detail, r.Took.Round(1e6))
	}
	fmt.Fprintf(out, "conformance: %d passed, %d failed, %d skipped\n", counts[conformance.Pass], counts[conformance.Fail], counts[conformance.Skip])
	return counts[conformance.Fail], noWorker
}
