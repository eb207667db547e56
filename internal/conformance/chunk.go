package conformance

import (
	"fmt"

	"github.com/supervise-dev/supervise/channel"
	"github.com/vmihailenco/msgpack/v5"
)

// chunksNeeded marks a check that runs only on a worker whose hello offers chunk calls.
const chunksNeeded = "(chunks)"

// checkChunks sends chunk calls (kind 11, docs/protocol.md section 3): echo of inputs of
// several types, then, if the worker serves "fail", a chunk whose inputs fail and succeed in
// turn. Each chunk gets one answer, a result whose payload has an outcome per input, in order:
// [0, value] or [1, error].
func checkChunks(s *suite) (string, error) {
	return s.withPeer(func(p *peer) (string, error) {
		inputs := []any{1, "two", nil, []byte{3}, map[string]any{"four": 4.5}, []any{true, false}}
		payload := channel.ChunkHeader(nil, len(inputs))
		for _, in := range inputs {
			payload, _ = channel.AppendValue(payload, in)
		}
		msgs := []channel.Message{{Kind: channel.KindChunk, ID: 1, Name: "echo", Payload: payload}}
		ids := []uint64{1}
		if s.handlers["fail"] {
			mixed := channel.ChunkHeader(nil, 3)
			for _, m := range []string{"first", "second", "third"} {
				mixed, _ = channel.AppendValue(mixed, m)
			}
			msgs = append(msgs, channel.Message{Kind: channel.KindChunk, ID: 2, Name: "fail", Payload: mixed})
			ids = append(ids, 2)
		}
		if err := p.send(msgs...); err != nil {
			return "", err
		}
		got, _, err := p.answers(ids, answerTimeout)
		if err != nil {
			return "", err
		}
		outs, err := chunkAnswer(got[1], len(inputs))
		if err != nil {
			return "", fmt.Errorf("echo chunk: %w", err)
		}
		for i, o := range outs {
			want, _ := canonical(mustMarshal(inputs[i]))
			if o.Err != nil {
				return "", fmt.Errorf("echo chunk, input %d: error %v", i+1, o.Err)
			}
			value := o.Value
			if len(value) == 0 {
				value = msgpack.RawMessage{0xc0}
			}
			if back, err := canonical(value); err != nil || back != want {
				return "", fmt.Errorf("echo chunk, input %d: sent %s, got back %s", i+1, want, quote(back, 80))
			}
		}
		if len(ids) == 1 {
			return fmt.Sprintf("a chunk of %d inputs answered once, in order (no \"fail\" handler to check errors)", len(inputs)), nil
		}
		outs, err = chunkAnswer(got[2], 3)
		if err != nil {
			return "", fmt.Errorf("fail chunk: %w", err)
		}
		for i, o := range outs {
			if o.Err == nil || o.Err.Type == "" || o.Err.Message == "" {
				return "", fmt.Errorf("fail chunk, input %d: outcome %+v, want [1, error]", i+1, o)
			}
		}
		return fmt.Sprintf("a chunk of %d inputs and one of 3 failing inputs, each answered once, in order", len(inputs)), nil
	})
}

// chunkAnswer is the outcomes of a chunk's answer m, which must have one for each of its n
// inputs.
func chunkAnswer(m channel.Message, n int) ([]channel.ChunkOutcome, error) {
	if m.Kind != channel.KindResult {
		return nil, fmt.Errorf("answered with %v %v, want a result", m.Kind, m.Err)
	}
	outs, err := channel.ParseChunkOutcomes(m.Payload, n)
	if err != nil {
		return nil, err
	}
	if len(outs) != n {
		return nil, fmt.Errorf("%d outcomes for %d inputs", len(outs), n)
	}
	return outs, nil
}

// checkPuts calls "put" with two items: it must send two puts (kind 9) with the call's id,
// the items as payloads, in order, before its answer. When the worker runs chunks, a chunk of
// three inputs follows, of which the first and third put: each put's payload must be [k,
// item], k the input's position in the chunk (docs/protocol.md, section 3).
func checkPuts(s *suite) (string, error) {
	return s.withPeer(func(p *peer) (string, error) {
		if err := p.send(call(1, "put", mustMarshal([]any{"a", 2}))); err != nil {
			return "", err
		}
		got, puts, err := p.answers([]uint64{1}, answerTimeout)
		if err != nil {
			return "", err
		}
		if err := checkPutMessages(got[1], puts[1], []any{"a", 2}); err != nil {
			return "", fmt.Errorf("put([a, 2]): %w", err)
		}
		if !s.chunks {
			return "2 puts of a call, in order, before its answer (no chunk calls offered)", nil
		}
		payload := channel.ChunkHeader(nil, 3)
		for _, in := range [][]any{{"x"}, {}, {"y", "z"}} {
			payload, _ = channel.AppendValue(payload, in)
		}
		if err := p.send(channel.Message{Kind: channel.KindChunk, ID: 2, Name: "put", Payload: payload}); err != nil {
			return "", err
		}
		got, puts, err = p.answers([]uint64{2}, answerTimeout)
		if err != nil {
			return "", err
		}
		want := []any{[]any{0, "x"}, []any{2, "y"}, []any{2, "z"}}
		if err := checkPutMessages(got[2], puts[2], want); err != nil {
			return "", fmt.Errorf("a chunk of put([x]), put([]), put([y, z]): %w", err)
		}
		return "2 puts of a call, then 3 of a chunk's inputs, each naming its input, in order, before the answers", nil
	})
}

// checkPutMessages checks the puts received before answer: kind 9, payloads as want, in order.
func checkPutMessages(answer channel.Message, puts []channel.Message, want []any) error {
	if answer.Kind != channel.KindResult {
		return fmt.Errorf("answered with %v %v, want a result", answer.Kind, answer.Err)
	}
	var got []string
	for _, m := range puts {
		if m.Kind != channel.KindPut {
			continue
		}
		c, err := canonical(m.Payload)
		if err != nil {
			return fmt.Errorf("a put's payload: %w", err)
		}
		got = append(got, c)
	}
	var exp []string
	for _, w := range want {
		c, _ := canonical(mustMarshal(w))
		exp = append(exp, c)
	}
	if fmt.Sprint(got) != fmt.Sprint(exp) {
		return fmt.Errorf("puts %v before the answer, want %v", got, exp)
	}
	return nil
}
