package channel

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
)

// Options configure a [Conn]. The zero value is usable.
type Options struct {
	// MaxFrame is the largest frame, in bytes after the length prefix, that Recv accepts and
	// Send writes. Zero means DefaultMaxFrame.
	MaxFrame int
	// Peer names the other side in errors, e.g. "worker 3 (pid 4242)". Zero means "peer".
	Peer string
}

// Payloads at least this large are written straight from the caller's memory instead of being
// copied into the frame buffer (into a pipe, on Linux, by reference: see pipeWriter), and
// frames at least this large are read into a buffer of their own so that their payloads can be
// handed out without a copy.
const bigPayload = 64 << 10

// Conn sends and receives batches of messages over a byte stream pair, usually the pipes of a
// worker process. Send and Recv may run concurrently with each other.
type Conn struct {
	opts Options

	r      *bufio.Reader
	rbuf   []byte    // reused body buffer for frames below bigPayload
	msgs   []Message // reused result of Recv
	names  map[string]string
	rframe uint64
	hdr    [4]byte

	w      io.Writer
	pipe   *pipeWriter // how big payloads reach w: by reference into a pipe, or by copy
	wbuf   []byte      // reused encoding buffer
	splice []splice
	wframe uint64

	bytesIn, bytesOut atomic.Uint64 // whole frames, length prefix included (Bytes)
}

// splice is a big payload written from its own memory at offset at of wbuf.
type splice struct {
	at   int
	data []byte
}

// NewConn returns a Conn that reads frames from r and writes them to w. Where w is a pipe (on
// Linux), keep the Conn reachable until the reader has read all it sent or is gone: it holds
// the memory of payloads still in the pipe (see Send).
func NewConn(r io.Reader, w io.Writer, opts Options) *Conn {
	if opts.MaxFrame <= 0 {
		opts.MaxFrame = DefaultMaxFrame
	}
	if opts.Peer == "" {
		opts.Peer = "peer"
	}
	return &Conn{opts: opts, r: bufio.NewReaderSize(r, 64<<10), w: w, pipe: newPipeWriter(w), names: map[string]string{}}
}

// Send writes msgs, 1 to MaxBatch of them, as one frame (one batch). Payloads of 64 KiB or
// more are written from their own memory without being copied; where w is a pipe on Linux,
// they go into it by reference (vmsplice), so the reader copies them straight out of that
// memory: their bytes must not change until the reader has read them (the Conn keeps them
// reachable until then).
func (c *Conn) Send(msgs ...Message) error {
	c.wframe++
	if len(msgs) == 0 || len(msgs) > MaxBatch {
		return &FrameError{Peer: c.opts.Peer, Op: "write", Frame: c.wframe, Err: ErrBatchSize,
			Detail: fmt.Sprintf("%d messages; a frame holds 1..%d", len(msgs), MaxBatch)}
	}
	b := append(c.wbuf[:0], 0, 0, 0, 0)
	c.splice = c.splice[:0]
	size := 0 // bytes of spliced payloads
	b = appendArrayLen(b, len(msgs))
	for i := range msgs {
		b = appendMessage(b, &msgs[i], func(at int, data []byte) {
			c.splice = append(c.splice, splice{at: at, data: data})
			size += len(data)
		})
	}
	c.wbuf = b
	n := len(b) - 4 + size
	if n > c.opts.MaxFrame {
		return &FrameError{Peer: c.opts.Peer, Op: "write", Frame: c.wframe, Err: ErrFrameTooLarge,
			Detail: fmt.Sprintf("%d bytes exceed the %d-byte limit", n, c.opts.MaxFrame)}
	}
	binary.BigEndian.PutUint32(b, uint32(n))
	c.pipe.release()
	var err error
	if len(c.splice) == 0 {
		err = c.pipe.write(c.w, b, false)
	} else {
		err = c.writeSpliced(b)
		clear(c.splice) // the payloads are the caller's (or the pipe's: c.pipe holds those)
	}
	if err != nil {
		return &FrameError{Peer: c.opts.Peer, Op: "write", Frame: c.wframe, Err: err}
	}
	c.bytesOut.Add(uint64(4 + n))
	return nil
}

// Bytes is how many bytes of whole frames, length prefixes included, Recv has read and Send
// has written so far. It may be called from any goroutine.
func (c *Conn) Bytes() (in, out uint64) { return c.bytesIn.Load(), c.bytesOut.Load() }

func (c *Conn) writeSpliced(b []byte) error {
	from := 0
	for _, s := range c.splice {
		if err := c.pipe.write(c.w, b[from:s.at], false); err != nil {
			return err
		}
		if err := c.pipe.write(c.w, s.data, true); err != nil {
			return err
		}
		from = s.at
	}
	return c.pipe.write(c.w, b[from:], false)
}

