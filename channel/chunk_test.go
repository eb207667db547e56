package channel

import (
	"bytes"
	"errors"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

func TestChunkRoundTrip(t *testing.T) {
	ins := []any{1, "two", nil, []byte{3}, map[string]any{"four": 4.5}}
	b := ChunkHeader(nil, 0)
	for _, in := range ins {
		var err error
		if b, err = AppendValue(b, in); err != nil {
			t.Fatal(err)
		}
	}
	SetChunkCount(b, len(ins))
	items, err := ParseChunk(b)
	if err != nil || len(items) != len(ins) {
		t.Fatalf("ParseChunk: %d items, %v", len(items), err)
	}
	var s string
	if err := Unmarshal(items[1], &s); err != nil || s != "two" {
		t.Errorf("item 1: %q, %v", s, err)
	}
	outs := []ChunkOutcome{{Value: items[0]}, {Err: &RemoteError{Type: "ValueError", Message: "bad"}}, {}}
	ans := ChunkHeader(nil, len(outs))
	for _, o := range outs {
		ans = AppendChunkOutcome(ans, o)
	}
	got, err := ParseChunkOutcomes(ans, len(ins))
	if err != nil || len(got) != 3 || !bytes.Equal(got[0].Value, items[0]) || got[1].Err == nil || got[1].Err.Type != "ValueError" || got[2].Value != nil {
		t.Fatalf("outcomes: %+v, %v", got, err)
	}
	if _, err := ParseChunkOutcomes(ans, 2); !errors.Is(err, ErrDecode) {
		t.Errorf("3 outcomes for a chunk of 2: %v, want ErrDecode", err)
	}
	for _, bad := range [][]byte{nil, {0x90}, {0x91, 0x93, 0, 0, 0}, {0x91, 0x92, 2, 0}, append(ChunkHeader(nil, MaxChunk+1), 0xc0)} {
		if _, err := ParseChunk(bad); !errors.Is(err, ErrDecode) {
			if _, err2 := ParseChunkOutcomes(bad, MaxChunk); !errors.Is(err2, ErrDecode) {
				t.Errorf("%x: ParseChunk %v, ParseChunkOutcomes %v; want ErrDecode", bad, err, err2)
			}
		}
	}
}

// A chunk's answer comes from a worker: whatever it holds, parsing it fails cleanly or gives
// outcomes that survive being written again.
func FuzzChunkOutcomes(f *testing.F) {
	ok := AppendChunkOutcome(ChunkHeader(nil, 2), ChunkOutcome{Value: msgpack.RawMessage{0x2a}})
	ok = AppendChunkOutcome(ok, ChunkOutcome{Err: &RemoteError{Type: "error", Message: "boom"}})
	f.Add(ok)
	f.Add(append([]byte{0x91, 0x92, 0}, nested(MaxDepth+1)...))
	f.Add([]byte{0x91, 0x92, 1, 0x81, 0xa1, 'x', 0xc0})
	f.Fuzz(func(t *testing.T, data []byte) {
		outs, err := ParseChunkOutcomes(data, MaxChunk)
		if err != nil {
			return
		}
		again := ChunkHeader(nil, len(outs))
		for _, o := range outs {
			again = AppendChunkOutcome(again, o)
		}
		back, err := ParseChunkOutcomes(again, MaxChunk)
		if err != nil || len(back) != len(outs) {
			t.Fatalf("%d outcomes do not survive a round trip: %d, %v", len(outs), len(back), err)
		}
	})
}

func TestChunkPut(t *testing.T) {
	item, _ := Marshal(map[string]any{"dir": "a/b"})
	for _, k := range []int{0, 1, 127, 128, 70000} {
		gotK, got, err := ParseChunkPut(ChunkPut(k, item), 70001)
		if err != nil || gotK != k || !bytes.Equal(got, item) {
			t.Errorf("k=%d: got %d %x, %v", k, gotK, got, err)
		}
	}
	if _, got, err := ParseChunkPut(ChunkPut(0, nil), 1); err != nil || !bytes.Equal(got, []byte{msgpackNil}) {
		t.Errorf("a nil item: %x, %v", got, err)
	}
	bad := map[string][]byte{
		"not an array":   item,
		"three elements": {0x93, 0, 1, 2},
		"k out of range": ChunkPut(3, item),
		"negative k":     {0x92, 0xff, 1},
		"k a string":     {0x92, 0xa1, 'a', 1},
		"no item":        {0x92, 0},
		"trailing bytes": append(ChunkPut(0, item), 0xc0),
		"truncated item": ChunkPut(0, item)[:5],
		"empty":          {},
	}
	for name, p := range bad {
		if _, _, err := ParseChunkPut(p, 3); !errors.Is(err, ErrDecode) {
			t.Errorf("%s: %v, want ErrDecode", name, err)
		}
	}
}
