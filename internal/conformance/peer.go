package conformance

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/supervise-dev/supervise/channel"
	"github.com/supervise-dev/supervise/internal/handshake"
)

// peer is one worker process under test, seen from the parent's side of the protocol. It is
// owned by one check: start, then send and next, then close (which always reaps the process).
type peer struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	conn   *channel.Conn
	wmu    sync.Mutex // one frame at a time on stdin
	stderr *lockedBuffer

	hello      channel.Hello
	msgs       chan channel.Message // every message after the hello but heartbeats; closed at the end of stdout
	readErr    error                // why stdout ended; read after msgs is closed
	heartbeats atomic.Int64
	lastBeat   atomic.Int64 // unix nanoseconds of the latest heartbeat

	gate atomic.Pointer[chan struct{}] // while set, the reader reads nothing more until it is closed

	exited chan struct{} // closed once Wait returned
	state  *os.ProcessState
}

// env is the environment of a worker started by a parent speaking protocol 1, with the
// variables of the handshake set as given (a key with an empty value is left out).
func env(vars map[string]string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SUPERVISE_") {
			out = append(out, kv)
		}
	}
	for k, v := range vars {
		if v != "" {
			out = append(out, k+"="+v)
		}
	}
	return out
}

// handshakeEnv is what a pool sets, with maxFrame and heartbeat as given.
func handshakeEnv(maxFrame int, heartbeat time.Duration) map[string]string {
	return map[string]string{
		handshake.CookieKey:    handshake.CookieValue,
		handshake.ProtocolKey:  fmt.Sprint(channel.ProtocolVersion),
		handshake.MaxFrameKey:  fmt.Sprint(maxFrame),
		handshake.HeartbeatKey: fmt.Sprint(heartbeat.Milliseconds()),
		handshake.WorkerIDKey:  "0",
		handshake.StopGraceKey: "1000",
	}
}

// spawn starts command in a process group of its own, as a pool does, with pipes on all three
// standard descriptors.
func spawn(command []string, vars map[string]string) (*peer, *os.File, error) {
	cmd := exec.Command(command[0], command[1:]...)
	cmd.Env = env(vars)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p := &peer{cmd: cmd, stderr: &lockedBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = p.stderr
	var err error
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, nil, err
	}
	// Our own pipe rather than StdoutPipe: Wait would close that one, maybe before the last
	// answers were read.
	stdout, w, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	cmd.Stdout = w
	err = cmd.Start()
	w.Close()
	if err != nil {
		stdout.Close()
		return nil, nil, fmt.Errorf("starting %q: %w", command, err)
	}
	go func() {
		_ = cmd.Wait() // the one Wait; it also ends the stderr copy
		p.state = cmd.ProcessState
		close(p.exited)
	}()
	return p, stdout, nil
}

// holdAnswers stops reading the worker's stdout (after the frame being read, if any) until
// the returned function is called: its answers pile up in the pipe.
func (p *peer) holdAnswers() (release func()) {
	gate := make(chan struct{})
	p.gate.Store(&gate)
	return func() { p.gate.Store(nil); close(gate) }
}

// start spawns the worker and waits for its hello.
func start(command []string, helloTimeout time.Duration, maxFrame int, heartbeat time.Duration) (*peer, error) {
	return startWith(command, helloTimeout, maxFrame, handshakeEnv(maxFrame, heartbeat))
}

// startWith is start with the environment's handshake variables as given.
func startWith(command []string, helloTimeout time.Duration, maxFrame int, vars map[string]string) (*peer, error) {
	helloTimeout = cmp.Or(helloTimeout, DefaultHelloTimeout)
	p, stdout, err := spawn(command, vars)
	if err != nil {
		return nil, err
	}
	p.conn = channel.NewConn(stdout, p.stdin, channel.Options{MaxFrame: maxFrame, Peer: fmt.Sprintf("worker (pid %d)", p.cmd.Process.Pid)})
	p.msgs = make(chan channel.Message, 1<<14)
	hello := make(chan error, 1)
	go p.read(stdout, hello)
	select {
	case err = <-hello:
	case <-time.After(helloTimeout):
		err = fmt.Errorf("no hello within %v (a worker sends one at once: docs/protocol.md, section 4)", helloTimeout)
	}
	if err != nil {
		p.close()
		return nil, p.withStderr(err)
	}
	return p, nil
}