// appendMessage appends m as [kind, id, name, payload, error]. A payload of bigPayload bytes
// or more is not appended but handed to spliceAt, with the offset it belongs at, when
// spliceAt is not nil.
func appendMessage(b []byte, m *Message, spliceAt func(at int, data []byte)) []byte {
	if m.Trace != "" {
		b = appendArrayLen(b, 6)
	} else {
		b = appendArrayLen(b, 5)
	}
	b = appendUint(b, uint64(m.Kind))
	b = appendUint(b, m.ID)
	if m.Name == "" {
		b = append(b, msgpackNil)
	} else {
		b = appendStr(b, m.Name)
	}
	payload := m.Payload
	if m.Bin != nil {
		b = appendBinHeader(b, len(m.Bin))
		payload = m.Bin
	}
	switch {
	case m.Bin == nil && len(payload) == 0:
		b = append(b, msgpackNil)
	case len(payload) >= bigPayload && spliceAt != nil:
		spliceAt(len(b), payload)
	default:
		b = append(b, payload...)
	}
	if m.Err == nil {
		b = append(b, msgpackNil)
	} else {
		b = appendRemoteError(b, m.Err)
	}
	if m.Trace != "" {
		b = appendStr(b, m.Trace)
	}
	return b
}

// AppendMessage appends m to b as one envelope, [kind, id, name, payload, error], without a
// frame around it: the form a message takes where something else delimits it (a NATS message,
// docs/protocol.md section 9).
func AppendMessage(b []byte, m Message) []byte { return appendMessage(b, &m, nil) }

// ParseMessage reads one envelope written by AppendMessage; b must hold it and nothing else.
// The message's payload aliases b.
func ParseMessage(b []byte) (Message, error) {
	var c Conn
	r := reader{b: b}
	var m Message
	if err := c.parseMessage(&r, &m, true); err != nil {
		return Message{}, fmt.Errorf("%w: %v", ErrDecode, err)
	}
	if r.i != len(b) {
		return Message{}, fmt.Errorf("%w: %d bytes left after the message", ErrDecode, len(b)-r.i)
	}
	return m, nil
}

// AppendBatch appends msgs to b as a batch, the array of envelopes a frame holds, without
// the frame's length before it: the body of a NATS message that carries several tasks or
// outcomes at once (docs/protocol.md, section 11). It holds 1 to MaxBatch messages.
func AppendBatch(b []byte, msgs []Message) []byte {
	b = appendArrayLen(b, len(msgs))
	for i := range msgs {
		b = appendMessage(b, &msgs[i], nil)
	}
	return b
}

// JoinBatch is AppendBatch of envelopes already written by AppendMessage, one after the other
// in b: a batch is its array header, then its envelopes as they are.
func JoinBatch(b []byte, envelopes ...[]byte) []byte {
	b = appendArrayLen(b, len(envelopes))
	for _, e := range envelopes {
		b = append(b, e...)
	}
	return b
}

// ParseBatch reads a batch written by AppendBatch, under a frame's limits (MaxBatch messages,
// the nesting limit); b must hold it and nothing else. The messages' payloads alias b.
func ParseBatch(b []byte) ([]Message, error) {
	var c Conn
	msgs, err := c.parse(b, true)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDecode, err)
	}
	return msgs, nil
}

func appendRemoteError(b []byte, e *RemoteError) []byte {
	if e.Traceback == "" {
		b = append(b, 0x82)
	} else {
		b = append(b, 0x83)
	}
	b = appendStr(appendStr(b, "type"), e.Type)
	b = appendStr(appendStr(b, "message"), e.Message)
	if e.Traceback != "" {
		b = appendStr(appendStr(b, "traceback"), e.Traceback)
	}
	return b
}

// Recv reads one frame and returns its messages. The returned slice (not the payloads) is
// reused by the next Recv. At a clean end of stream (no byte of a new frame) it returns io.EOF;
// a stream that ends inside a frame gives ErrTruncated.
func (c *Conn) Recv() ([]Message, error) {
	hdr := c.hdr[:]
	if n, err := io.ReadFull(c.r, hdr); err != nil {
		if err == io.EOF {
			return nil, io.EOF
		}
		c.rframe++
		if err == io.ErrUnexpectedEOF {
			return nil, c.readErr(ErrTruncated, fmt.Sprintf("stream ended after %d of 4 length bytes", n))
		}
		return nil, c.readErr(err, "")
	}
	c.rframe++
	n := int(binary.BigEndian.Uint32(hdr))
	if n == 0 {
		return nil, c.readErr(ErrDecode, "length 0: a frame holds a batch of at least one message")
	}
	if n > c.opts.MaxFrame {
		return nil, c.readErr(ErrFrameTooLarge, fmt.Sprintf("length %d (bytes %x) is outside 1..%d", n, hdr, c.opts.MaxFrame))
	}
	var body []byte
	own := n >= bigPayload // a big frame gets memory of its own; its payloads alias it
	if own {
		body = make([]byte, n)
	} else {
		if cap(c.rbuf) < n {
			c.rbuf = make([]byte, n, bigPayload)
		}
		body = c.rbuf[:n]
	}
	if got, err := io.ReadFull(c.r, body); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, c.readErr(ErrTruncated, fmt.Sprintf("stream ended after %d of %d bytes", got, n))
		}
		return nil, c.readErr(err, "")
	}
	c.bytesIn.Add(uint64(4 + n))
	msgs, err := c.parse(body, own)
	if err != nil {
		return nil, c.readErr(ErrDecode, err.Error())
	}
	return msgs, nil
}

