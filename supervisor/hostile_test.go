package supervisor_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/supervise-dev/supervise/channel"
	"github.com/supervise-dev/supervise/supervisor"
)

// hostileWorker is a worker that speaks the protocol well, squaring numbers, except on the
// input 13, where it does what SUPERVISE_TEST_HOSTILE says: the hostile-peer suite's attacker.
func hostileWorker(action string) {
	conn := channel.NewConn(os.Stdin, os.Stdout, channel.Options{})
	chunks := strings.HasPrefix(action, "chunk-")
	hello := channel.Hello{Protocol: channel.ProtocolVersion, Pid: os.Getpid(), Language: "go", Handlers: []string{"square"}, Chunks: chunks, Progress: chunks}
	payload, _ := channel.Marshal(hello)
	if action == "deep-hello" { // an extra hello key nested far too deep
		payload = append(append([]byte{0x85}, payload[1:]...), 0xa5, 'e', 'x', 't', 'r', 'a')
		payload = append(payload, nestedValue(30_000_000)...)
	}
	_ = conn.Send(channel.Message{Kind: channel.KindHello, Payload: payload})
	for {
		msgs, err := conn.Recv()
		if err != nil {
			os.Exit(0)
		}
		for _, m := range msgs {
			if m.Kind == channel.KindChunk {
				answerChunk(action, conn, m)
				continue
			}
			if m.Kind != channel.KindCall {
				continue
			}
			var x int
			_ = channel.Unmarshal(m.Payload, &x)
			if x == 0 && chunks { // the test's gate: the items put meanwhile gather in chunks
				if f, err := os.Open(os.Getenv("SUPERVISE_TEST_GATE")); err == nil {
					_, _ = io.Copy(io.Discard, f)
					f.Close()
				}
			}
			if x == 13 && !chunks && misbehaveOn(action, conn, m.ID) {
				continue
			}
			res, _ := channel.Marshal(x * x)
			_ = conn.Send(channel.Message{Kind: channel.KindResult, ID: m.ID, Payload: res})
		}
	}
}

// answerChunk answers a chunk call with its inputs squared; on the input 13 it first does
// action with follow-up puts (the chunk's items are put on a queue).
func answerChunk(action string, conn *channel.Conn, m channel.Message) {
	items, _ := channel.ParseChunk(m.Payload)
	b := channel.ChunkHeader(nil, len(items))
	for k, item := range items {
		var x int
		_ = channel.Unmarshal(item, &x)
		if x == 13 {
			switch action {
			case "chunk-bad-put": // a put naming an input the chunk does not have
				one, _ := channel.Marshal(1)
				_ = conn.Send(channel.Message{Kind: channel.KindPut, ID: m.ID, Payload: channel.ChunkPut(len(items), one)})
			case "chunk-put-flood": // 20 MiB of follow-ups
				mib, _ := channel.Marshal(make([]byte, 1<<20))
				for range 20 {
					_ = conn.Send(channel.Message{Kind: channel.KindPut, ID: m.ID, Payload: channel.ChunkPut(k, mib)})
				}
			case "chunk-put-many", "chunk-put-eleven": // 300,000 (or 11) follow-ups of one byte
				n := map[bool]int{true: 300_000, false: 11}[action == "chunk-put-many"]
				one := channel.ChunkPut(k, []byte{1})
				for i := 0; i < n; i += channel.MaxBatch {
					batch := make([]channel.Message, min(channel.MaxBatch, n-i))
					for j := range batch {
						batch[j] = channel.Message{Kind: channel.KindPut, ID: m.ID, Payload: one}
					}
					_ = conn.Send(batch...)
				}
			}
		}
		res, _ := channel.Marshal(x * x)
		b = channel.AppendChunkOutcome(b, channel.ChunkOutcome{Value: res})
	}
	_ = conn.Send(channel.Message{Kind: channel.KindResult, ID: m.ID, Payload: b})
}

// misbehaveOn does action while answering call id; it reports whether it answered the call.
func misbehaveOn(action string, conn *channel.Conn, id uint64) bool {
	envelope := func(kind channel.Kind, payload, errField []byte) []byte {
		b := []byte{0x95, byte(kind), 0xcf}
		b = binary.BigEndian.AppendUint64(b, id)
		return append(append(append(b, 0xc0), payload...), errField...)
	}
	switch action {
	case "deep-result":
		writeRaw(append([]byte{0x91}, envelope(channel.KindResult, nestedValue(1_000_000), []byte{0xc0})...))
	case "deep-error":
		writeRaw(append([]byte{0x91}, envelope(channel.KindError, []byte{0xc0}, append([]byte{0x81, 0xa1, 'x'}, nestedValue(6_000_000)...))...))
	case "beats": // 4,000,000 heartbeats in one 8 MB frame
		b := binary.BigEndian.AppendUint32([]byte{0xdd}, 4_000_000)
		writeRaw(append(b, bytes.Repeat([]byte{0x91, byte(channel.KindHeartbeat)}, 4_000_000)...))
	case "reports": // 100 reports of 1 MiB, then the answer
		mib, _ := channel.Marshal(make([]byte, 1<<20))
		for range 100 {
			if conn.Send(channel.Message{Kind: channel.KindReport, ID: id, Payload: mib}) != nil {
				os.Exit(1)
			}
		}
		return false
	case "dup": // the answer twice
		res, _ := channel.Marshal(169)
		_ = conn.Send(channel.Message{Kind: channel.KindResult, ID: id, Payload: res})
		return false
	case "leave-group-hang": // into the parent's process group, out of reach of kill(-pgid), then silence
		pgid, _ := syscall.Getpgid(os.Getppid())
		if err := syscall.Setpgid(0, pgid); err != nil {
			os.Exit(1)
		}
		time.Sleep(time.Hour)
	case "spin-silent": // 2 s of CPU work, sending nothing (no heartbeat), then the answer
		for start := time.Now(); time.Since(start) < 2*time.Second; {
		}
		return false
	case "truncate-hang": // half a frame, then silence
		os.Stdout.Write([]byte{0, 0, 0, 100, 0x91, 0x95})
		time.Sleep(time.Hour)
	}
	return true
}

