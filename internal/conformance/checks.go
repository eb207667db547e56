package conformance

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/supervise-dev/supervise/channel"
	"github.com/supervise-dev/supervise/internal/handshake"
	"github.com/vmihailenco/msgpack/v5"
)

const defaultMaxFrame = channel.DefaultMaxFrame

// call is a call message of handler on the msgpack value raw.
func call(id uint64, handler string, raw []byte) channel.Message {
	return channel.Message{Kind: channel.KindCall, ID: id, Name: handler, Payload: raw}
}

func mustMarshal(v any) []byte {
	b, err := msgpack.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// checkNoCookie starts the worker without the handshake variables: it must write nothing on
// stdout and exit with a non-zero status.
func checkNoCookie(s *suite) (string, error) {
	return refuses(s, nil, "without "+handshake.CookieKey)
}

// refuses starts the worker with vars as its handshake variables, which a worker must refuse:
// it writes nothing on stdout, says why on stderr and exits with a non-zero status.
func refuses(s *suite, vars map[string]string, started string) (string, error) {
	p, stdout, err := spawn(s.command, vars)
	if err != nil {
		return "", err
	}
	defer p.close()
	wrote := make(chan []byte, 1) // the first bytes on stdout, or nil at EOF
	go func() {
		defer stdout.Close()
		b := make([]byte, 64)
		n, _ := io.ReadAtLeast(stdout, b, 1)
		wrote <- b[:n]
		_, _ = io.Copy(io.Discard, stdout)
	}()
	var state *os.ProcessState
	select {
	case b := <-wrote:
		if len(b) > 0 {
			return "", fmt.Errorf("started %s, the worker wrote on stdout: %s", started, quote(string(b), 64))
		}
		state, err = p.wait(answerTimeout)
	case <-p.exited:
		state = p.state
	case <-time.After(answerTimeout):
		err = fmt.Errorf("still running %v later", answerTimeout)
	}
	if err != nil {
		return "", fmt.Errorf("started %s, the worker is %v (it should refuse and exit)", started, err)
	}
	if state.ExitCode() == 0 {
		return "", fmt.Errorf("started %s, the worker exited with status 0 (want non-zero)", started)
	}
	msg := strings.TrimSpace(p.stderr.tail(200))
	if msg == "" {
		return "", fmt.Errorf("the worker exited with %v but said nothing on stderr", state)
	}
	return fmt.Sprintf("%v, stderr %s", state, quote(msg, 100)), nil
}

func checkHello(s *suite) (string, error) {
	return s.withPeer(func(p *peer) (string, error) {
		h := p.hello
		var problems []string
		if h.Protocol != channel.ProtocolVersion {
			problems = append(problems, fmt.Sprintf("protocol %d, want %d", h.Protocol, channel.ProtocolVersion))
		}
		if h.Pid != p.cmd.Process.Pid {
			problems = append(problems, fmt.Sprintf("pid %d, but the process is %d", h.Pid, p.cmd.Process.Pid))
		}
		if h.Language == "" {
			problems = append(problems, "no language")
		}
		if !slices.Contains(h.Handlers, "echo") {
			problems = append(problems, fmt.Sprintf("no \"echo\" handler among %q (the battery needs one)", h.Handlers))
		}
		if h.Concurrency < 0 {
			problems = append(problems, fmt.Sprintf("concurrency %d", h.Concurrency))
		}
		if len(problems) > 0 {
			return "", fmt.Errorf("hello: %s", strings.Join(problems, "; "))
		}
		for _, n := range h.Handlers {
			s.handlers[n] = true
		}
		s.chunks = h.Chunks
		return fmt.Sprintf("pid %d, language %s, handlers %q, concurrency %d, chunks %v", h.Pid, h.Language, h.Handlers, max(1, h.Concurrency), h.Chunks), nil
	})
}

// echoAll sends every payload to echo, in frames of batch calls, and checks that each answer
// is the same value.
func echoAll(p *peer, names []string, payloads [][]byte, batch int) error {
	ids := make([]uint64, len(payloads))
	errs := make(chan error, 1)
	go func() { // sending while the answers are read: big batches must not deadlock the pipes
		var msgs []channel.Message
		for i, raw := range payloads {
			ids[i] = uint64(i + 1)
			msgs = append(msgs, call(ids[i], "echo", raw))
			if len(msgs) == batch || i == len(payloads)-1 {
				if err := p.send(msgs...); err != nil {
					errs <- err
					return
				}
				msgs = msgs[:0]
			}
		}
		errs <- nil
	}()
	err := checkEchoes(p, names, payloads)
	if serr := <-errs; serr != nil {
		return fmt.Errorf("sending calls: %w", serr)
	}
	return err
}

// checkEchoes collects the answers to calls 1..len(payloads) and checks each is its payload.
func checkEchoes(p *peer, names []string, payloads [][]byte) error {
	want := make([]uint64, len(payloads))
	for i := range want {
		want[i] = uint64(i + 1)
	}
	got, _, err := p.answers(want, answerTimeout)
	if err != nil {
		return err
	}
	var bad []string
	for i, raw := range payloads {
		m := got[uint64(i+1)]
		if m.Kind == channel.KindError {
			bad = append(bad, fmt.Sprintf("%s: error answer %v", names[i], m.Err))
			continue
		}
		sent, _ := canonical(raw)
		back, err := canonical(m.Payload)
		switch {
		case err != nil:
			bad = append(bad, fmt.Sprintf("%s: the answer is not one msgpack value: %v", names[i], err))
		case back != sent:
			bad = append(bad, fmt.Sprintf("%s: sent %s, got back %s", names[i], quote(sent, 80), quote(back, 80)))
		}
	}
	if n := len(bad); n > 0 {
		if n > 3 {
			bad = append(bad[:3], fmt.Sprintf("and %d more", n-3))
		}
		return fmt.Errorf("%d of %d payloads came back different: %s", n, len(payloads), strings.Join(bad, "; "))
	}
	return nil
}

func checkEchoTypes(s *suite) (string, error) {
	return s.withPeer(func(p *peer) (string, error) {
		cases := valueCases()
		names := make([]string, len(cases))
		payloads := make([][]byte, len(cases))
		for i, c := range cases {
			names[i], payloads[i] = c.name, c.raw
		}
		if err := echoAll(p, names, payloads, 1); err != nil {
			return "", err
		}
		return fmt.Sprintf("%d values, every format of the msgpack spec", len(cases)), nil
	})
}

// checkPipelining sends 2,000 calls of 4 KiB in frames of 100 before reading any answer: 8 MB,
// far more than a pipe holds, so a worker that does not read while it writes deadlocks.
func checkPipelining(s *suite) (string, error) {
	return s.withPeer(func(p *peer) (string, error) {
		const n, size = 2000, 4 << 10
		names := make([]string, n)
		payloads := make([][]byte, n)
		for i := range payloads {
			names[i] = fmt.Sprintf("call %d", i+1)
			b := bytes.Repeat([]byte{byte(i)}, size)
			binary.BigEndian.PutUint32(b, uint32(i))
			payloads[i] = enc(nil).bin(b, 0xc5)
		}
		t0 := time.Now()
		// Nothing is read until every call is sent: the answers fill the stdout pipe, and the
		// worker must go on reading its stdin while its writes wait.
		release := p.holdAnswers()
		sent := make(chan error, 1)
		go func() {
			for i := 0; i < n; i += 100 {
				var msgs []channel.Message
				for k := i; k < i+100; k++ {
					msgs = append(msgs, call(uint64(k+1), "echo", payloads[k]))
				}
				if err := p.send(msgs...); err != nil {
					sent <- err
					return
				}
			}
			sent <- nil
		}()
		select {
		case err := <-sent:
			release()
			if err != nil {
				return "", fmt.Errorf("sending calls: %w", err)
			}
		case <-time.After(answerTimeout):
			release() // the sender ends with the worker, which the suite kills
			return "", fmt.Errorf("the worker stopped reading its stdin while its answers were not read (%v): it must read calls while a write of its own waits", answerTimeout)
		}
		if err := checkEchoes(p, names, payloads); err != nil {
			return "", err
		}
		return fmt.Sprintf("%d calls of %d bytes in frames of 100, answered in %v", n, size, time.Since(t0).Round(time.Millisecond)), nil
	})
}

// checkShapes sends messages shorter and longer than 5 elements, and kinds a worker does not
// know: the short call has a nil payload, the long one is answered, the others are ignored.
func checkShapes(s *suite) (string, error) {
	return s.withPeer(func(p *peer) (string, error) {
		var e enc
		frame := e.arrayHeader(5, 0).
			arrayHeader(3, 0).b(0x02, 0x01).str("echo", 0).                                      // [2, 1, "echo"]: payload nil
			arrayHeader(7, 0).b(0x02, 0x02).str("echo", 0).str("long", 0).b(0xc0).b(0x2a, 0xc3). // 7 elements
			arrayHeader(5, 0).b(0x63, 0x00, 0xc0, 0xc0, 0xc0).                                   // kind 99
			arrayHeader(1, 0).b(0x07).                                                           // a log message, which only a worker sends
			arrayHeader(5, 0).b(0x02, 0x03).str("echo", 0).b(0x07, 0xc0)
		if err := p.sendRaw(frame); err != nil {
			return "", err
		}
		got, _, err := p.answers([]uint64{1, 2, 3}, answerTimeout)
		if err != nil {
			return "", err
		}
		want := map[uint64]string{1: "nil", 2: `"long"`, 3: "int 7"}
		for id, w := range want {
			m := got[id]
			if m.Kind != channel.KindResult {
				return "", fmt.Errorf("call %d: %v answer %v", id, m.Kind, m.Err)
			}
			v, err := canonical(m.Payload)
			if err != nil || v != w {
				return "", fmt.Errorf("call %d: answer %s (%v), want %s", id, quote(v, 40), err, w)
			}
		}
		return "3-element call, 7-element call, kind 99 and a stray log message: answered or ignored as specified", nil
	})
}

// checkLargePayload echoes a bin payload that makes the call frame 64 bytes short of the
// default 64 MiB limit.
func checkLargePayload(s *suite) (string, error) {
	return s.withPeer(func(p *peer) (string, error) {
		n := defaultMaxFrame - 64
		data := make([]byte, n)
		for i := 0; i < n; i += 4096 {
			binary.BigEndian.PutUint32(data[i:], uint32(i))
		}
		t0 := time.Now()
		if err := p.send(channel.Message{Kind: channel.KindCall, ID: 1, Name: "echo", Bin: data}); err != nil {
			return "", err
		}
		got, _, err := p.answers([]uint64{1}, 60*time.Second)
		if err != nil {
			return "", err
		}
		m := got[1]
		if m.Kind != channel.KindResult {
			return "", fmt.Errorf("error answer: %v", m.Err)
		}
		var back []byte
		if err := msgpack.Unmarshal(m.Payload, &back); err != nil {
			return "", fmt.Errorf("the answer is not bin: %w", err)
		}
		if sha256.Sum256(back) != sha256.Sum256(data) {
			return "", fmt.Errorf("%d bytes sent, %d different bytes came back", n, len(back))
		}
		return fmt.Sprintf("%d bytes (limit %d) there and back in %v", n, defaultMaxFrame, time.Since(t0).Round(time.Millisecond)), nil
	})
}

// checkOversizedFrame tells the worker its limit is 1 MiB and sends a length one byte over it,
// with no body: the worker must give up (exit non-zero) without waiting for the body.
func checkOversizedFrame(s *suite) (string, error) {
	const limit = 1 << 20
	return s.withPeerOpts(limit, time.Second, func(p *peer) (string, error) {
		p.wmu.Lock()
		_, err := p.stdin.Write(binary.BigEndian.AppendUint32(nil, limit+1))
		p.wmu.Unlock()
		if err != nil {
			return "", err
		}
		state, err := p.wait(answerTimeout)
		if err != nil {
			return "", fmt.Errorf("after a frame length of %d over its %d-byte limit, the worker is %v", limit+1, limit, err)
		}
		if state.ExitCode() == 0 {
			return "", fmt.Errorf("after a frame length over its limit, the worker exited with status 0 (want non-zero)")
		}
		return fmt.Sprintf("length %d refused: %v, stderr %s", limit+1, state, quote(strings.TrimSpace(p.stderr.tail(200)), 100)), nil
	})
}

func checkErrors(s *suite) (string, error) {
	return s.withPeer(func(p *peer) (string, error) {
		if err := p.send(call(1, "fail", mustMarshal("boom 42")), call(2, "no-such-handler", mustMarshal(1)), call(3, "echo", mustMarshal("still here"))); err != nil {
			return "", err
		}
		got, _, err := p.answers([]uint64{1, 2, 3}, answerTimeout)
		if err != nil {
			return "", err
		}
		failed, unknown, echo := got[1], got[2], got[3]
		switch {
		case failed.Kind != channel.KindError:
			return "", fmt.Errorf("fail(\"boom 42\"): a %v answer, want an error", failed.Kind)
		case failed.Err.Type == "" || !strings.Contains(failed.Err.Message, "boom 42"):
			return "", fmt.Errorf("fail(\"boom 42\"): error type %q message %q: want a type and the message", failed.Err.Type, failed.Err.Message)
		case unknown.Kind != channel.KindError:
			return "", fmt.Errorf("a call of a handler the worker does not serve: a %v answer, want an error", unknown.Kind)
		case echo.Kind != channel.KindResult:
			return "", fmt.Errorf("echo after two errors: %v %v", echo.Kind, echo.Err)
		}
		tb := "no traceback"
		if failed.Err.Traceback != "" {
			tb = fmt.Sprintf("traceback of %s", plural(strings.Count(failed.Err.Traceback, "\n"), "line"))
		}
		return fmt.Sprintf("fail: type %q, %s; unknown handler: type %q; the worker went on", failed.Err.Type, tb, unknown.Err.Type), nil
	})
}

// checkCancel cancels a running call and a queued one; both must be answered promptly. A
// cancel of an id already answered must be ignored.
// runningDelay is how long after the answer before it a call is taken to be running.
const runningDelay = 100 * time.Millisecond

func checkCancel(s *suite) (string, error) {
	return s.withPeer(func(p *peer) (string, error) {
		// echo 1 is answered before sleep 2 starts (concurrency 1), so once its answer is in,
		// sleep 2 is running or about to; echo 3 waits behind it.
		if err := p.send(call(1, "echo", mustMarshal(1)), call(2, "sleep", mustMarshal(60)), call(3, "echo", mustMarshal(3))); err != nil {
			return "", err
		}
		if _, _, err := p.answers([]uint64{1}, answerTimeout); err != nil {
			return "", err
		}
		// The protocol has no "started" message, and a cancel that reaches sleep 2 while it is
		// still queued is answered as a queued one (so a worker ignoring cancels of running
		// calls would pass): give it time to start.
		time.Sleep(runningDelay)
		t0 := time.Now()
		cancel := func(id uint64) channel.Message { return channel.Message{Kind: channel.KindCancel, ID: id} }
		if err := p.send(cancel(3), cancel(2), cancel(1)); err != nil { // 1: already answered
			return "", err
		}
		got, _, err := p.answers([]uint64{2, 3}, 5*time.Second)
		if err != nil {
			return "", fmt.Errorf("after cancels of a running and a queued call: %w", err)
		}
		took := time.Since(t0)
		describe := func(m channel.Message) string {
			if m.Kind == channel.KindError {
				return "error " + m.Err.Type
			}
			return "result"
		}
		if m := got[2]; m.Kind != channel.KindError || m.Err.Type != "Canceled" {
			return "", fmt.Errorf("the running sleep(60) was answered with %s, want an error of type \"Canceled\"", describe(m))
		}
		if err := p.send(call(4, "echo", mustMarshal(4))); err != nil {
			return "", err
		}
		if _, _, err := p.answers([]uint64{4}, answerTimeout); err != nil {
			return "", fmt.Errorf("echo after the cancels: %w", err)
		}
		return fmt.Sprintf("running call: %s in %v; queued call: %s; a cancel of an answered call ignored", describe(got[2]), took.Round(10*time.Microsecond), describe(got[3])), nil
	})
}

// checkHeartbeat asks for a heartbeat every 50 ms and counts them while a call sleeps for a
// second: at least 5 must come (20 are due), from a thread other than the handler's.
func checkHeartbeat(s *suite) (string, error) {
	const period = 50 * time.Millisecond
	return s.withPeerOpts(defaultMaxFrame, period, func(p *peer) (string, error) {
		before := p.heartbeats.Load()
		t0 := time.Now()
		if err := p.send(call(1, "sleep", mustMarshal(1))); err != nil {
			return "", err
		}
		if _, _, err := p.answers([]uint64{1}, answerTimeout); err != nil {
			return "", err
		}
		n := p.heartbeats.Load() - before
		took := time.Since(t0)
		if n < 5 {
			return "", fmt.Errorf("%s in %v with SUPERVISE_HEARTBEAT_MS=50 while a handler slept (want at least 5)", plural(int(n), "heartbeat"), took.Round(time.Millisecond))
		}
		return fmt.Sprintf("%s in %v while a handler slept, at 50 ms", plural(int(n), "heartbeat"), took.Round(time.Millisecond)), nil
	})
}

func checkReports(s *suite) (string, error) {
	return s.withPeer(func(p *peer) (string, error) {
		const n = 5
		if err := p.send(call(1, "report", mustMarshal(n))); err != nil {
			return "", err
		}
		got, reports, err := p.answers([]uint64{1}, answerTimeout)
		if err != nil {
			return "", err
		}
		if got[1].Kind != channel.KindResult {
			return "", fmt.Errorf("report(%d): error %v", n, got[1].Err)
		}
		rs := reports[1]
		if len(rs) != n {
			return "", fmt.Errorf("report(%d): %s before the answer, want %d", n, plural(len(rs), "report"), n)
		}
		for i, r := range rs {
			var v int
			if err := msgpack.Unmarshal(r.Payload, &v); err != nil || v != i {
				return "", fmt.Errorf("report %d of %d: payload %x, want %d", i+1, n, r.Payload, i)
			}
		}
		return fmt.Sprintf("%d reports in order, before the answer", n), nil
	})
}

// checkShutdown sends three calls and a shutdown in one frame: all three are answered, and the
// worker exits 0.
func checkShutdown(s *suite) (string, error) {
	return s.withPeer(func(p *peer) (string, error) {
		if err := p.send(call(1, "echo", mustMarshal(1)), call(2, "echo", mustMarshal(2)), call(3, "echo", mustMarshal(3)),
			channel.Message{Kind: channel.KindShutdown}); err != nil {
			return "", err
		}
		if _, _, err := p.answers([]uint64{1, 2, 3}, answerTimeout); err != nil {
			return "", err
		}
		return exitsZero(p, "after a shutdown message")
	})
}

// checkEOF sends a call that takes a while and one behind it, then closes stdin at once: both
// must be answered and the worker must exit 0.
func checkEOF(s *suite) (string, error) {
	return s.withPeer(func(p *peer) (string, error) {
		if err := p.send(call(1, "sleep", mustMarshal(0.3)), call(2, "echo", mustMarshal(2))); err != nil {
			return "", err
		}
		p.stdin.Close()
		if _, _, err := p.answers([]uint64{1, 2}, answerTimeout); err != nil {
			return "", fmt.Errorf("after stdin EOF: %w", err)
		}
		return exitsZero(p, "after stdin EOF")
	})
}

func exitsZero(p *peer, after string) (string, error) {
	t0 := time.Now()
	state, err := p.wait(answerTimeout)
	if err != nil {
		return "", fmt.Errorf("%s, with its calls answered, the worker is %v", after, err)
	}
	if !state.Success() {
		return "", fmt.Errorf("%s the worker exited with %v, want status 0", after, state)
	}
	if _, err := p.next(answerTimeout); err == nil {
		return "", fmt.Errorf("%s the worker sent more than the answers", after)
	}
	return fmt.Sprintf("calls answered, exit status 0 %v after the answers", time.Since(t0).Round(time.Millisecond)), nil
}
