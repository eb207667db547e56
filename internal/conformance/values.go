package conformance

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// enc writes msgpack by hand, format by format, so that every format of the spec
// (github.com/msgpack/msgpack/blob/master/spec.md) is sent exactly as named.
type enc []byte

func (e enc) b(bs ...byte) enc { return append(e, bs...) }
func (e enc) u16(v uint16) enc { return binary.BigEndian.AppendUint16(e, v) }
func (e enc) u32(v uint32) enc { return binary.BigEndian.AppendUint32(e, v) }
func (e enc) u64(v uint64) enc { return binary.BigEndian.AppendUint64(e, v) }

// str writes s with the smallest str format unless format (0xd9, 0xda, 0xdb) is given.
func (e enc) str(s string, format byte) enc {
	n := len(s)
	switch {
	case format == 0 && n < 32:
		e = e.b(0xa0 | byte(n))
	case format == 0xd9 || format == 0 && n < 1<<8:
		e = e.b(0xd9, byte(n))
	case format == 0xda || format == 0 && n < 1<<16:
		e = e.b(0xda).u16(uint16(n))
	default:
		e = e.b(0xdb).u32(uint32(n))
	}
	return append(e, s...)
}

// bin writes b as bin 8, 16 or 32 (format 0xc4, 0xc5, 0xc6).
func (e enc) bin(b []byte, format byte) enc {
	switch format {
	case 0xc4:
		e = e.b(0xc4, byte(len(b)))
	case 0xc5:
		e = e.b(0xc5).u16(uint16(len(b)))
	default:
		e = e.b(0xc6).u32(uint32(len(b)))
	}
	return append(e, b...)
}

func (e enc) ext(typ int8, data []byte) enc {
	fixed := map[int]byte{1: 0xd4, 2: 0xd5, 4: 0xd6, 8: 0xd7, 16: 0xd8}
	n := len(data)
	switch f, ok := fixed[n]; {
	case ok:
		e = e.b(f, byte(typ))
	case n < 1<<8:
		e = e.b(0xc7, byte(n), byte(typ))
	case n < 1<<16:
		e = e.b(0xc8).u16(uint16(n)).b(byte(typ))
	default:
		e = e.b(0xc9).u32(uint32(n)).b(byte(typ))
	}
	return append(e, data...)
}

func (e enc) arrayHeader(n int, format byte) enc {
	switch {
	case format == 0 && n < 16:
		return e.b(0x90 | byte(n))
	case format == 0xdc || format == 0 && n < 1<<16:
		return e.b(0xdc).u16(uint16(n))
	default:
		return e.b(0xdd).u32(uint32(n))
	}
}

func (e enc) mapHeader(n int, format byte) enc {
	switch {
	case format == 0 && n < 16:
		return e.b(0x80 | byte(n))
	case format == 0xde || format == 0 && n < 1<<16:
		return e.b(0xde).u16(uint16(n))
	default:
		return e.b(0xdf).u32(uint32(n))
	}
}

// valueCase is one payload of the echo check.
type valueCase struct {
	name string
	raw  []byte
}

