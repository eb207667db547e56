package channel

import (
	"math"
	"unicode/utf8"

	"github.com/vmihailenco/msgpack/v5"
)

// Helpers for callers that build or read msgpack values and envelopes without the codec:
// this package is the one that knows the wire format (docs/protocol.md, sections 2 and 3).

// StringValue encodes b as a msgpack str, or as a bin when it is not valid UTF-8: the way
// `supervise run` sends a line.
func StringValue(b []byte) msgpack.RawMessage {
	out := make([]byte, 0, len(b)+5)
	if !utf8.Valid(b) {
		out = appendBinHeader(out, len(b))
	} else {
		out = appendStrHeader(out, len(b))
	}
	return append(out, b...)
}

func appendStrHeader(b []byte, n int) []byte {
	switch {
	case n < 32:
		return append(b, 0xa0|byte(n))
	case n <= math.MaxUint8:
		return append(b, 0xd9, byte(n))
	case n <= math.MaxUint16:
		return append(b, 0xda, byte(n>>8), byte(n))
	default:
		return append(b, 0xdb, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
}

// StrOrBin returns the bytes of raw, one msgpack str or bin value and nothing else, in place;
// false for anything else.
func StrOrBin(raw []byte) ([]byte, bool) {
	if len(raw) == 0 || raw[0] == msgpackNil {
		return nil, false
	}
	r := reader{b: raw}
	b, err := r.strOrNil()
	if err != nil || r.i != len(raw) {
		return nil, false
	}
	return b, true
}

// CallSize is the bytes a call to handler takes in a frame, its envelope included: with a
// payload of n bytes already encoded, or, bin, n bytes sent as Message.Bin.
func CallSize(handler string, n int, bin bool) int {
	size := 1 + 9 + len(appendStrHeader(nil, len(handler))) + len(handler) + n + 1 // array, kind, id (at most), name, payload, nil error
	if bin {
		size += len(appendBinHeader(nil, n))
	}
	return size
}

// TraceSize is what a call's Trace adds to its CallSize.
func TraceSize(trace string) int {
	if trace == "" {
		return 0
	}
	return len(appendStrHeader(nil, len(trace))) + len(trace)
}

// FrameRoom is what a frame of at most maxFrame bytes holds for its messages: the frame
// limit less the batch array around them.
func FrameRoom(maxFrame int) int { return maxFrame - 5 }
