package conformance

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/supervise-dev/supervise/internal/proctest"
)

// testHello is how long a worker has to say hello in these tests: a Python worker, or a
// race-built one, on a loaded machine took more than DefaultHelloTimeout (3 s).
const testHello = time.Minute

// outcomes runs the battery and returns each check's status, logging every result.
func outcomes(t *testing.T, command ...string) map[string]Result {
	t.Helper()
	got := map[string]Result{}
	for r := range Checks(context.Background(), command, testHello) {
		t.Logf("%s %s: %s (%v)", r.Status, r.Check, r.Detail, r.Took)
		got[r.Check] = r
	}
	return got
}

func assertAllPass(t *testing.T, got map[string]Result) {
	t.Helper()
	if len(got) != len(battery) {
		t.Errorf("%d results, want one per check (%d)", len(got), len(battery))
	}
	for name, r := range got {
		if r.Status != Pass {
			t.Errorf("%s: %s %s", name, r.Status, r.Detail)
		}
	}
}

func TestGoSDKConforms(t *testing.T) {
	bin, cleanup, err := proctest.Build("../../examples/conformance-worker")
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	assertAllPass(t, outcomes(t, bin))
	proctest.AwaitNoProcessRuns(t, 5*time.Second, bin)
}

// pythonWorker copies the Python library and a worker script (with extra lines appended
// before its last line, worker.main()) into a directory of its own, and returns the command.
func pythonWorker(t *testing.T, extra string) []string {
	t.Helper()
	py := proctest.Python(t)
	dir := proctest.CopyFiles(t, "../../child/python/supervise_worker.py", "../../child/python/conformance_worker.py")
	script := filepath.Join(dir, "conformance_worker.py")
	if extra != "" {
		b, err := os.ReadFile(script)
		if err != nil {
			t.Fatal(err)
		}
		const main = "if __name__ == \"__main__\":"
		s := strings.Replace(string(b), main, extra+"\n\n"+main, 1)
		if err := os.WriteFile(script, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return []string{py, script}
}

func TestPythonConforms(t *testing.T) {
	cmd := pythonWorker(t, "")
	assertAllPass(t, outcomes(t, cmd...))
	proctest.AwaitNoProcessWithArg(t, 5*time.Second, cmd[1])
}

// The battery fails workers that break the protocol, each on the check that covers the fault.
func TestBrokenWorkersFail(t *testing.T) {
	for _, tc := range []struct {
		name, extra string
		fails       []string
	}{
		{"no cookie check", `os.environ["SUPERVISE_MAGIC_COOKIE"] = worker.COOKIE_VALUE`, []string{"refuses without the cookie"}},
		{"echo changes the value", `worker._handlers["echo"] = (lambda x: str(x), "raise")`, []string{"echo of every msgpack type"}},
		{"cancel ignored", `worker._handlers["sleep"] = (sleep, "poll")`, []string{"cancel"}},
		{"no heartbeats", `worker._Worker.beat = lambda *a: None`, []string{"heartbeat"}},
		{"prints before hello", `print("hello world", file=sys.__stdout__, flush=True)`, []string{"hello"}},
		// The reader waits for the queue to empty before it reads on: a write of an answer that
		// waits for the parent stops the reading of calls. The battery used to pass it.
		{"reads nothing while it writes", `_enqueue = worker._Worker.enqueue
def _enqueue_and_wait(self, calls):
    _enqueue(self, calls)
    with self.cond:
        while self.queue and not self.eof:
            self.cond.wait(0.01)
worker._Worker.enqueue = _enqueue_and_wait`, []string{"batches and pipelining"}},
		{"trace dropped", `worker.traceparent = lambda: None`, []string{"trace context"}},
		{"a chunk run as one call", `_execute = worker._Worker.execute
def _as_one_call(self, t):
    t.chunk = False
    return _execute(self, t)
worker._Worker.execute = _as_one_call`, []string{"chunk calls"}},
		{"a chunk's puts do not name their input", `def _put_as_in_a_call(item):
    w, t = worker._running()
    w.send([worker.PUT, t.id, None, item])
worker.put = _put_as_in_a_call`, []string{"puts"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cmd := pythonWorker(t, tc.extra)
			s := &suite{command: cmd, hello: testHello, handlers: map[string]bool{"sleep": true, "traceparent": true}, chunks: true}
			for _, name := range tc.fails {
				i := slices.IndexFunc(battery, func(c check) bool { return c.name == name })
				detail, err := battery[i].run(s)
				if err == nil {
					t.Errorf("%s: PASS (%s), want FAIL", name, detail)
				} else {
					t.Logf("%s: FAIL as it should: %v", name, err)
				}
			}
			proctest.AwaitNoProcessWithArg(t, 5*time.Second, cmd[1])
		})
	}
}

// canonical renders two encodings of one value alike, and different values differently.
func TestCanonical(t *testing.T) {
	var e enc
	same := [][2][]byte{
		{e.b(0x05), e.b(0xd3).u64(5)},
		{e.b(0xca).u32(0x3fc00000), e.b(0xcb).u64(0x3ff8000000000000)}, // 1.5
		{e.str("ab", 0), e.str("ab", 0xdb)},
		{e.mapHeader(2, 0).b(1, 2, 3, 4), e.mapHeader(2, 0xdf).b(3, 4, 1, 2)},
		{nil, e.b(0xc0)},
	}
	for _, c := range same {
		a, errA := canonical(c[0])
		b, errB := canonical(c[1])
		if errA != nil || errB != nil || a != b {
			t.Errorf("% x and % x: %q (%v) vs %q (%v), want equal", c[0], c[1], a, errA, b, errB)
		}
	}
	differ := [][2][]byte{
		{e.b(0x05), e.b(0x06)},
		{e.str("ab", 0), e.bin([]byte("ab"), 0xc4)},
		{e.ext(1, []byte{1}), e.ext(2, []byte{1})},
		{e.b(0xc2), e.b(0xc0)},
	}
	for _, c := range differ {
		if a, _ := canonical(c[0]); a == func() string { b, _ := canonical(c[1]); return b }() {
			t.Errorf("% x and % x both render %q", c[0], c[1], a)
		}
	}
	for _, bad := range [][]byte{{0xc1}, {0x92, 0x01}, {0x01, 0x02}} {
		if s, err := canonical(bad); err == nil {
			t.Errorf("% x: %q, want an error", bad, s)
		}
	}
}

// A handler registered with cancel="poll" is not interrupted, and passes the cancel check by
// polling cancelled(); TaskError picks the error's type.
func TestPythonPollAndTaskError(t *testing.T) {
	cmd := pythonWorker(t, `
@worker.handler("sleep", cancel="poll")
def polling_sleep(seconds):
    end = time.time() + seconds
    while time.time() < end:
        if worker.cancelled():
            raise worker.TaskError("stopped by request", type="Canceled")
        time.sleep(0.005)
    return seconds

@worker.handler("fail")
def typed_fail(message):
    raise worker.TaskError(message, type="not_found")`)
	s := &suite{command: cmd, hello: testHello, handlers: map[string]bool{"sleep": true, "fail": true}}
	for _, name := range []string{"cancel", "error answers"} {
		i := slices.IndexFunc(battery, func(c check) bool { return c.name == name })
		detail, err := battery[i].run(s)
		if err != nil {
			t.Errorf("%s: %v", name, err)
		} else {
			t.Logf("%s: %s", name, detail)
		}
		if name == "error answers" && !strings.Contains(detail, `type "not_found"`) {
			t.Errorf("error answers: %s, want the TaskError's type not_found", detail)
		}
	}
	proctest.AwaitNoProcessWithArg(t, 5*time.Second, cmd[1])
}