func nestedValue(depth int) []byte { return append(bytes.Repeat([]byte{0x91}, depth), 0xc0) }

func writeRaw(body []byte) {
	os.Stdout.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...))
}

// squares submits 1..20 to a pool of one hostile worker and checks that every input but 13
// comes back squared, once; it returns 13's error.
func squares(t *testing.T, action string, cfg supervisor.Config) error {
	t.Helper()
	cfg.Workers = 1
	cfg.Env = append(cfg.Env, "SUPERVISE_TEST_MODE=hostile", "SUPERVISE_TEST_HOSTILE="+action)
	p, _ := startPool(t, cfg)
	ctx := context.Background()
	sq := supervisor.Bind[int, int](p, "square")
	var fs []*supervisor.Future[int]
	for x := 1; x <= 20; x++ {
		fs = append(fs, sq.Submit(ctx, x))
	}
	var bad error
	for i, f := range fs {
		x := i + 1
		v, err := f.Get(ctx)
		switch {
		case x == 13:
			bad = err
			if err == nil && v != 169 {
				t.Errorf("%s: 13 came back as %d", action, v)
			}
		case err != nil || v != x*x:
			t.Errorf("%s: an innocent task, %d, got %d, %v", action, x, v, err)
		}
	}
	return bad
}

// A worker that sends a value nested too deep, or millions of messages in one frame, is killed
// for breaking the protocol; only the task it was running fails, with an error that names the
// worker and what was wrong. These crashed the parent with a stack overflow, or drove it past
// a gigabyte.
func TestHostileFramesKillOnlyTheirWorker(t *testing.T) {
	for _, tc := range []struct{ action, want string }{
		{"deep-result", "MaxDepth"},
		{"deep-error", "MaxDepth"},
		{"beats", "MaxBatch"},
	} {
		t.Run(tc.action, func(t *testing.T) {
			err := squares(t, tc.action, supervisor.Config{})
			var we *supervisor.WorkerError
			if !errors.Is(err, supervisor.ErrWorkerDied) || !errors.As(err, &we) || we.Protocol == nil ||
				!errors.Is(err, channel.ErrDecode) || !strings.Contains(err.Error(), tc.want) || we.Pid == 0 {
				t.Fatalf("got %v, want a protocol error naming the worker and %s", err, tc.want)
			}
		})
	}
}

// A hello nested 30,000,000 levels deep is a failed start, not a crash.
func TestHostileDeepHello(t *testing.T) {
	cfg := supervisor.Config{Workers: 1, Env: []string{"SUPERVISE_TEST_MODE=hostile", "SUPERVISE_TEST_HOSTILE=deep-hello"}}
	cfg.Restart.MaxStartFailures = 1
	p, err := supervisor.Start(context.Background(), cfg)
	if err == nil {
		p.Close()
		t.Fatal("a pool started on a worker whose hello is nested 30,000,000 deep")
	}
	if !errors.Is(err, supervisor.ErrBadHello) || !strings.Contains(err.Error(), "MaxDepth") {
		t.Fatalf("got %v, want ErrBadHello naming MaxDepth", err)
	}
}

// Reports the caller has not taken are bounded: a handler that sends more fails its task with
// ErrReportOverflow and its worker is killed (1,500 reports of 1 MiB took a parent to 1.5 GB).
func TestHostileReportFloodIsBounded(t *testing.T) {
	err := squares(t, "reports", supervisor.Config{MaxReportBytes: 8 << 20})
	var re *supervisor.ReportOverflowError
	if !errors.Is(err, supervisor.ErrReportOverflow) || !errors.As(err, &re) || re.Limit != 8<<20 || re.Held > 8<<20 {
		t.Fatalf("got %v, want a *ReportOverflowError", err)
	}
}

// A duplicate answer is ignored (and logged); it used to kill the worker and fail the next,
// innocent task.
func TestHostileDuplicateAnswer(t *testing.T) {
	if err := squares(t, "dup", supervisor.Config{}); err != nil {
		t.Fatalf("the task answered twice: %v", err)
	}
}

