package supervisor

import (
	"bytes"
	"testing"

	"github.com/supervise-dev/supervise/channel"
)

// FuzzHello feeds the parent's reading of a worker's first frame (channel.Conn.Recv, then
// parseHello) any bytes: it must return a hello or an error, never crash or hang. The seeds
// are a valid hello and the attacks of the hostile-peer suite.
func FuzzHello(f *testing.F) {
	frame := func(msgs ...channel.Message) []byte {
		var buf bytes.Buffer
		if err := channel.NewConn(nil, &buf, channel.Options{}).Send(msgs...); err != nil {
			f.Fatal(err)
		}
		return buf.Bytes()
	}
	hello, _ := channel.Marshal(channel.Hello{Protocol: 1, Pid: 42, Language: "go", Handlers: []string{"echo"}})
	f.Add(frame(channel.Message{Kind: channel.KindHello, Payload: hello}))
	deep := append(bytes.Repeat([]byte{0x91}, 600), 0xc0)
	f.Add(frame(channel.Message{Kind: channel.KindHello, Payload: append([]byte{0x81, 0xa1, 'x'}, deep...)}))
	f.Add(frame(channel.Message{Kind: channel.KindHello, Payload: append([]byte{0x85}, hello[1:]...)}))
	f.Add(frame(channel.Message{Kind: channel.KindResult, ID: 1}))
	f.Add([]byte("hello world\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		msgs, err := channel.NewConn(bytes.NewReader(data), nil, channel.Options{MaxFrame: 1 << 20}).Recv()
		if err != nil {
			return
		}
		if h, err := parseHello(msgs); err == nil && (h.Protocol != 1 || h.Concurrency < 0) {
			t.Fatalf("accepted %+v", h)
		}
	})
}
