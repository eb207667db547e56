package execjob

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/supervise-dev/supervise/internal/proctest"
)

type reports struct{ out [3]bytes.Buffer }

func (r *reports) add(o Output) error { r.out[o.Stream].Write(o.Data); return nil }

func TestSmallOutputInTheResult(t *testing.T) {
	var r reports
	res, err := run(context.Background(), Job{Argv: []string{"sh", "-c", "echo out; echo err >&2; exit 3"}}, r.add)
	if err != nil || res.Exit != 3 || res.Signal != 0 || string(res.Stdout) != "out\n" || string(res.Stderr) != "err\n" {
		t.Fatalf("%+v %v", res, err)
	}
	if r.out[1].Len()+r.out[2].Len() != 0 {
		t.Fatalf("small output was reported: %q %q", r.out[1].String(), r.out[2].String())
	}
}

// Output past Chunk comes back in reports of Chunk bytes, the rest in the result, in order.
func TestLargeOutputInReports(t *testing.T) {
	var r reports
	res, err := run(context.Background(), Job{Argv: []string{"seq", "200000"}}, r.add)
	want, _ := exec.Command("seq", "200000").Output()
	got := append(r.out[1].Bytes(), res.Stdout...)
	if err != nil || !bytes.Equal(got, want) || r.out[1].Len()%Chunk != 0 || r.out[1].Len() == 0 {
		t.Fatalf("%v: %d bytes reported, %d in the result; want %d in all", err, r.out[1].Len(), len(res.Stdout), len(want))
	}
}

func TestStreamReportsEveryRead(t *testing.T) {
	var r reports
	res, err := run(context.Background(), Job{Argv: []string{"echo", "x"}, Stream: true}, r.add)
	if err != nil || r.out[1].String() != "x\n" || len(res.Stdout) != 0 {
		t.Fatalf("%v: reported %q, result %q", err, r.out[1].String(), res.Stdout)
	}
}

// What the command leaves running in its group is killed when it exits: before, a
// background process held the output pipe, and the job waited for it.
func TestLeftoversKilled(t *testing.T) {
	var r reports
	res, err := run(context.Background(), Job{Argv: []string{"sh", "-c", "sleep 300 & echo $!"}}, r.add)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(res.Stdout)))
	proctest.KillAtCleanup(t, pid)
	// Its output pipe closed when it died, but /proc may show it a moment longer while the
	// kernel tears it down: a second is the margin for that.
	proctest.AwaitGone(t, time.Second, pid)
}

// A job whose context ends gets SIGTERM; one that ignores it gets SIGKILL Grace later.
func TestCancelKillsTheGroup(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var r reports
	done := make(chan struct{})
	var res Result
	var err error
	go func() {
		defer close(done)
		res, err = run(ctx, Job{Argv: []string{"sh", "-c", `trap "" TERM; echo up; sleep 300 & wait`}, Stream: true, Grace: 50 * time.Millisecond},
			func(o Output) error { r.add(o); cancel(); return nil })
	}()
	<-done
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "signal: killed") || len(res.Stdout) != 0 {
		t.Fatalf("%+v %v; want context.Canceled after SIGKILL, and no result", res, err)
	}
	if r.out[1].String() != "up\n" {
		t.Fatalf("reported %q, want the output so far", r.out[1].String())
	}
}

func TestNoSuchCommand(t *testing.T) {
	var r reports
	if _, err := run(context.Background(), Job{Argv: []string{"/nonexistent/cmd"}}, r.add); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("got %v", err)
	}
}
