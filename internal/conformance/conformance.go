// Package conformance checks that a worker command speaks the supervise wire protocol
// (docs/protocol.md): the battery behind `supervise conformance -- CMD ARGS...`.
//
// Every check starts the command afresh, in a process group of its own, speaks to it as a
// pool would, and kills the group when done. The worker must serve a handler "echo" that
// returns its input; checks that need "fail" (raises with the given message), "sleep" (sleeps
// the given number of seconds, and stops when cancelled) or "report" (reports 0..n-1, then
// returns n) are skipped when the worker does not serve them; "traceparent" (returns the
// running call's traceparent, or nil) makes the trace check check more; "put" (puts each
// item of the list it is given, child.Put, then returns how many) is needed by the puts check.
package conformance

import (
	"cmp"
	"context"
	"fmt"
	"iter"
	"strings"
	"time"
)

// Status is the outcome of one check.
type Status string

// The outcomes.
const (
	Pass Status = "PASS"
	Fail Status = "FAIL"
	Skip Status = "SKIP"
)

// Result is one check's outcome: what it saw, or why it failed or was skipped.
type Result struct {
	Check  string
	Status Status
	Detail string
	Took   time.Duration
}

// DefaultHelloTimeout is how long a worker has to say hello when Checks is given no time.
// Shorter than a pool's StartTimeout: the battery starts the worker some twenty times, and a
// command that is no worker at all (cat) sends no hello ever.
const DefaultHelloTimeout = 3 * time.Second

// answerTimeout bounds every wait for an answer to a quick call.
const answerTimeout = 10 * time.Second

// check is one entry of the battery.
type check struct {
	name  string
	needs string // a handler the check needs besides echo
	run   func(s *suite) (detail string, err error)
}

// suite is one run of the battery: the command, and the handlers its hello named.
type suite struct {
	command  []string
	hello    time.Duration // how long a start waits for the hello
	handlers map[string]bool
	chunks   bool // its hello offers chunk calls
}

var battery = []check{
	{"hello", "", checkHello}, // first: a command that fails it is no worker, and the rest stop
	{"refuses without the cookie", "", checkNoCookie},
	{"refuses a wrong cookie", "", checkWrongCookie},
	{"hello of its own version", "", checkOtherProtocol},
	{"echo of every msgpack type", "", checkEchoTypes},
	{"batches and pipelining", "", checkPipelining},
	{"message shapes and unknown kinds", "", checkShapes},
	{"payload near the frame limit", "", checkLargePayload},
	{"frame over the limit", "", checkOversizedFrame},
	{"empty batch", "", checkEmptyBatch},
	{"message not an array", "", checkNotAnArray},
	{"answer over the frame limit", "fail", checkOversizedAnswer},
	{"error answers", "fail", checkErrors},
	{"cancel", "sleep", checkCancel},
	{"heartbeat", "sleep", checkHeartbeat},
	{"reports", "report", checkReports},
	{"trace context", "", checkTrace},
	{"chunk calls", chunksNeeded, checkChunks},
	{"puts", "put", checkPuts},
	{"shutdown message", "", checkShutdown},
	{"nothing after a shutdown", "", checkAfterShutdown},
	{"exit on stdin EOF", "sleep", checkEOF},
}

// Checks runs the battery against command and yields each check's result as it ends. ctx
// stops it between checks. Each start of the command waits hello (DefaultHelloTimeout if 0)
// for its hello. The first check is "hello": if it fails, the command is no worker, and no
// other check runs.
func Checks(ctx context.Context, command []string, hello time.Duration) iter.Seq[Result] {
	return func(yield func(Result) bool) {
		s := &suite{command: command, hello: cmp.Or(hello, DefaultHelloTimeout), handlers: map[string]bool{}}
		for _, c := range battery {
			if ctx.Err() != nil {
				return
			}
			r := Result{Check: c.name}
			t0 := time.Now()
			switch {
			case c.needs == chunksNeeded && !s.chunks:
				r.Status, r.Detail = Skip, "the worker's hello does not offer chunk calls"
			case c.needs != "" && c.needs != chunksNeeded && !s.handlers[c.needs]:
				r.Status, r.Detail = Skip, fmt.Sprintf("the worker serves no %q handler", c.needs)
			default:
				detail, err := c.run(s)
				r.Status, r.Detail = Pass, detail
				if err != nil {
					r.Status, r.Detail = Fail, err.Error()
				}
			}
			r.Took = time.Since(t0)
			if c.name == "hello" && r.Status == Fail { // nothing else can work
				yield(r)
				return
			}
			if !yield(r) {
				return
			}
		}
	}
}

// withPeer starts the worker with the pool's defaults and runs f on it, then ends it.
func (s *suite) withPeer(f func(p *peer) (string, error)) (string, error) {
	return s.withPeerOpts(defaultMaxFrame, time.Second, f)
}

func (s *suite) withPeerOpts(maxFrame int, heartbeat time.Duration, f func(p *peer) (string, error)) (string, error) {
	p, err := start(s.command, s.hello, maxFrame, heartbeat)
	if err != nil {
		return "", err
	}
	defer p.close()
	detail, err := f(p)
	if err != nil {
		err = p.withStderr(err)
	}
	return detail, err
}

func quote(s string, n int) string {
	if len(s) > n {
		s = s[:n] + "..."
	}
	return fmt.Sprintf("%q", s)
}

func plural(n int, one string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %ss", n, strings.TrimSuffix(one, "s"))
}
