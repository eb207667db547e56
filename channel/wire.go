package channel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// The few msgpack primitives the envelope needs, written out so that encoding and parsing an
// envelope allocates nothing. Payloads themselves are encoded by github.com/vmihailenco/msgpack.

func appendArrayLen(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, 0x90|byte(n))
	case n <= math.MaxUint16:
		return append(b, 0xdc, byte(n>>8), byte(n))
	default:
		return append(b, 0xdd, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
}

func appendUint(b []byte, v uint64) []byte {
	switch {
	case v < 128:
		return append(b, byte(v))
	case v <= math.MaxUint8:
		return append(b, 0xcc, byte(v))
	case v <= math.MaxUint16:
		return append(b, 0xcd, byte(v>>8), byte(v))
	case v <= math.MaxUint32:
		return append(b, 0xce, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	default:
		return binary.BigEndian.AppendUint64(append(b, 0xcf), v)
	}
}

func appendStr(b []byte, s string) []byte {
	return append(appendStrHeader(b, len(s)), s...)
}

// appendBinHeader appends the header of a msgpack bin of n bytes.
func appendBinHeader(b []byte, n int) []byte {
	switch {
	case n <= math.MaxUint8:
		return append(b, 0xc4, byte(n))
	case n <= math.MaxUint16:
		return append(b, 0xc5, byte(n>>8), byte(n))
	default:
		return append(b, 0xc6, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
}

const msgpackNil = 0xc0

var errShort = errors.New("value runs past the end of the frame")

// reader walks a msgpack buffer. Methods return errors describing the byte offset.
type reader struct {
	b []byte
	i int
}

func (r *reader) byte() (byte, error) {
	if r.i >= len(r.b) {
		return 0, errShort
	}
	c := r.b[r.i]
	r.i++
	return c, nil
}

func (r *reader) n(k int) ([]byte, error) {
	if k < 0 || len(r.b)-r.i < k {
		return nil, errShort
	}
	s := r.b[r.i : r.i+k]
	r.i += k
	return s, nil
}

func (r *reader) uintN(k int) (uint64, error) {
	s, err := r.n(k)
	if err != nil {
		return 0, err
	}
	var v uint64
	for _, c := range s {
		v = v<<8 | uint64(c)
	}
	return v, nil
}

// arrayLen reads an array header.
func (r *reader) arrayLen() (int, error) {
	at := r.i
	c, err := r.byte()
	if err != nil {
		return 0, err
	}
	var n uint64
	switch {
	case c&0xf0 == 0x90:
		return int(c & 0x0f), nil
	case c == 0xdc:
		n, err = r.uintN(2)
	case c == 0xdd:
		n, err = r.uintN(4)
	default:
		return 0, fmt.Errorf("at byte %d: want an array, found msgpack code 0x%02x", at, c)
	}
	return int(n), err
}

// uint reads a non-negative integer.
func (r *reader) uint() (uint64, error) {
	at := r.i
	c, err := r.byte()
	if err != nil {
		return 0, err
	}
	switch {
	case c < 0x80:
		return uint64(c), nil
	case c == 0xcc || c == 0xd0:
		return r.nonNegative(at, c, 1)
	case c == 0xcd || c == 0xd1:
		return r.nonNegative(at, c, 2)
	case c == 0xce || c == 0xd2:
		return r.nonNegative(at, c, 4)
	case c == 0xcf || c == 0xd3:
		return r.nonNegative(at, c, 8)
	}
	return 0, fmt.Errorf("at byte %d: want a non-negative integer, found msgpack code 0x%02x", at, c)
}

func (r *reader) nonNegative(at int, c byte, k int) (uint64, error) {
	v, err := r.uintN(k)
	if err != nil {
		return 0, err
	}
	if c >= 0xd0 && v>>(uint(k)*8-1) != 0 { // signed and negative
		return 0, fmt.Errorf("at byte %d: want a non-negative integer, found a negative one", at)
	}
	return v, nil
}

// strOrNil reads a str (or bin) and returns its bytes, which alias the buffer; nil for msgpack nil.
func (r *reader) strOrNil() ([]byte, error) {
	at := r.i
	c, err := r.byte()
	if err != nil {
		return nil, err
	}
	var n uint64
	switch {
	case c == msgpackNil:
		return nil, nil
	case c&0xe0 == 0xa0:
		n = uint64(c & 0x1f)
	case c == 0xd9 || c == 0xc4:
		n, err = r.uintN(1)
	case c == 0xda || c == 0xc5:
		n, err = r.uintN(2)
	case c == 0xdb || c == 0xc6:
		n, err = r.uintN(4)
	default:
		return nil, fmt.Errorf("at byte %d: want a string, found msgpack code 0x%02x", at, c)
	}
	if err != nil {
		return nil, err
	}
	return r.n(int(n))
}

// MaxDepth is how deeply arrays and maps may nest in any value a [Conn] or [ParseMessage]
// accepts (docs/protocol.md, section 2): a peer that sends a deeper one breaks the protocol.
// Decoders recurse, and a value nested a million levels deep in a 1 MB frame would otherwise
// overflow the stack, which kills a Go process outright.
const MaxDepth = 512

var errTooDeep = fmt.Errorf("value nested deeper than %d levels (channel.MaxDepth)", MaxDepth)

// skip moves past one complete msgpack value, however nested up to MaxDepth, and returns where
// it started.
func (r *reader) skip() (start int, err error) {
	start = r.i
	// open[d] is how many items are still to come in the container d levels deep. The first
	// levels live on the stack: most values are shallow.
	var small [16]uint64
	open := append(small[:0], 1)
	for len(open) > 0 {
		if open[len(open)-1] == 0 {
			open = open[:len(open)-1]
			continue
		}
		open[len(open)-1]--
		size, items, err := r.header()
		if err != nil {
			return start, err
		}
		// Every item takes at least one byte: a count beyond the bytes left is a lie.
		if size > uint64(len(r.b)-r.i) || items > uint64(len(r.b)-r.i) {
			return start, errShort
		}
		r.i += int(size)
		if items > 0 {
			if len(open) > MaxDepth {
				return start, fmt.Errorf("at byte %d: %w", r.i, errTooDeep)
			}
			open = append(open, items)
		}
	}
	return start, nil
}

// header reads the header of one msgpack value: how many bytes of data follow it (size), or
// how many values it contains (items: an array's elements, a map's keys and values).
func (r *reader) header() (size, items uint64, err error) {
	at := r.i
	c, err := r.byte()
	if err != nil {
		return 0, 0, err
	}
	switch {
	case c < 0x80 || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3:
	case c&0xf0 == 0x80:
		items = 2 * uint64(c&0x0f)
	case c&0xf0 == 0x90:
		items = uint64(c & 0x0f)
	case c&0xe0 == 0xa0:
		size = uint64(c & 0x1f)
	case c == 0xc4 || c == 0xd9:
		size, err = r.uintN(1)
	case c == 0xc5 || c == 0xda:
		size, err = r.uintN(2)
	case c == 0xc6 || c == 0xdb:
		size, err = r.uintN(4)
	case c == 0xc7:
		size, err = r.uintN(1)
		size++
	case c == 0xc8:
		size, err = r.uintN(2)
		size++
	case c == 0xc9:
		size, err = r.uintN(4)
		size++
	case c == 0xca:
		size = 4
	case c == 0xcb:
		size = 8
	case c == 0xcc || c == 0xd0:
		size = 1
	case c == 0xcd || c == 0xd1:
		size = 2
	case c == 0xce || c == 0xd2:
		size = 4
	case c == 0xcf || c == 0xd3:
		size = 8
	case c >= 0xd4 && c <= 0xd8: // fixext 1, 2, 4, 8, 16 plus the type byte
		size = 1 + 1<<(c-0xd4)
	case c == 0xdc:
		items, err = r.uintN(2)
	case c == 0xdd:
		items, err = r.uintN(4)
	case c == 0xde:
		items, err = r.uintN(2)
		items *= 2
	case c == 0xdf:
		items, err = r.uintN(4)
		items *= 2
	default:
		return 0, 0, fmt.Errorf("at byte %d: invalid msgpack code 0x%02x", at, c)
	}
	return size, items, err
}
