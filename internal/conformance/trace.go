package conformance

import (
	"fmt"

	"github.com/supervise-dev/supervise/channel"
	"github.com/vmihailenco/msgpack/v5"
)

const sampleTrace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// checkTrace sends an echo call with a trace, the envelope's sixth element (docs/protocol.md,
// section 3): every worker answers it as any call, whether or not it knows traces. A worker
// serving "traceparent" (which returns the running call's traceparent, or nil) must give the
// trace back, and nil for a call without one.
func checkTrace(s *suite) (string, error) {
	return s.withPeer(func(p *peer) (string, error) {
		traced := call(1, "echo", mustMarshal("hi"))
		traced.Trace = sampleTrace
		msgs := []channel.Message{traced}
		ids := []uint64{1}
		if s.handlers["traceparent"] {
			withTrace := call(2, "traceparent", mustMarshal(nil))
			withTrace.Trace = sampleTrace
			msgs = append(msgs, withTrace, call(3, "traceparent", mustMarshal(nil)))
			ids = append(ids, 2, 3)
		}
		if err := p.send(msgs...); err != nil {
			return "", err
		}
		got, _, err := p.answers(ids, answerTimeout)
		if err != nil {
			return "", err
		}
		var echoed string
		if m := got[1]; m.Kind != channel.KindResult || msgpack.Unmarshal(m.Payload, &echoed) != nil || echoed != "hi" {
			return "", fmt.Errorf("an echo call with a trace: answered %v %x (error %v), want \"hi\"", m.Kind, m.Payload, m.Err)
		}
		if len(ids) == 1 {
			return "a call with a trace is answered as any (no \"traceparent\" handler to check more)", nil
		}
		for _, c := range []struct {
			id   uint64
			want *string
		}{{2, ptr(sampleTrace)}, {3, nil}} {
			m := got[c.id]
			var tp *string
			if len(m.Payload) > 0 && msgpack.Unmarshal(m.Payload, &tp) != nil {
				return "", fmt.Errorf("traceparent, call %d: answered %x, not a str or nil", c.id, m.Payload)
			}
			if m.Kind != channel.KindResult || (tp == nil) != (c.want == nil) || (tp != nil && *tp != *c.want) {
				return "", fmt.Errorf("traceparent, call %d: answered %v %x (error %v), want %s", c.id, m.Kind, m.Payload, m.Err, show(c.want))
			}
		}
		return "a call's trace reaches the handler; a call without one has none", nil
	})
}

func ptr(s string) *string { return &s }

func show(s *string) string {
	if s == nil {
		return "nil"
	}
	return fmt.Sprintf("%q", *s)
}