// valueCases covers every msgpack format: each is sent to echo and must come back as the same
// value (the format may change where it only widens: a float 32 may come back as a float 64,
// an int or a string in a smaller format).
func valueCases() []valueCase {
	var e enc
	repeat := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i * 7)
		}
		return b
	}
	ints := func(n int, format byte) enc {
		a := e.arrayHeader(n, format)
		for i := range n {
			a = a.b(byte(i % 128))
		}
		return a
	}
	entries := func(n int, format byte) enc {
		m := e.mapHeader(n, format)
		for i := range n {
			m = m.str("k"+strconv.Itoa(i), 0).b(byte(i % 128))
		}
		return m
	}
	nested := e
	for range 64 {
		nested = nested.b(0x91)
	}
	nested = nested.b(0xc0)
	return []valueCase{
		{"nil", e.b(0xc0)},
		{"false", e.b(0xc2)},
		{"true", e.b(0xc3)},
		{"positive fixint 0", e.b(0x00)},
		{"positive fixint 127", e.b(0x7f)},
		{"negative fixint -1", e.b(0xff)},
		{"negative fixint -32", e.b(0xe0)},
		{"uint 8 255", e.b(0xcc, 0xff)},
		{"uint 16 65535", e.b(0xcd).u16(65535)},
		{"uint 32 4294967295", e.b(0xce).u32(math.MaxUint32)},
		{"uint 64 18446744073709551615", e.b(0xcf).u64(math.MaxUint64)},
		{"int 8 -128", e.b(0xd0, 0x80)},
		{"int 16 -32768", e.b(0xd1).u16(0x8000)},
		{"int 32 -2147483648", e.b(0xd2).u32(0x80000000)},
		{"int 64 -9223372036854775808", e.b(0xd3).u64(1 << 63)},
		{"float 32 1.5", e.b(0xca).u32(math.Float32bits(1.5))},
		{"float 64 pi", e.b(0xcb).u64(math.Float64bits(math.Pi))},
		{"float 64 2 (whole: stays a float)", e.b(0xcb).u64(math.Float64bits(2))},
		{"float 32 1 (whole: stays a float)", e.b(0xca).u32(math.Float32bits(1))},
		{"float 64 -0", e.b(0xcb).u64(math.Float64bits(math.Copysign(0, -1)))},
		{"float 64 +Inf", e.b(0xcb).u64(math.Float64bits(math.Inf(1)))},
		{"float 64 NaN", e.b(0xcb).u64(math.Float64bits(math.NaN()))},
		{"fixstr empty", e.str("", 0)},
		{"fixstr", e.str("hello", 0)},
		{"fixstr UTF-8", e.str("héllo ✓ 日本 🎉", 0)},
		{"str 8", e.str(strings.Repeat("a", 200), 0)},
		{"str 16", e.str(strings.Repeat("é", 1000), 0)},
		{"str 32", e.str(strings.Repeat("xyz", 30000), 0)},
		{"bin 8 empty", e.bin(nil, 0xc4)},
		{"bin 8", e.bin([]byte{0, 1, 2, 0xff}, 0xc4)},
		{"bin 16", e.bin(repeat(1000), 0xc5)},
		{"bin 32", e.bin(repeat(70000), 0xc6)},
		{"fixarray empty", e.arrayHeader(0, 0)},
		{"fixarray mixed", e.arrayHeader(4, 0).b(0x01).str("a", 0).b(0xc0).b(0xc3)},
		{"array 16", ints(20, 0xdc)},
		{"array 32", ints(70000, 0xdd)},
		{"fixmap empty", e.mapHeader(0, 0)},
		{"fixmap", e.mapHeader(2, 0).str("a", 0).b(0x01).str("b", 0).arrayHeader(1, 0).b(0xc2)},
		{"map 16", entries(20, 0xde)},
		{"map 32", entries(70000, 0xdf)},
		{"map with int keys", e.mapHeader(2, 0).b(0x01).str("one", 0).b(0xff).str("minus one", 0)},
		{"fixext 1", e.ext(1, []byte{0xaa})},
		{"fixext 2", e.ext(2, repeat(2))},
		{"fixext 4", e.ext(3, repeat(4))},
		{"fixext 8", e.ext(4, repeat(8))},
		{"fixext 16", e.ext(5, repeat(16))},
		{"ext 8", e.ext(6, repeat(3))},
		{"ext 16", e.ext(7, repeat(300))},
		{"ext 32", e.ext(8, repeat(70000))},
		{"timestamp 32", e.ext(-1, binary.BigEndian.AppendUint32(nil, 1700000000))},
		{"timestamp 64", e.ext(-1, binary.BigEndian.AppendUint64(nil, 123456789<<34|1700000000))},
		{"timestamp 96", e.ext(-1, binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint32(nil, 5), uint64(1<<63)))},
		{"nested 64 deep", nested},
	}
}

// canonical renders one msgpack value so that two encodings of the same value render alike:
// integers by value whatever their width, floats as float 64, strings by content, maps with
// their entries sorted. It fails on bytes left over.
func canonical(b []byte) (string, error) {
	if len(b) == 0 {
		return "nil", nil // package channel hands a nil payload out as no bytes
	}
	d := &dec{b: b}
	s := d.value(0)
	if d.err == nil && d.i != len(b) {
		d.err = fmt.Errorf("%d bytes after the value", len(b)-d.i)
	}
	return s, d.err
}