// A worker that goes silent in the middle of a frame is hung, and said to be: the frame its
// kill cut short is not a protocol error.
func TestHostileHangInsideFrame(t *testing.T) {
	// The hostile worker sends no heartbeat: HangTimeout is 1s so that on a loaded machine it is
	// not taken for hung while it answers the tasks before 13 (it uses CPU then, too).
	err := squares(t, "truncate-hang", supervisor.Config{HangTimeout: time.Second, StopGrace: 100 * time.Millisecond})
	var we *supervisor.WorkerError
	if !errors.Is(err, supervisor.ErrHung) || !errors.As(err, &we) || we.Protocol != nil || strings.Contains(err.Error(), "protocol") {
		t.Fatalf("got %v, want ErrHung and no protocol error", err)
	}
}

// A worker that moves itself into another process group (here its parent's) and goes silent is
// still killed as hung: the pool signals the worker by its pidfd too, not only its old group,
// which kill(-pgid) no longer reaches. It used to stay alive, and its task never ended.
func TestHostileWorkerLeavesItsGroup(t *testing.T) {
	err := squares(t, "leave-group-hang", supervisor.Config{HangTimeout: time.Second, StopGrace: 100 * time.Millisecond}) // as above
	var we *supervisor.WorkerError
	if !errors.Is(err, supervisor.ErrHung) || !errors.As(err, &we) {
		t.Fatalf("got %v, want ErrHung", err)
	}
	assertGone(t, we.Pid)
}

// A worker that sends nothing, not even heartbeats, while its processes burn CPU is busy, not
// hung (a Python handler inside one long C call holding the GIL starves its heartbeat thread):
// it used to be killed as hung.
func TestHostileSilentButBusyIsNotHung(t *testing.T) {
	// HangTimeout 1s against 2s of spinning: CPU is sampled every 250ms once the worker has
	// been silent 500ms, so even on a loaded machine the spinning worker gets CPU time between
	// two samples.
	if err := squares(t, "spin-silent", supervisor.Config{HangTimeout: time.Second}); err != nil {
		t.Fatalf("a silent worker using CPU: %v", err)
	}
}

// A chunk of queue items whose follow-ups break the rules (a put naming an input the chunk
// does not have; more follow-ups than a chunk may keep before its answer) fails, with a
// warning that says why: its items that ran fail with that reason (under at-most-once they
// never run again), no follow-up of it is put, and every item ends once.
func TestHostileChunkPuts(t *testing.T) {
	for _, tc := range []struct {
		action, want string
		max          int // QueueConfig.MaxFollowUps
	}{
		{"chunk-bad-put", "names no input", 0},
		{"chunk-put-flood", "bytes of follow-ups before their answers", 0},
		// One-byte follow-ups: what keeping each costs counts too, or 16 MiB of them would
		// keep some 900 MB.
		{"chunk-put-many", "bytes of follow-ups before their answers", -1},
		{"chunk-put-eleven", "put more than 10 follow-ups (QueueConfig.MaxFollowUps)", 10},
	} {
		t.Run(tc.action, func(t *testing.T) {
			gate := filepath.Join(t.TempDir(), "gate")
			if err := syscall.Mkfifo(gate, 0o600); err != nil {
				t.Fatal(err)
			}
			p, logs := startPool(t, supervisor.Config{Workers: 1, InFlight: 1,
				Env: []string{"SUPERVISE_TEST_MODE=hostile", "SUPERVISE_TEST_HOSTILE=" + tc.action, "SUPERVISE_TEST_GATE=" + gate}})
			ctx := context.Background()
			q := supervisor.NewQueue[int, int](p, "square", supervisor.QueueConfig{Chunk: 16, MaxFollowUps: tc.max})
			var gateOpen *os.File
			for x := range 200 { // 0 holds the worker until the gate opens; the others gather in chunks
				if err := q.Put(ctx, x); err != nil {
					t.Fatal(err)
				}
				if x == 0 {
					f, err := os.OpenFile(gate, os.O_WRONLY, 0) // returns once 0 runs
					if err != nil {
						t.Fatal(err)
					}
					gateOpen = f
				}
			}
			gateOpen.Close()
			q.Close()
			seen := map[int]bool{}
			failed := 0
			for r := range q.Results(ctx) {
				if seen[r.Index] || r.Index >= 200 {
					t.Fatalf("item %d ended twice, or was never put", r.Index)
				}
				seen[r.Index] = true
				switch {
				case r.Err != nil && strings.Contains(r.Err.Error(), tc.want):
					failed++ // it ran in the chunk whose puts broke the rule: never again (at-most-once)
				case r.Err != nil || r.Value != r.Index*r.Index:
					t.Fatalf("item %d: %d, %v", r.Index, r.Value, r.Err)
				}
			}
			if len(seen) != 200 || failed == 0 || failed > 16 {
				t.Fatalf("%d items ended, %d of them failed with the broken rule; want 200, and the items of one chunk", len(seen), failed)
			}
			if out := logs.String(); !strings.Contains(out, "failing a chunk call") || !strings.Contains(out, tc.want) {
				t.Errorf("no warning naming %q; logs:\n%s", tc.want, logs)
			}
		})
	}
}