// read receives frames until stdout ends: first the hello, then everything else.
func (p *peer) read(stdout *os.File, hello chan<- error) {
	defer close(p.msgs)
	defer stdout.Close()
	msgs, err := p.conn.Recv()
	switch {
	case err != nil:
		hello <- fmt.Errorf("bad hello: %w", err)
		return
	case len(msgs) != 1 || msgs[0].Kind != channel.KindHello:
		hello <- fmt.Errorf("bad hello: the first frame holds %d messages, the first of kind %v; want one hello", len(msgs), msgs[0].Kind)
		return
	}
	if err := channel.Unmarshal(msgs[0].Payload, &p.hello); err != nil {
		hello <- fmt.Errorf("bad hello: payload: %w", err)
		return
	}
	hello <- nil
	for {
		if gate := p.gate.Load(); gate != nil {
			<-*gate
		}
		msgs, err := p.conn.Recv()
		if err != nil {
			p.readErr = err
			return
		}
		for _, m := range msgs {
			if m.Kind == channel.KindHeartbeat {
				p.heartbeats.Add(1)
				p.lastBeat.Store(time.Now().UnixNano())
				continue
			}
			if m.Err != nil {
				e := *m.Err
				m.Err = &e
			}
			p.msgs <- m
		}
	}
}

// send writes msgs as one frame.
func (p *peer) send(msgs ...channel.Message) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	return p.conn.Send(msgs...)
}

// sendRaw writes one frame holding body (a msgpack value written by hand).
func (p *peer) sendRaw(body []byte) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	_, err := p.stdin.Write(binary.BigEndian.AppendUint32(nil, uint32(len(body))))
	if err == nil {
		_, err = p.stdin.Write(body)
	}
	return err
}

// next returns the next message other than a heartbeat, or an error if none comes in time.
func (p *peer) next(timeout time.Duration) (channel.Message, error) {
	select {
	case m, ok := <-p.msgs:
		if !ok {
			return m, p.withStderr(fmt.Errorf("the worker's stdout ended: %v", p.readErr))
		}
		return m, nil
	case <-time.After(timeout):
		return channel.Message{}, fmt.Errorf("nothing received within %v", timeout)
	}
}

// answers collects the answers (results and errors) to ids, in any order, waiting up to
// timeout for each next answer: the battery checks what a worker answers, not how fast, and
// under -race beside stress a worker took over 10 s for 2,000 echoes that it answered
// steadily. Reports are kept with the answers, in the order received. Any other message, or
// an answer twice, is an error.
func (p *peer) answers(ids []uint64, timeout time.Duration) (map[uint64]channel.Message, map[uint64][]channel.Message, error) {
	want := make(map[uint64]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	got := make(map[uint64]channel.Message, len(ids))
	reports := map[uint64][]channel.Message{}
	deadline := time.Now().Add(timeout)
	for len(got) < len(want) {
		m, err := p.next(time.Until(deadline))
		if err != nil {
			return got, reports, fmt.Errorf("%d of %d answers received: %w", len(got), len(want), err)
		}
		switch {
		case (m.Kind == channel.KindReport || m.Kind == channel.KindPut) && want[m.ID] && got[m.ID].Kind == 0:
			reports[m.ID] = append(reports[m.ID], m)
		case m.Kind != channel.KindResult && m.Kind != channel.KindError:
			return got, reports, fmt.Errorf("unexpected %v message (id %d)", m.Kind, m.ID)
		case !want[m.ID]:
			return got, reports, fmt.Errorf("an answer to id %d, which was never sent or not expected", m.ID)
		case got[m.ID].Kind != 0:
			return got, reports, fmt.Errorf("a second answer to id %d", m.ID)
		default:
			got[m.ID] = m
			deadline = time.Now().Add(timeout) // reports alone do not extend it
		}
	}
	return got, reports, nil
}

// wait waits up to timeout for the process to exit.
func (p *peer) wait(timeout time.Duration) (*os.ProcessState, error) {
	select {
	case <-p.exited:
		return p.state, nil
	case <-time.After(timeout):
		return nil, fmt.Errorf("still running %v later", timeout)
	}
}

// close ends the process and everything in its group, and reaps it.
func (p *peer) close() {
	p.stdin.Close()
	select {
	case <-p.exited:
	case <-time.After(time.Second):
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.exited
}

// withStderr adds the worker's stderr, if it wrote any, to err.
func (p *peer) withStderr(err error) error {
	if s := strings.TrimSpace(p.stderr.tail(1024)); s != "" {
		return fmt.Errorf("%w; stderr: %s", err, s)
	}
	return err
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.b.Bytes()
	if len(s) > n {
		s = s[len(s)-n:]
	}
	return string(s)
}