type dec struct {
	b   []byte
	i   int
	err error
}

func (d *dec) take(n int) []byte {
	if d.err != nil || n < 0 || d.i+n > len(d.b) {
		if d.err == nil {
			d.err = fmt.Errorf("truncated at byte %d", d.i)
		}
		return make([]byte, max(n, 0))
	}
	d.i += n
	return d.b[d.i-n : d.i]
}

func (d *dec) n(size int) int {
	b := d.take(size)
	switch size {
	case 1:
		return int(b[0])
	case 2:
		return int(binary.BigEndian.Uint16(b))
	default:
		return int(binary.BigEndian.Uint32(b))
	}
}

func (d *dec) value(depth int) string {
	if depth > 512 || d.err != nil {
		if d.err == nil {
			d.err = fmt.Errorf("nested deeper than 512")
		}
		return ""
	}
	c := d.take(1)[0]
	switch {
	case c <= 0x7f:
		return "int " + strconv.Itoa(int(c))
	case c >= 0xe0:
		return "int " + strconv.Itoa(int(int8(c)))
	case c&0xf0 == 0x80:
		return d.mapOf(int(c&0x0f), depth)
	case c&0xf0 == 0x90:
		return d.arrayOf(int(c&0x0f), depth)
	case c&0xe0 == 0xa0:
		return strconv.Quote(string(d.take(int(c & 0x1f))))
	}
	switch c {
	case 0xc0:
		return "nil"
	case 0xc2:
		return "false"
	case 0xc3:
		return "true"
	case 0xc4, 0xc5, 0xc6:
		return fmt.Sprintf("bin %x", d.take(d.n(1<<(c-0xc4))))
	case 0xc7, 0xc8, 0xc9:
		n := d.n(1 << (c - 0xc7))
		return d.extOf(n)
	case 0xca:
		return "float " + strconv.FormatFloat(float64(math.Float32frombits(binary.BigEndian.Uint32(d.take(4)))), 'g', -1, 64)
	case 0xcb:
		return "float " + strconv.FormatFloat(math.Float64frombits(binary.BigEndian.Uint64(d.take(8))), 'g', -1, 64)
	case 0xcc, 0xcd, 0xce, 0xcf:
		b := d.take(1 << (c - 0xcc))
		var v uint64
		for _, x := range b {
			v = v<<8 | uint64(x)
		}
		return "int " + strconv.FormatUint(v, 10)
	case 0xd0, 0xd1, 0xd2, 0xd3:
		b := d.take(1 << (c - 0xd0))
		v := int64(int8(b[0]))
		for _, x := range b[1:] {
			v = v<<8 | int64(x)
		}
		return "int " + strconv.FormatInt(v, 10)
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8:
		return d.extOf(1 << (c - 0xd4))
	case 0xd9, 0xda, 0xdb:
		return strconv.Quote(string(d.take(d.n(1 << (c - 0xd9)))))
	case 0xdc, 0xdd:
		return d.arrayOf(d.n(2<<(c-0xdc)), depth)
	case 0xde, 0xdf:
		return d.mapOf(d.n(2<<(c-0xde)), depth)
	}
	d.err = fmt.Errorf("byte 0x%02x at %d is not a msgpack type", c, d.i-1)
	return ""
}

func (d *dec) extOf(n int) string {
	typ := int8(d.take(1)[0])
	return fmt.Sprintf("ext %d %x", typ, d.take(n))
}

func (d *dec) arrayOf(n int, depth int) string {
	items := make([]string, 0, min(n, 1<<16))
	for range n {
		if d.err != nil {
			break
		}
		items = append(items, d.value(depth+1))
	}
	return "[" + strings.Join(items, ", ") + "]"
}

func (d *dec) mapOf(n int, depth int) string {
	entries := make([]string, 0, min(n, 1<<16))
	for range n {
		if d.err != nil {
			break
		}
		k := d.value(depth + 1)
		entries = append(entries, k+": "+d.value(depth+1))
	}
	slices.Sort(entries)
	return "{" + strings.Join(entries, ", ") + "}"
}
