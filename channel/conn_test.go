package channel

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustMarshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The byte-level examples of docs/protocol.md, section 6, are what this package writes.
func TestProtocolDocExamples(t *testing.T) {
	cases := []struct {
		name string
		msgs []Message
		want string
	}{
		{"hello", []Message{{Kind: KindHello, Payload: mustMarshal(t, Hello{Protocol: 1, Pid: 4242, Language: "go", Handlers: []string{"echo"}})}},
			"00000033 91 95 01 00 c0 84 a870726f746f636f6c01 a3706964cd1092 a86c616e6775616765a2676f a868616e646c65727391a46563686f c0"},
		{"call", []Message{{Kind: KindCall, ID: 7, Name: "echo", Payload: mustMarshal(t, []byte{1, 2, 3})}},
			"0000000f 91 95 02 07 a46563686f c403010203 c0"},
		{"two calls", []Message{{Kind: KindCall, ID: 8, Name: "echo", Payload: mustMarshal(t, 42)}, {Kind: KindCall, ID: 9, Name: "echo", Payload: mustMarshal(t, "hi")}},
			"00000017 92 95 02 08 a46563686f 2a c0 95 02 09 a46563686f a26869 c0"},
		{"result", []Message{{Kind: KindResult, ID: 7, Payload: mustMarshal(t, []byte{1, 2, 3})}},
			"0000000b 91 95 03 07 c0 c403010203 c0"},
		{"error", []Message{{Kind: KindError, ID: 9, Err: &RemoteError{Type: "error", Message: "boom"}}},
			"0000001f 91 95 04 09 c0 c0 82 a474797065 a56572726f72 a76d657373616765 a4626f6f6d"},
	}
	for _, tc := range cases {
		var buf bytes.Buffer
		c := NewConn(&buf, &buf, Options{})
		if err := c.Send(tc.msgs...); err != nil {
			t.Fatal(err)
		}
		if got, want := hex.EncodeToString(buf.Bytes()), hex.EncodeToString(unhex(t, tc.want)); got != want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, got, want)
		}
		got, err := c.Recv()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if len(got) != len(tc.msgs) || got[0].Kind != tc.msgs[0].Kind || got[0].ID != tc.msgs[0].ID ||
			got[0].Name != tc.msgs[0].Name || !bytes.Equal(got[0].Payload, tc.msgs[0].Payload) {
			t.Errorf("%s: round trip gave %+v", tc.name, got)
		}
	}
	// A heartbeat may be a 1-element message.
	c := NewConn(bytes.NewReader(unhex(t, "00000003 91 91 06")), io.Discard, Options{})
	msgs, err := c.Recv()
	if err != nil || len(msgs) != 1 || msgs[0].Kind != KindHeartbeat {
		t.Fatalf("short heartbeat: %v %+v", err, msgs)
	}
}

func TestRoundTripBatchAndBigPayload(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB, spliced on write
	var buf bytes.Buffer
	c := NewConn(&buf, &buf, Options{Peer: "test"})
	msgs := []Message{
		{Kind: KindCall, ID: 1, Name: "a", Payload: mustMarshal(t, map[string]any{"host": "python.org", "port": 80})},
		{Kind: KindCall, ID: 1 << 40, Name: "bb", Payload: mustMarshal(t, big)},
		{Kind: KindError, ID: 3, Err: &RemoteError{Type: "panic", Message: "x", Traceback: "stack"}},
		{Kind: KindShutdown},
	}
	if err := c.Send(msgs...); err != nil {
		t.Fatal(err)
	}
	wrote := uint64(buf.Len())
	if in, out := c.Bytes(); in != 0 || out != wrote {
		t.Fatalf("Bytes after Send = %d, %d; want 0, %d (the buffer's length)", in, out, wrote)
	}
	got, err := c.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if in, out := c.Bytes(); in != wrote || out != wrote {
		t.Fatalf("Bytes after Recv = %d, %d; want %d, %d", in, out, wrote, wrote)
	}
	if len(got) != 4 || got[1].ID != 1<<40 || got[1].Name != "bb" || got[3].Kind != KindShutdown {
		t.Fatalf("got %+v", got)
	}
	var m map[string]any
	if err := Unmarshal(got[0].Payload, &m); err != nil || m["host"] != "python.org" {
		t.Fatalf("map payload: %v %v", m, err)
	}
	var b []byte
	if err := Unmarshal(got[1].Payload, &b); err != nil || !bytes.Equal(b, big) {
		t.Fatalf("big payload differs (err %v)", err)
	}
	if e := got[2].Err; e == nil || e.Type != "panic" || e.Traceback != "stack" {
		t.Fatalf("error: %+v", e)
	}
	if _, err := c.Recv(); err != io.EOF {
		t.Fatalf("at end of stream: %v, want io.EOF", err)
	}
}

