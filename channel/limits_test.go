package channel

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

// nested returns a msgpack value of depth arrays, one inside the other, around nil.
func nested(depth int) []byte {
	return append(bytes.Repeat([]byte{0x91}, depth), msgpackNil)
}

// rawFrame frames body as a peer would.
func rawFrame(body []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

// envelope is one message [kind, id, nil, payload, err] as a peer could write it.
func envelope(kind Kind, id byte, payload, errField []byte) []byte {
	b := []byte{0x95, byte(kind), id, msgpackNil}
	return append(append(b, payload...), errField...)
}

func recvRaw(t *testing.T, frame []byte) ([]Message, error) {
	t.Helper()
	c := NewConn(bytes.NewReader(frame), nil, Options{Peer: "worker 7 (pid 99)"})
	return c.Recv()
}

// A deeply nested value used to overflow the decoder's stack, which kills a Go process
// outright (a million levels fit in a 1 MB frame). Now the Conn refuses it and names the peer,
// the frame and the limit; a value at the limit still gets through and decodes.
func TestDepthLimit(t *testing.T) {
	cases := []struct {
		name string
		msg  []byte
	}{
		{"result 1,000,000 deep", envelope(KindResult, 1, nested(1_000_000), []byte{msgpackNil})},
		{"error field 6,000,000 deep", envelope(KindError, 1, []byte{msgpackNil}, append([]byte{0x81, 0xa1, 'x'}, nested(6_000_000)...))},
		{"one past the limit", envelope(KindResult, 1, nested(MaxDepth+1), []byte{msgpackNil})},
		{"maps past the limit", envelope(KindResult, 1, append(bytes.Repeat([]byte{0x81, 0x01}, MaxDepth+1), 0x01), []byte{msgpackNil})},
	}
	for _, tc := range cases {
		_, err := recvRaw(t, rawFrame(append([]byte{0x91}, tc.msg...)))
		var fe *FrameError
		if !errors.As(err, &fe) || !errors.Is(err, ErrDecode) || !strings.Contains(err.Error(), "MaxDepth") ||
			!strings.Contains(err.Error(), "worker 7 (pid 99): read frame 1") {
			t.Errorf("%s: got %v, want a decode error naming the peer, the frame and MaxDepth", tc.name, err)
		}
		if _, err := ParseMessage(tc.msg); !errors.Is(err, ErrDecode) {
			t.Errorf("%s: ParseMessage: got %v, want ErrDecode", tc.name, err)
		}
	}

	msgs, err := recvRaw(t, rawFrame(append([]byte{0x91}, envelope(KindResult, 1, nested(MaxDepth), []byte{msgpackNil})...)))
	if err != nil {
		t.Fatalf("a value exactly MaxDepth deep: %v", err)
	}
	var v any
	if err := Unmarshal(msgs[0].Payload, &v); err != nil {
		t.Fatalf("Unmarshal of a value MaxDepth deep: %v", err)
	}
	for range MaxDepth {
		v = v.([]any)[0]
	}
	if v != nil {
		t.Errorf("innermost value %v, want nil", v)
	}
	// Unmarshal guards payloads that did not come through a Conn too.
	if err := Unmarshal(nested(1_000_000), &v); !errors.Is(err, ErrDecode) {
		t.Errorf("Unmarshal 1,000,000 deep: got %v, want ErrDecode", err)
	}
}

// A frame of a few megabytes could hold millions of 2-byte heartbeats, each decoded into a
// Message of about a hundred bytes: 4,000,000 of them drove a parent to 1.3 GB. A frame now
// holds at most MaxBatch messages, on both sides.
func TestBatchLimit(t *testing.T) {
	beats := func(n int) []byte {
		b := binary.BigEndian.AppendUint32([]byte{0xdd}, uint32(n))
		return append(b, bytes.Repeat([]byte{0x91, byte(KindHeartbeat)}, n)...)
	}
	if msgs, err := recvRaw(t, rawFrame(beats(MaxBatch))); err != nil || len(msgs) != MaxBatch {
		t.Fatalf("MaxBatch heartbeats: %d messages, %v", len(msgs), err)
	}
	for _, n := range []int{MaxBatch + 1, 4_000_000} {
		_, err := recvRaw(t, rawFrame(beats(n)))
		if !errors.Is(err, ErrDecode) || !strings.Contains(err.Error(), "MaxBatch") {
			t.Errorf("%d heartbeats in one frame: got %v, want a decode error naming MaxBatch", n, err)
		}
	}
	var buf bytes.Buffer
	c := NewConn(&buf, &buf, Options{})
	if err := c.Send(make([]Message, MaxBatch+1)...); !errors.Is(err, ErrBatchSize) {
		t.Errorf("Send of MaxBatch+1 messages: got %v, want ErrBatchSize", err)
	}
	if err := c.Send(); !errors.Is(err, ErrBatchSize) {
		t.Errorf("Send of no message: got %v, want ErrBatchSize", err)
	}
	if buf.Len() != 0 {
		t.Errorf("refused batches wrote %d bytes", buf.Len())
	}
}
