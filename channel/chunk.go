package channel

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// A chunk call (kind 11, docs/protocol.md section 3) carries many inputs for one handler as
// one message: its payload is an array of the inputs. The worker runs them one by one and
// answers the chunk's id once, with a result whose payload is an array of outcomes, in input
// order: [0, value] for an input that succeeded, [1, error] for one that failed (error as in
// an error message). The array may stop short: the inputs past its end did not run (the
// chunk was cancelled). Only a worker whose hello says "chunks": true gets chunk calls.

// MaxChunk is the most inputs one chunk call may hold.
const MaxChunk = 4096

// ChunkHeader is the array header a chunk payload of n items starts with, in the 5-byte
// form: a chunk can be written before its count is known, and the header filled in after.
func ChunkHeader(b []byte, n int) []byte {
	return append(b, 0xdd, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

// SetChunkCount writes n into the 5-byte header ChunkHeader put at b[0:5].
func SetChunkCount(b []byte, n int) {
	b[1], b[2], b[3], b[4] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
}

// AppendValue appends v encoded as Marshal would encode it.
func AppendValue(b []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(b, msgpackNil), nil
	case msgpack.RawMessage:
		if len(x) == 0 {
			return append(b, msgpackNil), nil
		}
		return append(b, x...), nil
	case []byte:
		if x == nil {
			return append(b, msgpackNil), nil
		}
		return append(appendBinHeader(b, len(x)), x...), nil
	}
	pe := encoders.Get().(*pooledEncoder)
	defer encoders.Put(pe)
	pe.buf.Reset()
	if err := pe.enc.Encode(v); err != nil {
		return b, err
	}
	return append(b, pe.buf.Bytes()...), nil
}

// ParseChunk splits a chunk call's payload into its inputs, which alias payload.
func ParseChunk(payload []byte) ([]msgpack.RawMessage, error) {
	r := reader{b: payload}
	n, err := r.arrayLen()
	if err != nil {
		return nil, fmt.Errorf("%w: a chunk: %v", ErrDecode, err)
	}
	if n < 1 || n > MaxChunk {
		return nil, fmt.Errorf("%w: a chunk of %d inputs; it holds 1..%d", ErrDecode, n, MaxChunk)
	}
	items := make([]msgpack.RawMessage, n)
	for i := range items {
		start, err := r.skip()
		if err != nil {
			return nil, fmt.Errorf("%w: a chunk's input %d: %v", ErrDecode, i, err)
		}
		items[i] = payload[start:r.i:r.i]
	}
	if r.i != len(payload) {
		return nil, fmt.Errorf("%w: %d bytes after a chunk's %d inputs", ErrDecode, len(payload)-r.i, n)
	}
	return items, nil
}

// ChunkOutcome is the outcome of one input of a chunk: its encoded result, or its error.
type ChunkOutcome struct {
	Value msgpack.RawMessage
	Err   *RemoteError
}

// AppendChunkOutcome appends one outcome to a chunk's answer (after a ChunkHeader).
func AppendChunkOutcome(b []byte, o ChunkOutcome) []byte {
	if o.Err != nil {
		return appendRemoteError(append(b, 0x92, 1), o.Err)
	}
	b = append(b, 0x92, 0)
	if len(o.Value) == 0 {
		return append(b, msgpackNil)
	}
	return append(b, o.Value...)
}

var errOutcome = errors.New("an outcome is not [0, value] or [1, error]")

// ParseChunkOutcomes reads a chunk's answer, at most items outcomes; the values alias payload.
func ParseChunkOutcomes(payload []byte, items int) ([]ChunkOutcome, error) {
	r := reader{b: payload}
	n, err := r.arrayLen()
	if err != nil {
		return nil, fmt.Errorf("%w: a chunk's answer: %v", ErrDecode, err)
	}
	if n > items {
		return nil, fmt.Errorf("%w: a chunk of %d inputs answered with %d outcomes", ErrDecode, items, n)
	}
	outs := make([]ChunkOutcome, n)
	for i := range outs {
		if err := r.outcome(&outs[i]); err != nil {
			return nil, fmt.Errorf("%w: outcome %d of a chunk's answer: %v", ErrDecode, i, err)
		}
	}
	if r.i != len(payload) {
		return nil, fmt.Errorf("%w: %d bytes after a chunk's %d outcomes", ErrDecode, len(payload)-r.i, n)
	}
	return outs, nil
}

func (r *reader) outcome(o *ChunkOutcome) error {
	if n, err := r.arrayLen(); err != nil || n != 2 {
		return errOutcome
	}
	tag, err := r.uint()
	if err != nil || tag > 1 {
		return errOutcome
	}
	start, err := r.skip()
	if err != nil {
		return err
	}
	raw := r.b[start:r.i:r.i]
	if tag == 0 {
		if !bytes.Equal(raw, []byte{msgpackNil}) {
			o.Value = raw
		}
		return nil
	}
	o.Err = new(RemoteError)
	if err := Unmarshal(raw, o.Err); err != nil {
		return err
	}
	return nil
}

// A put (kind 9) sent while a chunk call runs says which of the chunk's inputs put it: its
// payload is the array [k, item], k the input's position in the chunk, counted from 0. The
// parent keeps a chunk's puts until its answer, and enters only those of the inputs answered:
// an input that goes again alone (its worker died) puts its items again itself.

// ChunkPut is the payload of a put of item (encoded) by input k of a chunk.
func ChunkPut(k int, item msgpack.RawMessage) []byte {
	b := append(make([]byte, 0, 10+len(item)), 0x92)
	b = appendUint(b, uint64(k))
	if len(item) == 0 {
		return append(b, msgpackNil)
	}
	return append(b, item...)
}

// ParseChunkPut reads the payload of a put sent during a chunk of n inputs: the input that put
// it, and the item, which aliases payload.
func ParseChunkPut(payload []byte, n int) (k int, item msgpack.RawMessage, err error) {
	r := reader{b: payload}
	if l, err := r.arrayLen(); err != nil || l != 2 {
		return 0, nil, fmt.Errorf("%w: a put during a chunk is not [input, item]", ErrDecode)
	}
	u, err := r.uint()
	if err != nil || u >= uint64(n) {
		return 0, nil, fmt.Errorf("%w: a put during a chunk of %d inputs names no input of it", ErrDecode, n)
	}
	start, err := r.skip()
	if err != nil {
		return 0, nil, fmt.Errorf("%w: the item of a put during a chunk: %v", ErrDecode, err)
	}
	if r.i != len(payload) {
		return 0, nil, fmt.Errorf("%w: %d bytes after the item of a put during a chunk", ErrDecode, len(payload)-r.i)
	}
	return int(u), payload[start:r.i:r.i], nil
}