func TestFrameErrors(t *testing.T) {
	cases := []struct {
		name   string
		stream string
		is     error
		detail string
	}{
		{"too large", "68656c6c6f20776f726c640a", ErrFrameTooLarge, "length 1751477356"},
		{"zero length", "00000000", ErrDecode, "length 0"},
		{"truncated header", "0000", ErrTruncated, "2 of 4"},
		{"truncated body", "00000010 9195", ErrTruncated, "2 of 16"},
		{"not an array", "00000001 2a", ErrDecode, "want an array"},
		{"empty batch", "00000001 90", ErrDecode, "empty batch"},
		{"bad kind", "00000003 91 91 00", ErrDecode, "kind 0"},
		{"payload past end", "00000006 91 94 02 01 c0 c5", ErrDecode, "past the end"},
		{"trailing bytes", "00000004 91 91 06 06", ErrDecode, "1 bytes left"},
	}
	for _, tc := range cases {
		c := NewConn(bytes.NewReader(unhex(t, tc.stream)), io.Discard, Options{Peer: "worker 3 (pid 99)", MaxFrame: 1 << 20})
		_, err := c.Recv()
		var fe *FrameError
		if !errors.Is(err, tc.is) || !errors.As(err, &fe) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.is)
			continue
		}
		if fe.Frame != 1 || !strings.Contains(err.Error(), "worker 3 (pid 99): read frame 1") || !strings.Contains(err.Error(), tc.detail) {
			t.Errorf("%s: error %q lacks peer, frame number or %q", tc.name, err, tc.detail)
		}
	}
	c := NewConn(nil, io.Discard, Options{MaxFrame: 100, Peer: "p"})
	err := c.Send(Message{Kind: KindCall, ID: 1, Payload: mustMarshal(t, make([]byte, 200))})
	if !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("oversized send: %v", err)
	}
}

func FuzzRecv(f *testing.F) {
	f.Add(unhex(f, "0000000f 91 95 02 07 a46563686f c403010203 c0"))
	f.Add(unhex(f, "00000003 91 91 06"))
	f.Add(rawFrame(append([]byte{0x91}, envelope(KindResult, 1, nested(MaxDepth+1), []byte{msgpackNil})...)))
	f.Add(rawFrame(append([]byte{0x91}, envelope(KindError, 1, []byte{msgpackNil}, append([]byte{0x81, 0xa1, 'x'}, nested(600)...))...)))
	f.Add(rawFrame(append([]byte{0xdc, 0x10, 0x01}, bytes.Repeat([]byte{0x91, 0x06}, 4097)...)))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := NewConn(bytes.NewReader(data), io.Discard, Options{MaxFrame: 1 << 16})
		for {
			msgs, err := c.Recv()
			if err != nil {
				return
			}
			for _, m := range msgs { // what the parent and the SDKs do with a payload
				var v any
				_ = Unmarshal(m.Payload, &v)
				var h Hello
				_ = Unmarshal(m.Payload, &h)
			}
		}
	})
}

// FuzzParseMessage is the queue's reading of a task (a worker machine) and of a result (a
// submitter): one envelope from a NATS message, from any client holding credentials.
func FuzzParseMessage(f *testing.F) {
	f.Add(AppendMessage(nil, Message{Kind: KindCall, ID: 7, Name: "echo", Payload: []byte{0x2a}}))
	f.Add(AppendMessage(nil, Message{Kind: KindError, ID: 7, Err: &RemoteError{Type: "error", Message: "boom"}}))
	f.Add(envelope(KindError, 1, []byte{msgpackNil}, append([]byte{0x81, 0xa1, 'x'}, nested(MaxDepth+1)...)))
	f.Add(envelope(KindResult, 1, nested(MaxDepth), []byte{msgpackNil}))
	f.Add([]byte("not msgpack"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseMessage(data)
		if err != nil {
			return
		}
		var v any
		_ = Unmarshal(m.Payload, &v)
		if again, err := ParseMessage(AppendMessage(nil, m)); err != nil || again.Kind != m.Kind || again.ID != m.ID {
			t.Fatalf("%+v does not survive a round trip: %+v, %v", m, again, err)
		}
	})
}

// BenchmarkChannel is one message through Send and Recv over an in-memory stream.
func BenchmarkChannel(b *testing.B) {
	for _, size := range []int{64, 1 << 20} {
		b.Run(sizeName(size), func(b *testing.B) {
			payload := mustMarshal(b, bytes.Repeat([]byte{7}, size))
			var buf bytes.Buffer
			c := NewConn(&buf, &buf, Options{})
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if err := c.Send(Message{Kind: KindCall, ID: 12345, Name: "echo", Payload: payload}); err != nil {
					b.Fatal(err)
				}
				msgs, err := c.Recv()
				if err != nil || len(msgs[0].Payload) != len(payload) {
					b.Fatal(err)
				}
				buf.Reset()
			}
		})
	}
}

func sizeName(n int) string {
	if n >= 1<<20 {
		return "1MiB"
	}
	return "64B"
}