func (c *Conn) readErr(err error, detail string) error {
	return &FrameError{Peer: c.opts.Peer, Op: "read", Frame: c.rframe, Err: err, Detail: detail}
}

func (c *Conn) parse(body []byte, own bool) ([]Message, error) {
	r := reader{b: body}
	count, err := r.arrayLen()
	if err != nil {
		return nil, err
	}
	if count == 0 {
		return nil, errors.New("empty batch")
	}
	if count > MaxBatch {
		return nil, fmt.Errorf("a batch of %d messages; at most %d (channel.MaxBatch)", count, MaxBatch)
	}
	if count > len(body) {
		return nil, errShort
	}
	msgs := c.msgs[:0]
	for k := 0; k < count; k++ {
		var m Message
		if err := c.parseMessage(&r, &m, own); err != nil {
			return nil, fmt.Errorf("message %d: %w", k, err)
		}
		msgs = append(msgs, m)
	}
	if r.i != len(body) {
		return nil, fmt.Errorf("%d bytes left after %d messages", len(body)-r.i, count)
	}
	c.msgs = msgs
	return msgs, nil
}

func (c *Conn) parseMessage(r *reader, m *Message, own bool) error {
	fields, err := r.arrayLen()
	if err != nil {
		return err
	}
	if fields < 1 {
		return errors.New("message has no kind")
	}
	kind, err := r.uint()
	if err != nil {
		return fmt.Errorf("kind: %w", err)
	}
	if kind == 0 || kind > 255 {
		return fmt.Errorf("kind %d is not a valid kind", kind)
	}
	m.Kind = Kind(kind)
	for f := 1; f < fields; f++ {
		switch f {
		case 1:
			if m.ID, err = r.uint(); err != nil {
				return fmt.Errorf("id: %w", err)
			}
		case 2:
			name, err := r.strOrNil()
			if err != nil {
				return fmt.Errorf("name: %w", err)
			}
			m.Name = c.intern(name)
		case 3:
			start, err := r.skip()
			if err != nil {
				return fmt.Errorf("payload: %w", err)
			}
			raw := r.b[start:r.i]
			if len(raw) == 1 && raw[0] == msgpackNil {
				break
			}
			if own {
				m.Payload = raw[:len(raw):len(raw)]
			} else {
				m.Payload = append([]byte(nil), raw...)
			}
		case 4:
			start, err := r.skip()
			if err != nil {
				return fmt.Errorf("error: %w", err)
			}
			if raw := r.b[start:r.i]; !(len(raw) == 1 && raw[0] == msgpackNil) {
				m.Err = new(RemoteError)
				if err := Unmarshal(raw, m.Err); err != nil {
					return fmt.Errorf("error: %w", err)
				}
			}
		case 5:
			start, err := r.skip()
			if err != nil {
				return fmt.Errorf("trace: %w", err)
			}
			// Only a call's str is a trace, and a traceparent is 55 characters: anything else
			// is ignored, as elements of later versions were before this one (a peer's
			// message cannot make the receiver hold more).
			if (m.Kind == KindCall || m.Kind == KindChunk) && r.i-start <= MaxTrace+2 {
				t := reader{b: r.b[start:r.i]}
				if trace, err := t.strOrNil(); err == nil && len(trace) <= MaxTrace {
					m.Trace = string(trace)
				}
			}
		default: // fields of later protocol versions
			if _, err := r.skip(); err != nil {
				return err
			}
		}
	}
	return nil
}

// intern returns name as a string, allocating only the first time a name is seen: handler
// names repeat on every call.
func (c *Conn) intern(name []byte) string {
	if len(name) == 0 {
		return ""
	}
	if s, ok := c.names[string(name)]; ok {
		return s
	}
	s := string(name)
	if c.names != nil && len(c.names) < 1024 {
		c.names[s] = s
	}
	return s
}
