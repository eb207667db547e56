package channel

import (
	"bytes"
	"fmt"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
)

var encoders = sync.Pool{New: func() any {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	return &pooledEncoder{enc: enc, buf: &buf}
}}

type pooledEncoder struct {
	enc *msgpack.Encoder
	buf *bytes.Buffer
}

// Marshal encodes v as one msgpack value for a Message payload. A []byte is encoded as msgpack
// bin; a msgpack.RawMessage is taken as already encoded.
func Marshal(v any) (msgpack.RawMessage, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case msgpack.RawMessage:
		return x, nil
	case []byte:
		out := make([]byte, 0, len(x)+5)
		return append(appendBinHeader(out, len(x)), x...), nil
	}
	return AppendValue(nil, v)
}

// Unmarshal decodes a payload into v, a pointer. A payload nested deeper than MaxDepth is
// refused (ErrDecode) before it reaches the decoder, which recurses. For a *[]byte and a
// payload that is msgpack bin or str, the result aliases raw instead of copying it: received
// payloads own their memory, so this is safe and saves a copy of every large binary payload.
func Unmarshal(raw msgpack.RawMessage, v any) error {
	if p, ok := v.(*[]byte); ok {
		if len(raw) == 0 {
			*p = nil
			return nil
		}
		r := reader{b: raw}
		if b, err := r.strOrNil(); err == nil && r.i == len(raw) {
			*p = b
			return nil
		}
	}
	if len(raw) == 0 {
		raw = []byte{msgpackNil}
	}
	if c := raw[0]; c&0xe0 == 0x80 || (c >= 0xdc && c <= 0xdf) { // an array or a map: it may nest
		r := reader{b: raw}
		if _, err := r.skip(); err != nil {
			return fmt.Errorf("%w: %v", ErrDecode, err)
		}
	}
	return msgpack.Unmarshal(raw, v)
}