func TestAppendParseMessage(t *testing.T) {
	want := Message{Kind: KindCall, ID: 7, Name: "echo", Payload: msgpack.RawMessage{0xa2, 'h', 'i'}}
	b := AppendMessage(nil, want)
	got, err := ParseMessage(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Kind != want.Kind || got.ID != want.ID || got.Name != want.Name || !bytes.Equal(got.Payload, want.Payload) || got.Err != nil {
		t.Fatalf("round trip: got %+v, want %+v", got, want)
	}
	e := Message{Kind: KindError, ID: 8, Err: &RemoteError{Type: "panic", Message: "boom", Traceback: "tb"}}
	if got, err := ParseMessage(AppendMessage(nil, e)); err != nil || *got.Err != *e.Err || got.ID != 8 {
		t.Fatalf("error round trip: %+v, %v", got, err)
	}
	for _, bad := range [][]byte{nil, {0x95}, append(b, 0xc0), []byte("hello")} {
		if _, err := ParseMessage(bad); !errors.Is(err, ErrDecode) {
			t.Errorf("ParseMessage(%x): %v, want ErrDecode", bad, err)
		}
	}
}

func TestAppendParseBatch(t *testing.T) {
	want := []Message{
		{Kind: KindCall, ID: 7, Name: "echo", Payload: msgpack.RawMessage{0xa2, 'h', 'i'}},
		{Kind: KindError, ID: 8, Err: &RemoteError{Type: "panic", Message: "boom"}},
	}
	b := AppendBatch(nil, want)
	got, err := ParseBatch(b)
	if err != nil || len(got) != 2 || got[0].Name != "echo" || !bytes.Equal(got[0].Payload, want[0].Payload) || got[1].ID != 8 || *got[1].Err != *want[1].Err {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	if joined := JoinBatch(nil, AppendMessage(nil, want[0]), AppendMessage(nil, want[1])); !bytes.Equal(joined, b) {
		t.Fatalf("JoinBatch: %x, AppendBatch: %x", joined, b)
	}
	tooMany := appendArrayLen(nil, MaxBatch+1)
	for range MaxBatch + 1 {
		tooMany = append(tooMany, envelope(KindCall, 1, []byte{msgpackNil}, []byte{msgpackNil})...)
	}
	for _, bad := range [][]byte{nil, {0x90}, AppendMessage(nil, want[0]), append(b, 0xc0), tooMany, nested(10000)} {
		if _, err := ParseBatch(bad); !errors.Is(err, ErrDecode) {
			t.Errorf("ParseBatch(%.20x): %v, want ErrDecode", bad, err)
		}
	}
}

// A call's Trace is the envelope's sixth element; a receiver keeps it only in a call, and
// only up to MaxTrace bytes.
func TestTraceField(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	call := Message{Kind: KindCall, ID: 7, Name: "echo", Payload: msgpack.RawMessage{0xc3}, Trace: tp}
	b := AppendMessage(nil, call)
	if want := len(AppendMessage(nil, Message{Kind: KindCall, ID: 7, Name: "echo", Payload: msgpack.RawMessage{0xc3}})) + TraceSize(tp); len(b) != want {
		t.Errorf("a call with a trace is %d bytes, want %d (TraceSize)", len(b), want)
	}
	if b[0] != 0x96 {
		t.Fatalf("a call with a trace starts %x, want an array of 6", b[0])
	}
	if got, err := ParseMessage(b); err != nil || got.Trace != tp || got.Name != "echo" {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	if b := AppendMessage(nil, Message{Kind: KindCall, ID: 7, Name: "echo"}); b[0] != 0x95 {
		t.Errorf("a call without a trace starts %x, want an array of 5", b[0])
	}
	// A result with a sixth element, and a call with a long one: parsed, and not kept.
	res := AppendMessage(nil, Message{Kind: KindResult, ID: 7, Payload: msgpack.RawMessage{0xc3}, Trace: tp})
	if got, err := ParseMessage(res); err != nil || got.Trace != "" {
		t.Errorf("a result's trace: %q, %v; want it dropped", got.Trace, err)
	}
	long := AppendMessage(nil, Message{Kind: KindCall, ID: 7, Name: "echo", Trace: strings.Repeat("x", MaxTrace+1)})
	if got, err := ParseMessage(long); err != nil || got.Trace != "" {
		t.Errorf("a call's trace of %d bytes: kept %d, %v; want it dropped", MaxTrace+1, len(got.Trace), err)
	}
	// A sixth element that is no str (a later version's, say) is ignored, as it was before.
	other := append(AppendMessage(nil, Message{Kind: KindCall, ID: 7, Name: "echo"})[1:], 0x2a)
	if got, err := ParseMessage(append([]byte{0x96}, other...)); err != nil || got.Trace != "" || got.Name != "echo" {
		t.Errorf("a call whose sixth element is 42: %+v, %v; want it parsed, without a trace", got, err)
	}
	var buf bytes.Buffer
	c := NewConn(&buf, &buf, Options{})
	if err := c.Send(call); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Recv(); err != nil || got[0].Trace != tp {
		t.Fatalf("over a Conn: %+v, %v", got, err)
	}
}
